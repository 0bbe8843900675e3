"""Scale-out figures: ingest throughput in one process vs on the local cluster's Dask workers, and
the time `cantolab cluster up` takes to be ready.

Same takes (English GTSinger phrases), same model (tiny.en, beam 1), every transcription on one
thread (Dask starts its workers with OMP_NUM_THREADS=1; the in-process run gets the same), every run
a fresh process with a fresh dataset on the cluster's S3 store, so each figure includes starting
Python and loading the model (once per Dask worker). The machine is shared: the load average is
recorded beside every figure. The GPU table is arithmetic on paper, anchored on faster-whisper's
published large-v3 GPU figure, not a measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

TAKES = 8
SETTINGS = {"model": "tiny.en", "transcribe": {"beam_size": 1}, "threads": 1}
PAPER_CLIPS = 28_628
# faster-whisper, large-v3, fp16, beam 5 on one GPU (RTX 2080 Ti class): 13 min of audio in 52.0 s
# (SYSTRAN/faster-whisper benchmark table, issue #1030) → about 15× real time per GPU worker.
ANCHOR_REALTIME = 13 * 60 / 52.0


def _recordings(root: Path) -> float:
    from pipeline.data import read_labels, stage_session

    table = read_labels("gtsinger")
    rows = table[table.path.str.startswith("audio/EN-")].head(TAKES)
    stage_session(rows, root / "2026-11-28-bench", "bench")
    return float(rows.seconds.sum())


def _ingest(state, recordings: Path, dataset: str, dask: bool) -> dict:
    code = "import sys, json; from flows.ingest import ingest_flow; print(json.dumps(ingest_flow(sys.argv[1], sys.argv[2], None, json.loads(sys.argv[3]), 1)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | state.env()
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if not dask:
        env.pop("CANTOLAB_DASK_ADDRESS")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(recordings), dataset, json.dumps(SETTINGS)], env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall_s": round(seconds, 2), "ingested": report["ingested"], "clips": report["clips"], "audio_s": round(report["seconds"], 2),
            "load_average_1m_before": round(load, 2), "load_average_1m_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def main() -> dict:
    from flows import cluster

    scratch = Path(tempfile.mkdtemp(prefix="cantolab-bench-scaleout-"))
    result: dict = {"takes": TAKES, "settings": SETTINGS, "load_average_start": os.getloadavg()}
    try:
        audio_s = _recordings(scratch / "recordings")
        result["audio_s"] = round(audio_s, 2)
        runs = {}
        for workers in (1, 2):
            run = scratch / f"cluster-{workers}"
            t0 = time.perf_counter()
            with cluster.running(run, dask_workers=workers, prefect_workers=0, timeout=600) as state:
                result.setdefault("cluster_up_s", {})[f"{workers}_dask_workers"] = round(time.perf_counter() - t0, 1)
                bucket = state.s3["bucket"]
                if workers == 1:
                    runs["in_process_1_thread"] = _ingest(state, scratch / "recordings", f"s3://{bucket}/in-process", dask=False)
                runs[f"dask_{workers}_worker"] = _ingest(state, scratch / "recordings", f"s3://{bucket}/dask-{workers}", dask=True)
        for run in runs.values():
            run["audio_hours_per_hour"] = round(audio_s / run["wall_s"], 2)
        result["runs"] = runs
        one, two, local = runs["dask_1_worker"]["wall_s"], runs["dask_2_worker"]["wall_s"], runs["in_process_1_thread"]["wall_s"]
        result["speedup_2_vs_1_workers"] = round(one / two, 2)
        result["cluster_overhead_1_worker_vs_in_process"] = round(one / local - 1, 3)
        per_audio_s = local / audio_s  # CPU seconds of wall time per second of audio, tiny.en, one thread
        mean_clip_s = audio_s / max(runs["in_process_1_thread"]["clips"], 1)
        paper_audio_h = PAPER_CLIPS * mean_clip_s / 3600
        result["measured_wall_s_per_audio_s_tiny_cpu_1_thread"] = round(per_audio_s, 3)
        result["paper_table_on_paper"] = {
            "note": "arithmetic, not measured: 28,628 clips × this run's mean clip length, large-v3 at faster-whisper's published "
            "GPU speed (13 min of audio in 52 s, fp16, beam 5) per GPU worker, perfect scaling assumed",
            "mean_clip_s": round(mean_clip_s, 2),
            "paper_audio_hours": round(paper_audio_h, 1),
            "hours_by_gpu_workers": {n: round(paper_audio_h / (ANCHOR_REALTIME * n), 2) for n in (1, 2, 4, 8)},
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    return write_result("scaleout", result)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
