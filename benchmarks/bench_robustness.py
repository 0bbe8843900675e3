"""Robustness figures (issue 14): imports that scale, memory bounded by the limits, not the input.

- 10,000 CSV rows of missing files: time until all are in `rejects` (target < 30 s);
- ingest of N1 and N2 valid short takes (1-s windows of real GTSinger clips, tiny.en): the flow
  process's peak RSS for each and their difference (target < 200 MB for 1,000 vs 3,000);
- a 2-hour 24-bit WAV: peak RSS of `cantolab ingest` on it, and of predict's audio path on it
  next to the same process with only the imports (target < 400 MB).

Each measurement is a child process whose peak RSS comes from wait4; the Prefect server is
started once here (not a child of the measured process, so its memory is not counted).
CANTOLAB_BENCH_ROBUSTNESS_TAKES="1000,3000" sets the two take counts (smaller for a quick look).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from benchmarks.common import write_result

REPO = Path(__file__).resolve().parent.parent
MISSING_ROWS = 10_000
SETTINGS = {"model": "tiny.en", "transcribe": {"beam_size": 1, "keep_encoder_frames": False}}


def _child(code: str, env: dict) -> tuple[str, float, float]:
    """Run `code` in a fresh interpreter: its stdout, wall seconds and peak RSS in MB."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child failed ({os.waitstatus_to_exitcode(status)}): {text[-2000:]}")
    return text, wall, usage.ru_maxrss / 1024


def _flow_code(recordings: Path, dataset: Path, csv: Path | None = None) -> str:
    return (
        "import json, time\n"
        "from flows.ingest import ingest_flow, quiet_run_logs\n"
        "quiet_run_logs()\n"
        "t0 = time.perf_counter()\n"
        f"r = ingest_flow({str(recordings)!r}, {str(dataset)!r}, {str(csv) if csv else None!r}, settings={SETTINGS!r})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'ingested': r['ingested'], 'rejected': r['rejected'], 'clips': r['clips']}))\n"
    )


def _short_takes(folder: Path, n: int) -> None:
    """`n` distinct 1-s takes cut from real GTSinger clips (a generated note per take without the data)."""
    from pipeline.data import read_labels, shared_data_dir
    from pipeline.synth import SungNote, sung_note

    folder.mkdir(parents=True)
    sources = []
    if shared_data_dir() is not None:
        sources = [sf.read(p, dtype="float32")[0] for p in sorted(read_labels("gtsinger").abs_path)]
    i = 0
    offset = 0
    while i < n:
        for audio in sources or [None]:
            if i >= n:
                break
            if audio is None:
                piece = sung_note(SungNote(seconds=1.0, f0_hz=150 + i % 300), seed=i)
            else:
                start = (offset * 12_000) % max(1, len(audio) - 48_000)
                piece = audio[start : start + 48_000]
            sf.write(folder / f"take-{i:05d}.wav", piece, 48_000, subtype="PCM_24")
            i += 1
        offset += 1


def main() -> dict:
    from flows.local_server import prefect_api
    from pipeline.synth import long_take_wav

    counts = [int(x) for x in os.environ.get("CANTOLAB_BENCH_ROBUSTNESS_TAKES", "1000,3000").split(",")]
    load_before = [round(x, 2) for x in os.getloadavg()]
    result: dict = {"load_avg_1_5_15_before": load_before}
    with tempfile.TemporaryDirectory(prefix="bench-robustness-") as tmp, prefect_api() as api:
        tmp = Path(tmp)
        env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1"}

        # 1. 10,000 rows of missing files
        (tmp / "empty").mkdir()
        csv = tmp / "missing.csv"
        csv.write_text("path\n" + "".join(f"missing-{i}.flac\n" for i in range(MISSING_ROWS)))
        out, wall, rss = _child(_flow_code(tmp / "empty", tmp / "ds-missing", csv), env)
        report = json.loads(out.strip().splitlines()[-1])
        result["missing_rows"] = {"rows": MISSING_ROWS, "rejected": report["rejected"], "flow_seconds": round(report["seconds"], 2),
                                  "process_seconds": round(wall, 2), "peak_rss_mb": round(rss, 1), "target_seconds": 30}  # fmt: skip

        # 2. valid short takes: memory must not grow with their number
        takes = {}
        for n in counts:
            _short_takes(tmp / f"takes-{n}", n)
            out, wall, rss = _child(_flow_code(tmp / f"takes-{n}", tmp / f"ds-{n}"), env)
            report = json.loads(out.strip().splitlines()[-1])
            takes[str(n)] = {"ingested": report["ingested"], "rejected": report["rejected"], "clips": report["clips"],
                             "flow_seconds": round(report["seconds"], 1), "peak_rss_mb": round(rss, 1)}  # fmt: skip
        result["valid_takes"] = takes
        result["valid_takes_rss_difference_mb"] = round(takes[str(counts[-1])]["peak_rss_mb"] - takes[str(counts[0])]["peak_rss_mb"], 1)
        result["valid_takes_target_mb"] = 200

        # 3. a 2-hour WAV: ingest (the CLI) and predict's audio path
        (tmp / "long").mkdir()
        wav = long_take_wav(tmp / "long" / "two-hours.wav", 2 * 3600)
        cli = (
            "import sys\nfrom flows.cli import app\n"
            f"sys.argv = ['cantolab', 'ingest', {str(tmp / 'long')!r}, '--dataset', {str(tmp / 'ds-long')!r}, '--model', 'tiny.en', '--json']\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        )
        out, wall, rss = _child(cli, env)
        report = json.loads(out[out.index("{") :])
        imports = "from model.predict import examples_from_files\nfrom pipeline.audio import AudioError\n"
        _, _, baseline = _child(imports, env)
        out_p, _, rss_p = _child(imports + f"try:\n    examples_from_files([{str(wav)!r}])\nexcept AudioError as e:\n    print(e)\n", env)
        result["two_hour_wav"] = {
            "file_bytes": wav.stat().st_size,
            "ingest_peak_rss_mb": round(rss, 1),
            "ingest_rejected": report["rejected"],
            "ingest_reason": report["rejects"][0]["reason"] if report["rejects"] else None,
            "predict_peak_rss_mb": round(rss_p, 1),
            "predict_imports_only_peak_rss_mb": round(baseline, 1),
            "predict_reason": out_p.strip()[-200:],
            "target_mb": 400,
        }
    result["load_avg_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    result["take_counts_note"] = "CANTOLAB_BENCH_ROBUSTNESS_TAKES=" + ",".join(map(str, counts))
    return write_result("robustness", result)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
