"""Faults on purpose, on a local cluster of real processes (`flows.cluster`): the ingest deployment
runs on a Prefect worker with its takes on two Dask workers and the dataset on S3 (SeaweedFS), and
mid-ingest we SIGKILL the Prefect worker with its flow run, restart the Prefect server, or stop the
S3 store for a few seconds. Each time the dataset ends identical (row counts, every non-volatile
column, hence every row's content hash) to an uninterrupted single-process run of the same takes.

The cluster runs Prefect's real zombie detection: heartbeats every 30 s (Prefect's minimum) and the
server's automation declaring a run Crashed after 60 s without one (90 s by default; shorter here to
keep the tests short). A server restart that outlasts that window less a heartbeat (its ~10 s start
takes 40 s on this busy machine) makes a live run look dead: it is then Crashed and rerun, which
the restart test accepts as "retried" as long as the dataset ends whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from flows import cluster
from pipeline.dataset import Dataset
from tests.flows.test_scaleout import (  # noqa: F401 (the `recordings` and `reference` fixtures, on this module's cluster)
    _cli,
    _rows,
    one_process_reference,
    staged_recordings,
)

ZOMBIE_AFTER = 60.0
# each test ~1–2 min on 2 busy cores (the module ~7 with the cluster and the reference run); a hang
# fails instead of stalling the suite
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two Prefect workers (one may be killed: the other takes the rerun), two Dask workers."""
    run = tmp_path_factory.mktemp("faults-cluster")
    state = cluster.up(run, dask_workers=2, prefect_workers=2, worker_query_seconds=2, zombie_after=ZOMBIE_AFTER, timeout=240)
    try:
        yield state
    finally:
        cluster.down(run, grace=10)


def _client(lab):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call(fn):
        with temporary_settings(updates={PREFECT_API_URL: lab.prefect_api}):
            async with get_client() as client:
                return await fn(client)

    return lambda fn: asyncio.run(call(fn))


def _register(lab, recordings, tmp_path) -> str:
    dataset = f"s3://{lab.s3['bucket']}/{tmp_path.name}"
    _cli(lab, "serve", "-r", str(recordings), "-d", dataset, "-m", "tiny.en", "--no-annotation-sync",
         "--models", str(tmp_path / "models"), "--work-pool", "cantolab")  # fmt: skip
    return dataset


def _start_run(lab):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: lab.prefect_api}):
        return run_deployment("ingest/cantolab-ingest", timeout=0)


def _wait_for_a_take_on_dask(lab, timeout: float = 300) -> None:
    from distributed import Client

    with Client(lab.dask_address, timeout=30) as client:
        deadline = time.monotonic() + timeout
        while not any(client.processing().values()):
            assert time.monotonic() < deadline, "no take ever ran on a Dask worker"
            time.sleep(0.5)


