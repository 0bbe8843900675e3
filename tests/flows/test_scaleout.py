"""The pipeline on a local cluster of real processes (`flows.cluster`): deployments registered on the
`cantolab` pool run on a Prefect worker, the ingest's takes on two Dask workers, the dataset on S3
(SeaweedFS); the result equals a single-process run on the same takes, also when a Dask worker is
killed mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import cluster
from pipeline.data import stage_session
from pipeline.dataset import KEYS, SCHEMAS, Dataset
from pipeline.dataset.schemas import VOLATILE
from tests.flows.conftest import local_cluster

CLIPS = (
    "audio/EN-Alto-2-Vibrato-Vibrato-bBC73SBE.flac",
    "audio/EN-Alto-2-Pharyngeal-Pharyngeal-Bxka7sGu.flac",
    "audio/EN-Alto-2-Breathy-Control-ChrikKDW.flac",
)
SETTINGS = {"model": "tiny.en"}  # what `cantolab serve --model tiny.en` passes


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, gtsinger):
    root = tmp_path_factory.mktemp("recordings")
    rows = gtsinger.set_index("path").loc[list(CLIPS)].reset_index()
    stage_session(rows, root / "2026-11-28-alto", "alto")
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("cluster"), dask_workers=2) as state:
        yield state


def _env(state: cluster.ClusterState) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return base | state.env() | {"COLUMNS": "200"}


def _cli(state, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=_env(state), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _rows(ds: Dataset) -> dict[str, list[dict]]:
    out = {}
    for name in SCHEMAS:
        if not ds.exists(name):
            out[name] = []
            continue
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in ds.read(name).to_pylist()]
        out[name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in KEYS[name]))
    return out


@pytest.fixture(scope="module")
def reference(lab, recordings, tmp_path_factory) -> dict:
    """The same takes ingested in one process on threads (no Dask), into a local dataset. Dask starts
    its workers with OMP_NUM_THREADS=1 (and MKL/OpenBLAS): so does this run, since Whisper's float
    sums (logprobs, encoder frames) depend on how many threads add them up."""
    ds = tmp_path_factory.mktemp("reference") / "dataset"
    code = "import sys, json; from flows.ingest import ingest_flow; print(json.dumps(ingest_flow(sys.argv[1], sys.argv[2], None, json.loads(sys.argv[3]), 1)))"
    env = _env(lab) | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("CANTOLAB_DASK_ADDRESS")
    out = subprocess.run(
        [sys.executable, "-c", code, str(recordings), str(ds), json.dumps(SETTINGS)], env=env, capture_output=True, text=True, timeout=400
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ingested"] == len(CLIPS) and report["rejected"] == 0, report
    return _rows(Dataset(ds))


def _run_deployment(state, name: str, on_running=None, timeout: float = 400) -> str:
    """Start a deployment's run, call `on_running` once a task runs, wait; returns the final state."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: state.prefect_api}):
        run = run_deployment(name, timeout=0)

        async def read():
            async with get_client() as client:
                return await client.read_flow_run(run.id)

        deadline = time.monotonic() + timeout
        while True:
            flow_run = asyncio.run(read())
            if flow_run.state.is_final():
                return flow_run.state.type.value
            if on_running is not None and on_running():
                on_running = None
            assert time.monotonic() < deadline, f"{name} did not finish within {timeout} s: {flow_run.state}"
            time.sleep(1)


def test_deployment_runs_on_a_worker_with_takes_on_dask(lab, recordings, reference, tmp_path):
    dataset = f"s3://{lab.s3['bucket']}/{tmp_path.name}"
    out = _cli(lab, "serve", "-r", str(recordings), "-d", dataset, "-m", "tiny.en", "--no-annotation-sync",
               "--models", str(tmp_path / "models"), "--work-pool", "cantolab")  # fmt: skip
    assert "registered ingest/cantolab-ingest" in out.stdout and "registered cantolab-retrain/cantolab-retrain" in out.stdout
    assert _run_deployment(lab, "ingest/cantolab-ingest") == "COMPLETED"
    worker_logs = "".join(Path(p.log).read_text() for p in lab.processes if p.role == "dask-worker")
    assert worker_logs.count("Task run 'ingest-take") >= len(CLIPS), "the takes did not run on the Dask workers"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        assert _rows(Dataset(dataset)) == reference


def test_a_dask_worker_killed_mid_ingest_changes_nothing(lab, recordings, reference, tmp_path):
    from distributed import Client

    dataset = f"s3://{lab.s3['bucket']}/{tmp_path.name}"
    _cli(lab, "serve", "-r", str(recordings), "-d", dataset, "-m", "tiny.en", "--no-annotation-sync",
         "--models", str(tmp_path / "models"), "--work-pool", "cantolab")  # fmt: skip
    killed = []
    with Client(lab.dask_address, timeout=30) as client:
        pids = client.run(os.getpid)  # worker address → the worker process (its nanny restarts it)

        def kill_a_busy_worker() -> bool:
            busy = [addr for addr, keys in client.processing().items() if keys]
            if not busy:
                return False
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])
            return True

        assert _run_deployment(lab, "ingest/cantolab-ingest", on_running=kill_a_busy_worker) == "COMPLETED"
    assert killed, "no take was seen running on a Dask worker"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        assert _rows(Dataset(dataset)) == reference


def test_pushed_takes_ingest_from_s3_on_the_pool(lab, recordings, reference, tmp_path):
    """The studio's hand-off end to end: `capture push` to the cluster's S3, the ingest deployment
    reading `s3://…/recordings` on the worker, its takes on Dask."""
    pushed = f"s3://{lab.s3['bucket']}/{tmp_path.name}-recordings"
    out = _cli(lab, "capture", "push", str(recordings), pushed)
    assert f"{len(CLIPS)} pushed" in out.stdout, out.stdout
    dataset = f"s3://{lab.s3['bucket']}/{tmp_path.name}"
    _cli(lab, "serve", "-r", pushed, "-d", dataset, "-m", "tiny.en", "--no-annotation-sync",
         "--models", str(tmp_path / "models"), "--work-pool", "cantolab")  # fmt: skip
    assert _run_deployment(lab, "ingest/cantolab-ingest") == "COMPLETED"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        rows = _rows(Dataset(dataset))
    assert [t["take_id"] for t in rows["takes"]] == [t["take_id"] for t in reference["takes"]]
    pick = lambda table: [(c["clip_id"], c["transcript"], c["start_s"], c["end_s"]) for c in table]  # noqa: E731
    assert pick(rows["clips"]) == pick(reference["clips"])
