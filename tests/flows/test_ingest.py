"""The ingest flow under a real Prefect server, on real clips with the bundled tiny.en weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_flow, is_transient
from pipeline.audio import AudioError
from pipeline.data import stage_session
from pipeline.dataset import KEYS, SCHEMAS, Dataset
from pipeline.dataset.schemas import VOLATILE
from tests.flows.prefect_reads import latest_artifact

REPO = Path(__file__).resolve().parents[2]
# Short English GTSinger phrases (7.6–8.5 s): three takes, three singers' worth of metadata.
CLIPS = (
    "audio/EN-Alto-2-Vibrato-Vibrato-bBC73SBE.flac",
    "audio/EN-Alto-2-Pharyngeal-Pharyngeal-Bxka7sGu.flac",
    "audio/EN-Alto-2-Breathy-Control-ChrikKDW.flac",
)
SETTINGS = {"model": "tiny.en", "transcribe": {"beam_size": 1}}
CLI_SETTINGS = ["--model", "tiny.en", "--beam-size", "1"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, gtsinger):
    """A recordings root as capture leaves it (WAV/FLAC + manifest per take), plus one corrupt file."""
    root = tmp_path_factory.mktemp("recordings")
    rows = gtsinger.set_index("path").loc[list(CLIPS)].reset_index()
    session = stage_session(rows, root / "2026-11-28-alto", "alto", status=None)
    (session / "take-999.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(300))
    return root


def rows_without_volatile(ds: Dataset) -> dict[str, list[dict]]:
    out = {}
    for name in SCHEMAS:
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in ds.read(name).to_pylist()]
        out[name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in KEYS[name]))
    return out


@pytest.fixture(scope="module")
def reference(prefect_harness, recordings, tmp_path_factory):
    """One uninterrupted run, then a re-run of it. The first compacts after every take (a long run
    compacts every `COMPACT_EVERY` takes): compaction while other takes are being written changes no row."""
    import flows.ingest
    import pipeline.dataset.store as store

    ds_path = tmp_path_factory.mktemp("ref") / "dataset"
    # compact after every take, and merge as few as 2 small files (the store waits for 4 by default)
    every, flows.ingest.COMPACT_EVERY = flows.ingest.COMPACT_EVERY, 1
    least, store.COMPACT_MIN_FILES = store.COMPACT_MIN_FILES, 2
    try:
        first = ingest_flow(str(recordings), str(ds_path), settings=SETTINGS)
    finally:
        flows.ingest.COMPACT_EVERY, store.COMPACT_MIN_FILES = every, least
    after_first = rows_without_volatile(Dataset(ds_path))
    second = ingest_flow(str(recordings), str(ds_path), settings=SETTINGS)
    return ds_path, first, after_first, second


def test_good_takes_ingested_corrupt_one_rejected(reference):
    ds_path, first, rows, _ = reference
    assert first["discovered"] == 4 and first["ingested"] == 3 and first["rejected"] == 1
    (reject,) = rows["rejects"]
    assert reject["stage"] == "ingest" and reject["source"].endswith("take-999.wav") and reject["reason"]
    assert {t["take_id"] for t in rows["takes"]} == {"alto-000", "alto-001", "alto-002"}
    assert all(t["singer"] == "EN-Alto-2" and t["language"] == "en" for t in rows["takes"])
    assert len(rows["clips"]) == 3 and all(c["transcript"] for c in rows["clips"])
    assert all(c["asr_model"] == "faster-whisper:tiny.en" for c in rows["clips"])
    assert {f["clip_id"] for f in rows["features"]} == {c["clip_id"] for c in rows["clips"]}
    assert all(f["dim"] == 384 and f["n_frames"] > 300 for f in rows["features"])
    assert first["suspected_hallucinations"] == sum(c["suspected_hallucination"] for c in rows["clips"])
    ops = [h["operation"] for h in Dataset(ds_path).history("clips")]
    assert ops.count("upsert") == 3 and "compact" in ops


def test_rerun_hits_the_cache_and_adds_no_rows(reference):
    ds_path, first, after_first, second = reference
    assert second["ingested"] == 3 and second["cached"] == 3
    assert rows_without_volatile(Dataset(ds_path)) == after_first


def test_the_rerun_publishes_a_table_of_its_takes_and_names_task_runs_after_them(reference):
    """Read back as a user of the Prefect UI would see it: the table artifact of the last run (the
    re-run: every good take from the cache, the corrupt file with its reason) and its task runs."""
    art, task_runs = latest_artifact("cantolab-ingest")
    table = json.loads(art.data) if isinstance(art.data, str) else art.data
    assert art.type == "table" and "3 ingested (3 from cache), 1 rejected" in art.description
    by_file = {r["file"]: r for r in table}
    assert set(by_file) == {"take-000.flac", "take-001.flac", "take-002.flac", "take-999.wav"}, table
    assert all(by_file[f"take-00{i}.flac"] | {"cached": True} == by_file[f"take-00{i}.flac"] for i in range(3))
    assert [by_file[f"take-00{i}.flac"]["take"] for i in range(3)] == ["alto-000", "alto-001", "alto-002"]
    assert all(by_file[f"take-00{i}.flac"]["clips"] == 1 and not by_file[f"take-00{i}.flac"]["reject reason"] for i in range(3))
    assert by_file["take-999.wav"]["take"] == "" and by_file["take-999.wav"]["reject reason"].startswith("ingest: ")
    names = sorted(t.name for t in task_runs)
    assert names[:3] == ["alto-000 (take-000.flac)", "alto-001 (take-001.flac)", "alto-002 (take-002.flac)"], names


def test_take_deleted_from_dataset_is_redone_despite_cache(prefect_harness, recordings, tmp_path):
    ds_path = tmp_path / "dataset"
    ingest_flow(str(recordings), str(ds_path), settings=SETTINGS)
    ds = Dataset(ds_path)
    ds.delete("takes", [("alto-001",)])
    report = ingest_flow(str(recordings), str(ds_path), settings=SETTINGS)
    assert report["cached"] == 2 and ds.count("takes") == 3


def test_csv_import_reports_bad_rows_and_imports_the_rest(prefect_harness, recordings, tmp_path):
    session = next(recordings.iterdir())
    outside = tmp_path / "outside.flac"
    shutil.copyfile(session / "take-000.flac", outside)
    link = session / "link-out.flac"
    if not link.exists():
        link.symlink_to(outside)
    csv_path = tmp_path / "import.csv"
    csv_path.write_text(
        "path,singer,song,language,style,emotion\n"
        f"{session.name}/take-000.flac,EN-Alto-2,a,EN,Pop,happy\n"
        f"{session.name}/take-002.flac,EN-Alto-2,b,EN,bel canto,sad\n"
        f"{session.name}/missing.flac,EN-Alto-2,c,EN,pop,happy\n"
        f"{session.name}/take-001.flac,EN-Alto-2,d,EN,jazz,happy\n"
        "../outside.flac,x,e,EN,pop,sad\n"
        f"{outside},x,f,EN,pop,sad\n"
        f"{session.name}/link-out.flac,x,g,EN,pop,sad\n"
    )
    ds_path = tmp_path / "dataset"
    try:
        report = ingest_flow(str(recordings), str(ds_path), str(csv_path), settings=SETTINGS)
    finally:
        link.unlink()
    ds = Dataset(ds_path)
    assert report["ingested"] == 2 and report["rejected"] == 5
    reasons = {r["source"].split(" ")[0]: r["reason"] for r in ds.read("rejects").to_pylist()}
    assert reasons == {
        "import.csv:4": "file not found",
        "import.csv:5": "unknown style 'jazz' (allowed: pop, bel canto)",
        "import.csv:6": f"path escapes the recordings root {recordings}",
        "import.csv:7": f"path escapes the recordings root {recordings}",
        "import.csv:8": f"path escapes the recordings root {recordings}",
    }
    labels = ds.read("labels").to_pylist()
    assert sorted((lab["style"], lab["emotion"], lab["resolution"]) for lab in labels) == [
        ("bel canto", "sad", "imported"),
        ("pop", "happy", "imported"),
    ]
    clips = {c["clip_id"]: c for c in ds.read("clips").to_pylist()}
    assert {lab["clip_id"] for lab in labels} == set(clips)


def _cli(recordings: Path, ds: Path, api_url: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api_url, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "flows.cli", "ingest", str(recordings), "--dataset", str(ds), *CLI_SETTINGS]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_run(reference, recordings, prefect_harness, tmp_path):
    ds_path = tmp_path / "dataset"
    proc = _cli(recordings, ds_path, prefect_harness)
    deadline = time.monotonic() + 240
    while not list((ds_path / "clips").glob("part-*.parquet")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no clip written in 240 s"
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Dataset(ds_path).count("takes") < 3  # really interrupted
    rerun = _cli(recordings, ds_path, prefect_harness)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert rows_without_volatile(Dataset(ds_path)) == reference[2]
    for part in ds_path.rglob("part-*.parquet"):
        pq.read_table(part)  # every data file whole


def test_cli_reports_counts_and_missing_model(prefect_harness, recordings, tmp_path, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(recordings), "--dataset", str(tmp_path / "ds"), *CLI_SETTINGS, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["ingested"] == 3 and report["rejected"] == 1
    monkeypatch.setenv("CANTOLAB_MODEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["ingest", str(recordings), "--dataset", str(tmp_path / "ds2"), "--model", "large-v3"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "large-v3" in message and "--model base" in message and "empty-cache" in message
    assert not (tmp_path / "ds2" / "clips").exists()


def test_serve_lists_the_hourly_ingest_deployment(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--recordings", str(tmp_path), "--dataset", str(tmp_path / "ds"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "cantolab-ingest" in result.output and "0 * * * *" in result.output


def test_only_transient_errors_are_retried():
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError()) and is_transient(OSError(5, "EIO"))
    assert not is_transient(FileNotFoundError()) and not is_transient(PermissionError())
    assert not is_transient(AudioError("x.wav", "truncated")) and not is_transient(ValueError("bad"))


def test_a_bad_setting_fails_at_once_instead_of_quarantining_every_take(recordings, tmp_path):
    """openai-whisper has no VAD: exit 2 before the first take, not one reject per take."""
    ds = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["ingest", str(recordings), "--dataset", str(ds), *CLI_SETTINGS, "--backend", "openai-whisper", "--vad"]
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: ") and "vad_filter" in message and "openai-whisper" in message
    assert "Traceback" not in result.output
    assert not ds.exists()  # nothing written: no takes, no rejects


def test_the_flow_itself_refuses_a_bad_setting_before_the_first_take(prefect_harness, recordings, tmp_path):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="vad_filter"):
        ingest_flow(
            str(recordings), str(tmp_path / "ds"), settings={**SETTINGS, "backend": "openai-whisper", "transcribe": {"vad_filter": True}}
        )
    assert Dataset(tmp_path / "ds").count("rejects") == 0


def test_cli_imports_a_mixed_row_and_reads_the_vocabulary_from_the_settings_file(prefect_harness, recordings, tmp_path, monkeypatch):
    """`mixed` is in the one vocabulary (paper, Table 2); `[labels]` in the settings file extends it for every stage."""
    monkeypatch.delenv("CANTOLAB_SETTINGS", raising=False)
    session = next(recordings.iterdir())
    csv_path = tmp_path / "import.csv"
    csv_path.write_text(
        "path,singer,song,language,style,emotion\n"
        f"{session.name}/take-000.flac,EN-Alto-2,a,EN,pop,Mixed\n"
        f"{session.name}/take-001.flac,EN-Alto-2,b,EN,bel canto,calm\n"
    )
    ds_path = tmp_path / "dataset"
    args = ["ingest", str(recordings), "--dataset", str(ds_path), "--import-csv", str(csv_path), *CLI_SETTINGS, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = Dataset(ds_path)
    assert sorted((lab["style"], lab["emotion"]) for lab in ds.read("labels").to_pylist()) == [("pop", "mixed")]
    (reject,) = ds.read("rejects").to_pylist()
    assert reject["source"].startswith("import.csv:3") and reject["reason"] == "unknown emotion 'calm' (allowed: happy, sad, mixed)"

    settings = tmp_path / "cantolab.toml"
    settings.write_text('[labels]\nemotions = ["happy", "sad", "mixed", "calm"]\n')
    result = CliRunner().invoke(app, [*args, "--settings", str(settings)])
    assert result.exit_code == 0, result.output
    assert sorted((lab["style"], lab["emotion"]) for lab in ds.read("labels").to_pylist()) == [("bel canto", "calm"), ("pop", "mixed")]
    assert ds.count("rejects") == 0  # the row imported now is no longer listed as rejected

    settings.write_text('[labels]\nemotion = ["happy"]\n')  # a misspelt key stops the run at once
    result = CliRunner().invoke(app, [*args, "--settings", str(settings)])
    assert result.exit_code == 2 and "emotion" in result.output and "Traceback" not in result.output
