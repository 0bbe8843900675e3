"""`cantolab cluster`: real processes (SeaweedFS, Prefect server and worker, Dask scheduler and worker)
on 127.0.0.1 only, and `down` leaving none of them — nor their children — behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows import cluster
from tests.flows.conftest import local_cluster

pytestmark = pytest.mark.cluster


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _listening(procs: list[psutil.Process]) -> set[tuple[str, int, str]]:
    out = set()
    for proc in procs:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                out.add((conn.laddr.ip, conn.laddr.port, proc.name()))
    return out


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("cluster"), dask_workers=1) as state:
        yield state


def test_every_part_runs_and_listens_on_loopback_only(small_cluster):
    roles = sorted(p.role for p in small_cluster.processes)
    assert roles == ["dask-scheduler", "dask-worker", "prefect-server", "prefect-worker", "s3"]
    rows = cluster.status(small_cluster.run_dir)
    assert all(r["alive"] and r["listening"] for r in rows), rows
    sockets = _listening([p for entry in small_cluster.processes for p in _tree(entry.pid)])
    assert sockets, "nothing listens at all"
    assert {ip for ip, _, _ in sockets} == {"127.0.0.1"}, sorted(sockets)
    # the state names the ports clients need, and the env file points at them
    state = json.loads((Path(small_cluster.run_dir) / "cluster.json").read_text())
    assert state["prefect_api"].startswith("http://127.0.0.1:") and state["dask_address"].startswith("tcp://127.0.0.1:")
    env = small_cluster.env()
    assert env["PREFECT_API_URL"] == small_cluster.prefect_api and env["CANTOLAB_S3_ENDPOINT"] == small_cluster.s3["endpoint"]


def test_the_pool_has_the_worker_and_dask_has_its_worker(small_cluster):
    from distributed import Client

    with Client(small_cluster.dask_address, timeout=30) as client:
        info = client.scheduler_info()
        assert [w["name"] for w in info["workers"].values()] == ["dask-worker-1"]
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in info["workers"])
        # two task slots: one take transcribes while the previous one's rows are written
        assert [w["nthreads"] for w in info["workers"].values()] == [2]
        # glibc's dynamic mmap threshold kept (Dask's MALLOC_TRIM_THRESHOLD_ doubled a take's CPU), no profiler
        seen = client.run(
            lambda: (
                __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"),
                __import__("dask").config.get("distributed.worker.profile.enabled"),
            )
        )
        assert list(seen.values()) == [(None, False)], seen
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "work-pool", "inspect", "cantolab"], env=small_cluster.env() | _path_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and "process" in out.stdout, out.stdout + out.stderr


def _path_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"PATH": os.environ.get("PATH", "")}


def test_the_server_crashes_and_reruns_runs_whose_heartbeats_stop(small_cluster):
    """Zombie detection is the server's own automation, and the workers' flow runs send heartbeats."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            return await client.read_automations_by_name(cluster.ZOMBIE_AUTOMATION)

    with temporary_settings(updates={PREFECT_API_URL: small_cluster.prefect_api}):
        (automation,) = asyncio.run(read())
    trigger = automation.trigger
    assert automation.enabled and trigger.posture == "Proactive" and trigger.within.total_seconds() == cluster.ZOMBIE_AFTER_SECONDS
    assert trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.Completed" in trigger.expect
    assert [(a.type, getattr(a, "state", None)) for a in automation.actions] == [
        ("change-flow-run-state", "CRASHED"),
        ("run-deployment", None),
    ]
    worker = next(p for p in small_cluster.processes if p.role == "prefect-worker")
    assert psutil.Process(worker.pid).environ()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(cluster.HEARTBEAT_SECONDS)


def test_restart_starts_a_part_again_with_its_ports(small_cluster):
    before = next(p for p in small_cluster.processes if p.name == "dask-worker-1")
    after = cluster.restart(small_cluster.run_dir, "dask-worker-1")
    assert after.pid != before.pid and after.ports == before.ports
    assert not psutil.pid_exists(before.pid) or psutil.Process(before.pid).status() == psutil.STATUS_ZOMBIE
    row = next(r for r in cluster.status(small_cluster.run_dir) if r["name"] == "dask-worker-1")
    assert row["alive"] and row["listening"] and row["pid"] == after.pid
    small_cluster.processes[:] = cluster.load_state(small_cluster.run_dir).processes  # `down` below stops the new one
    with pytest.raises(cluster.ConfigError, match="no process 'nope'"):
        cluster.restart(small_cluster.run_dir, "nope")


def test_down_stops_everything_it_started_and_nothing_else(small_cluster, tmp_path):
    # a process of ours recorded under a wrong start time: a PID reused by an unrelated process
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        fake = cluster.ClusterState(str(tmp_path), processes=[
            cluster.ClusterProcess("impostor", "prefect-worker", bystander.pid, 1, "sleep", str(tmp_path / "x.log"))
        ])  # fmt: skip
        fake.save()
        assert cluster.down(tmp_path, grace=1) == {"impostor": "not running"}
        assert bystander.poll() is None, "down signalled a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()

    procs = [p for entry in small_cluster.processes for p in _tree(entry.pid)]
    assert len(procs) >= 6  # the Dask worker's nanny has a child; SeaweedFS, servers, workers
    outcome = cluster.down(small_cluster.run_dir, grace=10)
    assert set(outcome) == {p.name for p in small_cluster.processes}
    assert set(outcome.values()) <= {"stopped", "killed after 10 s"}, outcome
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [(p.pid, p.cmdline()) for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, left
    assert not any(r["alive"] for r in cluster.status(small_cluster.run_dir))
