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


@pytest.fixture(scope="module", name="recordings")
def staged_recordings(tmp_path_factory, gtsinger):
    """The CLIPS as one staged session (test_faults runs on the same takes)."""
    root = tmp_path_factory.mktemp("recordings")
    rows = gtsinger.set_index("path").loc[list(CLIPS)].reset_index()
    stage_session(rows, root / "2026-11-28-alto", "alto")
    return root


@pytest.fixture(scope="module")
def ls_secrets(tmp_path_factory):
    """Where every process of the cluster finds the Label Studio secrets (URL, token, projects): a
    file the end-to-end test fills once its server is up, named in the environment the cluster's
    workers start with (as a studio server's worker would have it in its own)."""
    path = tmp_path_factory.mktemp("ls-secrets") / "labelstudio.json"
    mp = pytest.MonkeyPatch()
    mp.setenv("CANTOLAB_LS_SECRETS", str(path))
    for key in ("CANTOLAB_LS_URL", "CANTOLAB_LS_TOKEN", "CANTOLAB_LS_DOCUMENT_ROOT", "CANTOLAB_ROSTER"):
        mp.delenv(key, raising=False)
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, ls_secrets):
    with local_cluster(tmp_path_factory.mktemp("cluster"), dask_workers=2, prefect_workers=2) as state:
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


@pytest.fixture(scope="module", name="reference")
def one_process_reference(lab, recordings, tmp_path_factory) -> dict:
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
    rows = _rows(Dataset(ds))
    assert len(rows["takes"]) == len(CLIPS) and rows["clips"], {k: len(v) for k, v in rows.items()}
    return rows


def _run_deployment(state, name: str, on_running=None, timeout: float = 400, parameters: dict | None = None) -> str:
    """Start a deployment's run, call `on_running` once a task runs, wait; returns the final state."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: state.prefect_api}):
        run = run_deployment(name, timeout=0, parameters=parameters)

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
    ran = [f"alto-{i:03d}" for i in range(len(CLIPS)) if f"Task run 'alto-{i:03d} (take-{i:03d}.flac)'" in worker_logs]
    assert len(ran) == len(CLIPS), f"the takes did not all run on the Dask workers (task runs are named after takes): {ran}"
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


# ----------------------------------------------------------------------------- studio to model
# Three singers, two takes each (distinct English phrases), recorded through the virtual interface.
E2E_CLIPS = (
    "audio/EN-Alto-2-Vibrato-Vibrato-bBC73SBE.flac",
    "audio/EN-Alto-2-Pharyngeal-Pharyngeal-Bxka7sGu.flac",
    "audio/EN-Alto-2-Breathy-Control-ChrikKDW.flac",
)
E2E_SINGERS = ("S1", "S2", "S3")
# A model small enough for seconds per run (the retrain's own tests use the same recipe).
TINY_TRAIN = {
    "model": {"encoder": "audio", "d_model": 16, "layers": 1, "heads": 2, "dropout": 0.0},
    "tasks": ["emotion"], "seeds": [0], "max_frames": 64, "batch_size": 8, "epochs": 2, "split": [0.34, 0.33, 0.33],
}  # fmt: skip


def _record_takes(gtsinger, root: Path) -> Path:
    """`cantolab capture record` on the virtual interface (ALSA null device reading a GTSinger
    phrase), one process per take: each singer sings each phrase once, so no two takes are equal."""
    import numpy as np
    import soundfile as sf

    from capture import virtual_device as vd

    recordings = root / "REC"
    rows = gtsinger.set_index("path").loc[list(E2E_CLIPS)]
    for singer in E2E_SINGERS:
        for i, (path, row) in enumerate(rows.iloc[:2].iterrows() if singer != "S2" else rows.iloc[1:].iterrows()):
            samples, rate = sf.read(row.abs_path, dtype="int32", always_2d=True)
            assert rate == 48_000
            device = root / f"{singer}-{i}"
            device.mkdir()
            gain = {"S1": 0, "S2": 1, "S3": 2}[singer]  # a quieter voice per singer: distinct audio, same words
            config = vd.write_alsa_config(device, vd.write_s32_infile(device / "in.s32", (samples[:, 0] >> gain).astype(np.int32)))
            env = {k: v for k, v in os.environ.items() if not k.startswith("JACK_")} | {"ALSA_CONFIG_PATH": str(config)}
            out = subprocess.run(
                [sys.executable, "-m", "flows.cli", "capture", "record", "--session", f"e2e-{singer}", "--singer", singer,
                 "--song", Path(path).stem, "--device", "virtual", "--recordings", str(recordings), "--min-free-minutes", "1",
                 "--seconds", f"{row.seconds - 0.2:.2f}"],
                env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
    assert len(list(recordings.rglob("*.wav"))) == 6
    return recordings


def _label_studio(ls_secrets: Path, root: Path) -> dict:
    """A real Label Studio with the workflow's projects (two annotators, one adjudicator), its URL,
    token, document root and projects in the secrets file the cluster's workers read."""
    from annotation.client import invite_link, setup_projects
    from annotation.settings import AnnotationSettings, Roster, write_secrets
    from annotation.workspace import record_projects
    from tests.annotation.ls_fixtures import real_server, signup

    server = real_server()
    token, _ = server.credentials()
    settings = AnnotationSettings(url=server.url, project_prefix="E2E")
    roster = Roster(annotators=("e2e-a@example.org", "e2e-b@example.org"), adjudicator="e2e-j@example.org")
    (root / "roster.toml").write_text('annotators = ["e2e-a@example.org", "e2e-b@example.org"]\nadjudicator = "e2e-j@example.org"\n')
    (root / "annotation.toml").write_text('[annotation]\nproject_prefix = "E2E"\n')
    projects = setup_projects(server, settings, roster, server.document_root / settings.media_subdir)
    write_secrets({"url": server.url, "service_token": token, "document_root": str(server.document_root)}, ls_secrets)
    record_projects(server.url, projects)
    link = invite_link(settings, token)
    tokens = {}
    for email in roster.annotators:
        session = signup(settings.url, email, f"own-{email}", link)
        tokens[email] = session.get(f"{settings.url}/api/current-user/token", timeout=30).json()["token"]
    return {"settings": settings, "projects": projects, "tokens": tokens}


