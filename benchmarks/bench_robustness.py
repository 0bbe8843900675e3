"""Robustness figures (issue 14): imports that scale, memory bounded by the limits, not the input.

- 10,000 CSV rows of missing files: time until all are in `rejects` (target < 30 s);
- ingest of N1 and N2 valid short takes (1-s windows of real GTSinger clips, tiny.en): the flow
  process's peak RSS for each and their difference (target < 200 MB for 1,000 vs 3,000). The whole
  flow takes ~3 s a take on the shared 2-core machine (hours for 1,000 + 3,000), so the default is
  100,300 (CANTOLAB_BENCH_ROBUSTNESS_TAKES="1000,3000" for the issue's counts), and the dataset's
  writes alone (what grew with the rows) are measured at 1,000 and 3,000
  (CANTOLAB_BENCH_ROBUSTNESS_STORE_TAKES);
- a 2-hour 24-bit WAV: peak RSS of `cantolab ingest` and of `cantolab predict` (a tiny model trained
  here on the reference clips) on it (target < 400 MB), and of an honest predict of one normal take.

Each measurement is a child process that reports its own peak RSS (VmHWM); the Prefect server is
started once here (not a child of the measured process, so its memory is not counted).
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


def _child(code: str, env: dict, with_stderr: bool = False) -> tuple[str, float, float]:
    """Run `code` in a fresh interpreter: its stdout, wall seconds and its own peak RSS in MB.

    The child reports its VmHWM itself: the ru_maxrss of an exec'd child carries the parent's
    high-water mark from before the exec.
    """
    epilogue = "\nprint('PEAK_RSS_KB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + epilogue],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if with_stderr else subprocess.DEVNULL,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stdout[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    peak = int(next(line for line in lines if line.startswith("PEAK_RSS_KB")).split()[1]) / 1024
    text = "\n".join(line for line in lines if not line.startswith("PEAK_RSS_KB"))
    return text, wall, peak


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
                start = (offset * 12_007) % max(1, len(audio) - 48_000)  # 12,007: windows that wrap around differ
                piece = audio[start : start + 48_000]
            sf.write(folder / f"take-{i:05d}.wav", piece, 48_000, subtype="PCM_24")
            i += 1
        offset += 1


def _store_code(takes: Path, dataset: Path, n: int) -> str:
    """What an ingest of `n` one-second takes writes, without transcribing them: per take the
    flow's `write_take` (a takes row and a clip of real FLAC audio), compaction every
    `COMPACT_EVERY` takes and at the end, as the flow does. Shows the dataset's share of memory at
    take counts the whole flow cannot reach on a shared 2-core machine."""
    return (
        "import time\nfrom pathlib import Path\nimport soundfile as sf\n"
        "from flows.ingest import COMPACT_EVERY, TABLES_WRITTEN\nfrom pipeline.audio import encode_flac\n"
        "from pipeline.dataset import Dataset\nfrom pipeline.ingest import TakeRows, write_take\n"
        f"audio = [encode_flac(sf.read(p, dtype='float32')[0]) for p in sorted(Path({str(takes)!r}).glob('*.wav'))[:50]]\n"
        f"ds = Dataset({str(dataset)!r})\nt0 = time.perf_counter()\n"
        f"for i in range({n}):\n"
        "    take = {'take_id': f'take-{i:05d}', 'sha256': f'{i:064x}', 'seconds': 1.0, 'sample_rate': 48000}\n"
        "    clip = {'clip_id': f'take-{i:05d}-000', 'take_id': take['take_id'], 'start_s': 0.0, 'end_s': 1.0,\n"
        "            'audio_flac': audio[i % len(audio)], 'sample_rate': 48000, 'transcript': 'la la la', 'language': 'en'}\n"
        "    write_take(ds, TakeRows(take, [clip], [], [], 0, 1.0), known=False)\n"
        "    if (i + 1) % COMPACT_EVERY == 0:\n"
        "        for t in TABLES_WRITTEN[:-1]:\n            ds.compact(t)\n"
        "for t in TABLES_WRITTEN:\n    ds.compact(t)\n"
        "print(round(time.perf_counter() - t0, 1), ds.count('clips'))\n"
    )


def _cli_code(*args: str) -> str:
    """`cantolab ARGS` as its console script runs it; the exit status printed, not raised."""
    return f"import sys\nfrom flows.cli import app\nsys.argv = ['cantolab', *{list(args)!r}]\ntry:\n    app()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"


def _predict_figures(tmp: Path, wav: Path, env: dict) -> dict:
    """`cantolab predict` on the 2-hour WAV with a real (tiny) model trained on the reference clips,
    and on one normal take next to it for comparison."""
    from pipeline.data import shared_data_dir

    if shared_data_dir() is None:
        return {"predict_note": "no reference data (CANTOLAB_DATA): no model to predict with"}
    env = env | {"CANTOLAB_TRACKING": "off", "CANTOLAB_FEATURE_CACHE": str(tmp / "feature-cache")}
    train = (
        "from pathlib import Path\nfrom benchmarks.bench_accuracy import build\nfrom model.config import ModelConfig, TrainConfig\n"
        "from model.runs import train_and_save\nfrom pipeline.audio import decode_audio_bytes, write_audio\n"
        f"tmp = Path({str(tmp)!r})\n"
        "cfg = TrainConfig(model=ModelConfig(encoder='audio', d_model=16, layers=1, heads=2, dropout=0.0), lr=3e-3, epochs=1, patience=1,"
        " seeds=(0,), max_frames=48, batch_size=8, split=(0.5, 0.17, 0.33)).validate()\n"
        "folder, run, _ = train_and_save(build(tmp / 'ds-model', 'gtsinger'), cfg, tmp / 'models', 'tiny', progress=False)\n"
        "samples, rate = decode_audio_bytes(run.test_examples[0].audio())\n"
        "write_audio(tmp / 'normal-take.wav', samples, rate, 'PCM_24')\nprint(folder)\n"
    )
    folder = _child(train, env)[0].strip().splitlines()[-1]
    out, _, refused = _child(_cli_code("predict", str(wav), "--model", folder), env, with_stderr=True)
    out_ok, _, honest = _child(_cli_code("predict", str(tmp / "normal-take.wav"), "--model", folder, "--out", str(tmp / "p.json")), env)
    return {
        "predict_peak_rss_mb": round(refused, 1),
        "predict_exit": out.strip().splitlines()[-1],
        "predict_reason": " ".join(line.strip() for line in out.splitlines() if "EXIT" not in line)[-300:],
        "predict_normal_take_peak_rss_mb": round(honest, 1),
        "predict_normal_take_exit": out_ok.strip().splitlines()[-1],
        "predict_normal_take_rows": len(json.loads((tmp / "p.json").read_text())) if (tmp / "p.json").exists() else 0,
    }


def main() -> dict:
    from flows.local_server import prefect_api
    from pipeline.synth import long_take_wav

    counts = [int(x) for x in os.environ.get("CANTOLAB_BENCH_ROBUSTNESS_TAKES", "100,300").split(",")]
    store_counts = [int(x) for x in os.environ.get("CANTOLAB_BENCH_ROBUSTNESS_STORE_TAKES", "1000,3000").split(",")]
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

        # 2b. the same writes without transcription, at the take counts
        store = {}
        for n in store_counts:
            out, wall, rss = _child(_store_code(tmp / f"takes-{counts[0]}", tmp / f"ds-store-{n}", n), env)
            seconds, clips = out.strip().splitlines()[-1].split()
            store[str(n)] = {"clips": int(clips), "seconds": float(seconds), "peak_rss_mb": round(rss, 1)}
        result["dataset_writes"] = store
        result["dataset_writes_rss_difference_mb"] = round(
            store[str(store_counts[-1])]["peak_rss_mb"] - store[str(store_counts[0])]["peak_rss_mb"], 1
        )

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
        result["two_hour_wav"] = {
            "file_bytes": wav.stat().st_size,
            "ingest_peak_rss_mb": round(rss, 1),
            "ingest_rejected": report["rejected"],
            "ingest_reason": report["rejects"][0]["reason"] if report["rejects"] else None,
            "target_mb": 400,
        } | _predict_figures(tmp, wav, env)
    result["load_avg_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    result["take_counts_note"] = (
        f"CANTOLAB_BENCH_ROBUSTNESS_TAKES={','.join(map(str, counts))} (whole flow, tiny.en); "
        f"CANTOLAB_BENCH_ROBUSTNESS_STORE_TAKES={','.join(map(str, store_counts))} (dataset writes only)"
    )
    return write_result("robustness", result)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
