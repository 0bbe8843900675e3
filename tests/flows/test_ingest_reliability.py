"""Issue 14's ingest findings, each reproduced against the real flow, Prefect server and tiny.en.

Re-ingest never erases metadata; conflicting imports are rejected naming the row they conflict
with; thousands of missing-file rows are rejected in batches; a SIGTERMed or SIGKILLed ingest takes
its temporary Prefect server with it; two ingests of one dataset transcribe each take once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_flow
from flows.local_server import SERVER_APP, reap_orphans, records_dir, start_time
from pipeline.dataset import Dataset

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"model": "tiny.en", "transcribe": {"beam_size": 1, "keep_encoder_frames": False}}
CLI_SETTINGS = ["--model", "tiny.en", "--beam-size", "1", "--no-features"]


@pytest.fixture(scope="module")
def clips(gtsinger) -> list[Path]:
    """Real GTSinger phrases, shortest first (fast to transcribe)."""
    return [Path(p) for p in gtsinger.sort_values("seconds")["abs_path"]]


def _takes(ds: Dataset) -> dict[str, dict]:
    return {r["take_id"]: r for r in ds.read("takes").to_pylist()}


def test_reingest_without_manifest_keeps_metadata_and_reports_it(prefect_harness, clips, tmp_path):
    """14.1: known takes dropped in again without manifest had singer/session/song/language nulled."""
    studio = tmp_path / "studio" / "2026-11-28"
    studio.mkdir(parents=True)
    for i, clip in enumerate(clips[:2]):
        shutil.copyfile(clip, studio / f"take-{i}.flac")
        manifest = {"take_id": f"t-{i}", "session": "2026-11-28", "singer": f"singer-{i}", "song": f"song-{i}", "language": "en"}
        (studio / f"take-{i}.json").write_text(json.dumps(manifest))
    ds_path = tmp_path / "dataset"
    ingest_flow(str(tmp_path / "studio"), str(ds_path), settings=SETTINGS)
    before = _takes(Dataset(ds_path))

    dropped = tmp_path / "dropped"
    (dropped / "some-folder").mkdir(parents=True)  # its name is no session to replace the known one
    shutil.copyfile(studio / "take-0.flac", dropped / "some-folder" / "copy-0.flac")
    shutil.copyfile(studio / "take-1.flac", dropped / "copy-1.flac")
    report = ingest_flow(str(dropped), str(ds_path), settings=SETTINGS)
    assert report["found_again"] == 2 and report["changed"] == []
    for take_id, row in _takes(Dataset(ds_path)).items():
        assert {k: row[k] for k in ("session", "singer", "song", "language")} == {
            k: before[take_id][k] for k in ("session", "singer", "song", "language")
        }

    csv_path = tmp_path / "fix.csv"
    csv_path.write_text("path,song\nsome-folder/copy-0.flac,\ncopy-1.flac,song-1-renamed\n")
    report = ingest_flow(str(dropped), str(ds_path), str(csv_path), settings=SETTINGS)

    after = _takes(Dataset(ds_path))
    assert set(after) == {"t-0", "t-1"}, "the same audio keeps its take id"
    for take_id in after:
        for key in ("session", "singer", "language"):
            assert after[take_id][key] == before[take_id][key], (take_id, key)
    assert after["t-0"]["song"] == "song-0" and after["t-1"]["song"] == "song-1-renamed"
    assert report["ingested"] == 2 and report["found_again"] == 2
    assert report["changed"] == [{"take_id": "t-1", "source": str((dropped / "copy-1.flac").resolve()), "fields": ["song"]}]
    assert Dataset(ds_path).count("clips") == len(Dataset(ds_path).read("clips"))
    assert all(c["singer"] for c in Dataset(ds_path).read("clips").to_pylist())


def test_conflicting_import_rows_are_rejected_naming_the_first(prefect_harness, clips, tmp_path):
    """14.2: same take_id for two files, one file twice with other labels, two identical files."""
    root = tmp_path / "rec"
    root.mkdir()
    for i, clip in enumerate(clips[:3]):
        shutil.copyfile(clip, root / f"{i}.flac")
    shutil.copyfile(clips[0], root / "0-copy.flac")
    csv_path = tmp_path / "import.csv"
    csv_path.write_text(
        "path,take_id,singer,style,emotion\n"
        "0.flac,same,a,pop,happy\n"  # line 2: kept
        "1.flac,same,b,pop,happy\n"  # line 3: take id of line 2, other audio
        "2.flac,,c,pop,happy\n"  # line 4: kept
        "2.flac,,c,bel canto,sad\n"  # line 5: the file of line 4 again, other labels
        "0-copy.flac,,a,pop,happy\n"  # line 6: the audio of line 2 again
    )
    ds_path = tmp_path / "dataset"
    report = ingest_flow(str(root), str(ds_path), str(csv_path), settings=SETTINGS)
    ds = Dataset(ds_path)
    reasons = {r["source"].split(" ")[0]: r["reason"] for r in ds.read("rejects").to_pylist()}
    assert reasons.keys() == {"import.csv:3", "import.csv:5", "import.csv:6"}
    assert reasons["import.csv:3"].startswith("take id 'same' is already given to import.csv:2 (")
    assert reasons["import.csv:5"].startswith("same audio as import.csv:4 (") and "different labels" in reasons["import.csv:5"]
    assert reasons["import.csv:6"].startswith("same audio as import.csv:2 (")
    assert report["ingested"] == ds.count("takes") == 2 and report["rejected"] == ds.count("rejects") == 3
    assert report["clips"] == ds.count("clips") == ds.count("labels")
    assert {(lab["style"], lab["emotion"]) for lab in ds.read("labels").to_pylist()} == {("pop", "happy")}


def test_thousands_of_missing_file_rows_are_rejected_in_batches(prefect_harness, tmp_path):
    """14.3: each reject was its own upsert re-reading the table (300 rows: 37 s, quadratic).

    The figure for 10,000 rows is in `make bench` (robustness); the bound here only catches a
    return of the quadratic cost (it would take minutes), not a speed regression.
    """
    root = tmp_path / "rec"
    root.mkdir()
    rows = 2000
    csv_path = tmp_path / "missing.csv"
    csv_path.write_text("path\n" + "".join(f"gone-{i}.flac\n" for i in range(rows)))
    t0 = time.perf_counter()
    report = ingest_flow(str(root), str(tmp_path / "dataset"), str(csv_path), settings=SETTINGS)
    elapsed = time.perf_counter() - t0
    assert report["rejected"] == Dataset(tmp_path / "dataset").count("rejects") == rows
    assert elapsed < 60, f"{rows} missing-file rows took {elapsed:.0f} s"


def test_import_csv_folder_and_missing_rejects_dataset_are_clear_errors(tmp_path):
    """14.9: `--import-csv` naming a folder was a traceback; `dataset rejects` on no dataset said 'no rejects'."""
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(tmp_path), "--dataset", str(tmp_path / "ds"), "--import-csv", str(tmp_path), *CLI_SETTINGS])
    assert result.exit_code == 2, result.output
    assert f"import CSV {tmp_path}: a folder" in " ".join(result.output.split())
    result = runner.invoke(app, ["dataset", "rejects", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no rejects" not in result.output
    assert "nowhere" in result.output and "no dataset" in " ".join(result.output.split())


def _cli(recordings: Path, ds: Path, env: dict, log: Path) -> subprocess.Popen:
    """The CLI with its JSON report in `log`.out and its logs in `log`.err (files: a pipe nobody reads blocks it)."""
    cmd = [sys.executable, "-m", "flows.cli", "ingest", str(recordings), "--dataset", str(ds), *CLI_SETTINGS, "--json"]
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True)


def _gone(pid: int, started: int | None, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if start_time(pid) != started:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_ingest_leaves_no_prefect_server_and_sigterm_is_prompt(clips, tmp_path, sig):
    """14.8 + 14.3: the temporary Prefect server outlived a killed ingest (parent PID 1), and a
    SIGTERM waited for every queued take (35 s)."""
    root = tmp_path / "rec"
    root.mkdir()
    for i, clip in enumerate(clips[:40]):
        shutil.copyfile(clip, root / f"{i:02d}.flac")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"XDG_RUNTIME_DIR": str(run_dir), "PREFECT_HOME": str(tmp_path / "prefect-home"), "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(REPO)}  # fmt: skip
    ds = tmp_path / "dataset"
    proc = _cli(root, ds, env, tmp_path / "cli")
    deadline = time.monotonic() + 240
    while not list((ds / "clips").glob("part-*.parquet")):
        assert proc.poll() is None, (tmp_path / "cli.err").read_text()
        assert time.monotonic() < deadline, "no clip written in 240 s"
        time.sleep(0.1)
    (record,) = [json.loads(p.read_text()) for p in (run_dir / f"cantolab-{os.getuid()}" / "prefect-servers").glob("*.json")]
    assert SERVER_APP in Path(f"/proc/{record['pid']}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert time.monotonic() - t0 < 30
    assert _gone(record["pid"], record["start_time"], within=15), "the temporary Prefect server outlived its ingest"
    assert Dataset(ds).count("takes") < 40, "the run finished before it was signalled"


def test_reaping_checks_the_pid_is_really_our_server(tmp_path, monkeypatch):
    """A leftover record whose PID now belongs to another process: that process is left alone."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        folder = records_dir()
        folder.mkdir(parents=True)
        record = {"pid": sleeper.pid, "start_time": start_time(sleeper.pid), "parent": 2**22 + 7, "parent_start_time": 1, "port": 1}
        (folder / f"{sleeper.pid}.json").write_text(json.dumps(record))
        assert reap_orphans() == []
        assert sleeper.poll() is None, "an unrelated process was signalled"
        assert not list(folder.glob("*.json")), "the stale record is removed"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_concurrent_ingests_transcribe_each_take_once(prefect_harness, clips, tmp_path):
    """14.9: two ingests of one dataset each transcribed everything."""
    root = tmp_path / "rec"
    root.mkdir()
    for i, clip in enumerate(clips[:6]):
        shutil.copyfile(clip, root / f"{i}.flac")
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "DO_NOT_TRACK": "1", "PYTHONPATH": str(REPO)}
    ds = tmp_path / "dataset"
    runs = [_cli(root, ds, env, tmp_path / f"cli-{i}") for i in range(2)]
    reports = []
    for i, proc in enumerate(runs):
        assert proc.wait(timeout=400) == 0, (tmp_path / f"cli-{i}.err").read_text()
        out = (tmp_path / f"cli-{i}.out").read_text()
        reports.append(json.loads(out[out.index("{") :]))
    transcribed = sum(r["ingested"] - r["cached"] for r in reports)
    assert transcribed == 6, [(r["ingested"], r["cached"], r["skipped"]) for r in reports]
    assert Dataset(ds).count("takes") == 6
    assert all(s["reason"].startswith(("in progress", "ingested by another")) for r in reports for s in r["skips"])