def test_studio_to_model_on_the_cluster(lab, gtsinger, ls_secrets, tmp_path):
    """The studio's whole path on the cluster (2 Prefect workers, 2 Dask workers, S3): takes recorded
    from the virtual interface → `capture push` → the ingest deployment (takes on Dask) → the
    annotation-sync deployment against a real Label Studio, two annotators labelling through its API
    → the sync again (labels) → the retrain deployment reading the dataset from S3. The ingested
    tables equal a single-process run on the same takes; both runs publish their artifacts."""
    from annotation.labeling import choice_result
    from annotation.sync import export_tasks
    from tests.flows.prefect_reads import latest_artifact

    recordings = _record_takes(gtsinger, tmp_path)
    ls = _label_studio(ls_secrets, tmp_path)
    bucket = lab.s3["bucket"]
    pushed, dataset, models = f"s3://{bucket}/e2e-recordings", f"s3://{bucket}/e2e-dataset", tmp_path / "models"
    assert "6 pushed" in _cli(lab, "capture", "push", str(recordings), pushed).stdout
    out = _cli(lab, "serve", "-r", pushed, "-d", dataset, "-m", "tiny.en", "--models", str(models), "--work-pool", "cantolab",
               "--annotation-settings", str(tmp_path / "annotation.toml"), "--roster", str(tmp_path / "roster.toml"))  # fmt: skip
    assert "registered annotation-sync/cantolab-annotation-sync" in out.stdout, out.stdout

    assert _run_deployment(lab, "ingest/cantolab-ingest") == "COMPLETED"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        rows = _rows(Dataset(dataset))
    logs = {p.name: Path(p.log).read_text() for p in lab.processes if p.role == "dask-worker"}
    assert sum(text.count("Finished in state Completed") for text in logs.values()) >= 6, "the takes did not run on Dask"

    # The same recordings, one process, no Dask, one thread: the same takes, clips and features.
    single = tmp_path / "single"
    code = "import sys, json; from flows.ingest import ingest_flow; print(json.dumps(ingest_flow(sys.argv[1], sys.argv[2], None, json.loads(sys.argv[3]), 1)))"
    env = _env(lab) | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("CANTOLAB_DASK_ADDRESS")
    ref = subprocess.run([sys.executable, "-c", code, str(recordings), str(single), json.dumps(SETTINGS)], env=env,
                         capture_output=True, text=True, timeout=400)  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = _rows(Dataset(single))
    assert len(rows["takes"]) == 6 and {t["singer"] for t in rows["takes"]} == set(E2E_SINGERS)
    for table in ("takes", "clips", "features"):
        drop = ("source_path",)  # the pushed copy's local mirror vs the recordings folder: the only difference
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows[table]] == [
            {k: v for k, v in r.items() if k not in drop} for r in reference[table]
        ], table

    # Annotation: the sync deployment makes two tasks per clip; each annotator labels theirs (a
    # singer's first phrase happy, the second sad); the next sync turns agreement into labels.
    assert _run_deployment(lab, "annotation-sync/cantolab-annotation-sync") == "COMPLETED"
    take_of = {c["clip_id"]: c["take_id"] for c in rows["clips"]}
    order = {t["take_id"]: i for i, t in enumerate(sorted(rows["takes"], key=lambda t: (t["singer"], t["started_at"] or "")))}
    settings, projects = ls["settings"], ls["projects"]
    from annotation.client import connect

    annotated = 0
    for email, pid in projects.first.items():
        client = connect(settings, ls["tokens"][email])
        for t in export_tasks(client, pid):
            emotion = "happy" if order[take_of[t["data"]["clip_id"]]] % 2 == 0 else "sad"
            client.annotations.create(id=t["id"], result=[choice_result("style", "pop"), choice_result("emotion", emotion)])
            annotated += 1
    assert annotated == 12
    assert _run_deployment(lab, "annotation-sync/cantolab-annotation-sync") == "COMPLETED"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in lab.env().items():
            mp.setenv(key, value)
        labels = Dataset(dataset).to_pandas("labels")
    assert len(labels) == 6 and set(labels.resolution) == {"agreed"} and set(labels.emotion) == {"happy", "sad"}

    # The retrain on a worker, reading the dataset from S3; its model and decision stay in the models folder.
    assert _run_deployment(lab, "cantolab-retrain/cantolab-retrain", parameters={"config": TINY_TRAIN}) == "COMPLETED"
    champion = json.loads((models / "champion.json").read_text())
    assert (models / champion["run"] / "model.safetensors").exists()
    art, _ = latest_artifact("cantolab-retrain", lab.prefect_api)
    assert art.data.startswith("# Retrain: promote") and f"`{models.resolve() / champion['run']}`" in art.data
    table, task_runs = latest_artifact("cantolab-ingest", lab.prefect_api)
    assert table.description.startswith("6 discovered, 6 ingested"), table.description
    assert {t.name.split(" (")[0] for t in task_runs} == {t["take_id"] for t in rows["takes"]}  # task runs named after takes