def _wait_final(call, run_id, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        run = call(lambda c: c.read_flow_run(run_id))
        if run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"run {run.name} still {run.state.name} after {timeout:.0f} s"
        time.sleep(1)


def _deployment_runs(call, deployment_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    flt = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
    runs = call(lambda c: c.read_flow_runs(flow_run_filter=flt))
    return [r for r in runs if r.state and r.state.type.value != "SCHEDULED"]  # not the schedule's future ticks


def _rerun_of(call, first, timeout: float = 300):
    """The one run the zombie automation started after `first` crashed, once it is final."""
    deadline = time.monotonic() + 60
    while not (reruns := [r for r in _deployment_runs(call, first.deployment_id) if r.id != first.id]):
        assert time.monotonic() < deadline, "the deployment was not run again after the crash"
        time.sleep(1)
    assert len(reruns) == 1, [(r.name, r.state.name) for r in reruns]
    return _wait_final(call, reruns[0].id, timeout=timeout)


def _dataset_rows(lab, dataset: str) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        return _rows(Dataset(dataset))


def _digest(rows: dict) -> dict[str, tuple[int, str]]:
    """Per table: row count and a hash of its (sorted, non-volatile) content — what "identical" means."""
    import hashlib

    return {t: (len(r), hashlib.sha256(json.dumps(r, default=str, sort_keys=True).encode()).hexdigest()[:12]) for t, r in rows.items()}


def _logs(lab) -> str:
    return "".join(Path(p.log).read_text(errors="replace") for p in lab.processes if Path(p.log).exists())


@pytest.mark.cluster
def test_a_killed_prefect_worker_s_run_is_crashed_and_rerun_to_the_same_dataset(lab, recordings, reference, tmp_path):
    """The worker machine dies (worker and flow-run process SIGKILLed, nothing reports): the server's
    automation declares the run Crashed once its heartbeats stop, runs the deployment again, the
    other worker completes it, and the dataset is what one uninterrupted run writes."""
    dataset = _register(lab, recordings, tmp_path)
    call = _client(lab)
    first = _start_run(lab)
    _wait_for_a_take_on_dask(lab)
    hosts = [p for p in lab.processes if p.role == "prefect-worker" and psutil.Process(p.pid).children(recursive=True)]
    assert len(hosts) == 1, "the run's flow-run process was not found under one Prefect worker"
    victims = [psutil.Process(hosts[0].pid), *psutil.Process(hosts[0].pid).children(recursive=True)]
    killed_at = time.monotonic()
    for proc in victims:  # the other worker stays: the rerun's, and the later tests' (one is enough)
        os.kill(proc.pid, signal.SIGKILL)
    crashed = _wait_final(call, first.id, timeout=ZOMBIE_AFTER + 90)
    crashed_at = time.monotonic()
    assert crashed.state.type.value == "CRASHED", crashed.state
    assert "no heartbeat" in (crashed.state.message or ""), crashed.state.message
    done = _rerun_of(call, first)
    done_at = time.monotonic()
    assert done.state.type.value == "COMPLETED", done.state
    print(
        f"\nworker killed → run Crashed {crashed_at - killed_at:.0f} s → rerun Completed {done_at - killed_at:.0f} s "
        f"(heartbeat 30 s, crashed after {ZOMBIE_AFTER:.0f} s without one)"
    )
    rows = _dataset_rows(lab, dataset)
    print("tables (rows, content hash):", _digest(rows))
    assert _digest(rows) == _digest(reference) and rows == reference


@pytest.mark.cluster
def test_a_prefect_server_restart_mid_run_loses_nothing(lab, recordings, reference, tmp_path):
    """The server (SQLite, same port) is stopped and started again while takes run on Dask: the
    flow run and its task runs retry their API calls (a take whose task could not start is submitted
    again) and the run completes — or, when the restart outlasted the zombie window, it is Crashed
    and the rerun completes. Either way the dataset is whole, nothing twice."""
    dataset = _register(lab, recordings, tmp_path)
    call = _client(lab)
    run = _start_run(lab)
    _wait_for_a_take_on_dask(lab)
    restarted_at = time.monotonic()
    cluster.restart(lab.run_dir, "prefect-server", down_for=3)
    lab.processes[:] = cluster.load_state(lab.run_dir).processes
    print(f"\nPrefect server back after {time.monotonic() - restarted_at:.0f} s")
    final = _wait_final(call, run.id, timeout=400)
    if final.state.type.value == "CRASHED":
        assert "no heartbeat" in (final.state.message or ""), final.state
        print("the restart outlasted the zombie window: run Crashed, then rerun")
        final = _rerun_of(call, final)
    assert final.state.type.value == "COMPLETED", final.state
    assert _dataset_rows(lab, dataset) == reference


@pytest.mark.cluster
def test_an_s3_outage_mid_ingest_is_retried_and_loses_nothing(lab, recordings, reference, tmp_path):
    """SeaweedFS is stopped while takes are being transcribed and started again once a writer has
    found it gone (a warning naming the endpoint and the retry): the writes wait and land once."""
    dataset = _register(lab, recordings, tmp_path)
    call = _client(lab)
    run = _start_run(lab)
    _wait_for_a_take_on_dask(lab)
    s3 = next(p for p in lab.processes if p.name == "s3")
    warning = f"object store {lab.s3['endpoint']} unreachable"
    before = _logs(lab).count(warning)
    cluster._stop_group([s3], grace=5)
    stopped_at = time.monotonic()
    while _logs(lab).count(warning) == before and time.monotonic() - stopped_at < 120:
        time.sleep(0.5)
    down_for = time.monotonic() - stopped_at
    cluster.restart(lab.run_dir, "s3")
    lab.processes[:] = cluster.load_state(lab.run_dir).processes
    print(f"\nS3 store down {down_for:.0f} s")
    assert _logs(lab).count(warning) > before, "no S3 operation met the outage"
    final = _wait_final(call, run.id, timeout=400)
    assert final.state.type.value == "COMPLETED", final.state
    assert _dataset_rows(lab, dataset) == reference


def test_what_counts_as_the_infrastructure_s_fault_not_the_take_s():
    """A take is submitted again for these (something it talks to was away), quarantined for the rest."""
    import httpx

    from flows.ingest import is_infrastructure_error
    from pipeline.audio import AudioError
    from pipeline.dataset import DatasetError, StoreUnavailableError

    api_gone = RuntimeError("Failed to reach API at http://127.0.0.1:4200/api/")  # Prefect's task engine, via Dask
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = httpx.ConnectError("All connection attempts failed")
    for exc in (api_gone, wrapped, StoreUnavailableError("rejects: upsert: the object store did not answer"), ConnectionResetError()):
        assert is_infrastructure_error(exc), exc
    # bad input, a bug, or a disk hiccup inside the take's task (its own retries handle that one)
    theirs = (
        AudioError("x.wav", "not audio"),
        DatasetError("clips: unknown column"),
        FileNotFoundError("gone.wav"),
        RuntimeError("boom"),
        OSError(5, "Input/output error"),
    )
    for exc in theirs:
        assert not is_infrastructure_error(exc), exc
