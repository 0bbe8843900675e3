"""Prefect for flow tests: one temporary local server (SQLite) for the whole session (~10 s to start)."""

from __future__ import annotations

import contextlib
import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: starts a local cluster of real processes (`flows.cluster`), minutes per module; `-m 'not cluster'` skips them"
    )


@pytest.fixture(scope="session")
def prefect_harness():
    """The harness's API URL, for subprocesses that must talk to the same server."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, served artifacts) on 127.0.0.1 and a free port, in its
    own folder; stopped by its process id (its process group: the server's workers die with it)."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from annotation.server import free_port

    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
           "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=home, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we started (start_new_session): the server and its workers
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextlib.contextmanager
def local_cluster(run_dir, dask_workers: int, prefect_workers: int = 1):
    """`cantolab cluster up` with `prefect_workers` Prefect workers and `dask_workers` Dask workers; `down` however the test ends."""
    from flows import cluster

    state = cluster.up(run_dir, dask_workers=dask_workers, prefect_workers=prefect_workers, worker_query_seconds=2, timeout=240)
    try:
        yield state
    finally:
        cluster.down(run_dir, grace=10)
