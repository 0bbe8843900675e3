"""Scale-out figures: ingest throughput in one process vs on the local cluster's Dask workers, the
time `cantolab cluster up` takes to be ready, and what a killed Dask worker costs.

Same takes (real English singing, see `_recordings`), same model (tiny.en, beam 1), every transcription on one
thread (Dask starts its workers with OMP_NUM_THREADS=1; the in-process run gets the same), every run
a fresh flow process with a fresh dataset on the cluster's S3 store, so each figure includes starting
Python and loading the model (once per Dask worker; the workers import the ingest when they start,
`flows.dask_preload`, which `cluster up` pays). The machine is shared by several people: besides
wall time, the CPU seconds of every process involved (the flow's process, the Dask workers, the S3
store, the Prefect server) are summed, a figure other people's load does not inflate; the load
average is recorded beside every figure. The GPU table is arithmetic on paper, anchored on
faster-whisper's published GPU figures, not a measurement.

`CANTOLAB_BENCH_SCALEOUT_TAKES` (default 40) sets the number of takes (see `_recordings`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

TAKES = int(os.environ.get("CANTOLAB_BENCH_SCALEOUT_TAKES", "40"))
RAVDESS_PER_TAKE = 6
SLOTS = 2  # Dask task slots per worker (`cantolab cluster up --dask-threads`, its default)
SETTINGS = {"model": "tiny.en", "transcribe": {"beam_size": 1}, "threads": 1}
PAPER_CLIPS = 28_628
# faster-whisper's README (SYSTRAN/faster-whisper, "Benchmarks", faster-whisper v1.1.0): 13 minutes
# of audio with large-v2 on one RTX 3070 Ti 8 GB (CUDA 12.4), fp16, beam 5: 1m03s sequential, 17 s
# with batch_size=8. large-v3 has large-v2's architecture (128 mel bins instead of 80): same cost
# per second of audio assumed.
ANCHOR_AUDIO_S = 13 * 60
ANCHOR_GPU_S = {"sequential": 63.0, "batch_size_8": 17.0}
FLOW = (
    "import sys, json; from flows.ingest import ingest_flow; "
    "print(json.dumps(ingest_flow(sys.argv[1], sys.argv[2], None, json.loads(sys.argv[3]), 1)))"
)


def _recordings(root: Path) -> tuple[int, float]:
    """TAKES takes of real English singing as one studio session: the 11 English GTSinger phrases
    (6–16 s) as they are, then takes of RAVDESS song clips, RAVDESS_PER_TAKE of one actor's clips
    sung one after another with a short pause (~17 s, several phrases, as a take is). Written to a
    temporary folder, never into the repository."""
    import numpy as np
    import soundfile as sf

    from pipeline.data import read_labels, stage_session

    session = root / "2026-11-28-bench"
    gts = read_labels("gtsinger")
    rows = gts[gts.path.str.startswith("audio/EN-")].head(TAKES)
    stage_session(rows, session, "bench")
    seconds = float(rows.seconds.sum())
    rav = read_labels("ravdess_song").sort_values(["singer", "path"])
    groups = [
        actor.iloc[i : i + RAVDESS_PER_TAKE]
        for _, actor in rav.groupby("singer")
        for i in range(0, len(actor) - RAVDESS_PER_TAKE + 1, RAVDESS_PER_TAKE)
    ]
    for i, group in enumerate(groups[: max(0, TAKES - len(rows))], start=len(rows)):
        pieces, rate = [], 48_000
        for path in group.abs_path:
            audio, rate = sf.read(path, dtype="float32")
            pieces += [audio, np.zeros(int(0.6 * rate), dtype=np.float32)]
        take = np.concatenate(pieces)
        sf.write(session / f"take-{i:03d}.flac", take, rate, subtype="PCM_16")
        manifest = {
            "take_id": f"bench-{i:03d}",
            "session": session.name,
            "singer": group.singer.iloc[0],
            "song": group.lyrics.iloc[0],
            "language": "en",
            "status": "complete",
        }
        (session / f"take-{i:03d}.json").write_text(json.dumps(manifest))
        seconds += len(take) / rate
    return len(list(session.glob("*.flac"))), seconds


def _cluster_cpu_s(state) -> float:
    """User + system CPU seconds of every process the cluster started, and their children (a Dask
    nanny's worker process)."""
    import psutil

    total = 0.0
    for p in state.processes:
        try:
            proc = psutil.Process(p.pid)
            for q in [proc, *proc.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _children_cpu_s() -> float:
    r = os.times()
    return r.children_user + r.children_system


def _env(state, dask: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | state.env()
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if not dask:
        env.pop("CANTOLAB_DASK_ADDRESS")
    return env


def _ingest(state, recordings: Path, dataset: str, dask: bool, on_running=None) -> dict:
    """One ingest in a fresh process; `on_running(client)` is polled while it runs (the kill)."""
    load = os.getloadavg()[0]
    cpu0, own0 = _cluster_cpu_s(state), _children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", FLOW, str(recordings), dataset, json.dumps(SETTINGS)], env=_env(state, dask),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if on_running is not None:
        from distributed import Client

        with Client(state.dask_address, timeout=30) as client:
            while proc.poll() is None and not on_running(client):
                time.sleep(0.2)
    out, err = proc.communicate(timeout=1800)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(err[-3000:])
    cpu = (_cluster_cpu_s(state) - cpu0) + (_children_cpu_s() - own0)
    report = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": round(seconds, 2), "cpu_s": round(cpu, 2), "ingested": report["ingested"], "clips": report["clips"],
            "audio_s": round(report["seconds"], 2), "load_average_1m_before": round(load, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def _kill_a_busy_worker(killed: list):
    pids: dict = {}

    def poll(client) -> bool:
        if not pids:
            pids.update(client.run(os.getpid))  # worker address → its process (the nanny restarts it)
        busy = [addr for addr, keys in client.processing().items() if keys]
        if not busy or time.perf_counter() - poll.started < 1.0:
            return False
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(round(time.perf_counter() - poll.started, 2))
        return True

    poll.started = time.perf_counter()
    return poll


def _paper_table(mean_clip_s: float, overhead_per_take_s: float) -> dict:
    paper_audio_s = PAPER_CLIPS * mean_clip_s
    table = {}
    for mode, gpu_s in ANCHOR_GPU_S.items():
        asr_s = paper_audio_s * gpu_s / ANCHOR_AUDIO_S
        table[mode] = {n: round((asr_s / n + PAPER_CLIPS * overhead_per_take_s / n) / 3600, 2) for n in (1, 2, 4, 8, 16)}
    return {
        "note": "ON PAPER, not measured: 28,628 clips × this run's mean clip length, transcribed with large-v3 at faster-whisper's "
        "published large-v2 GPU speed (README, v1.1.0: 13 min of audio in 1m03s fp16 beam 5, 17 s with batch_size=8, "
        "RTX 3070 Ti), plus this run's measured cluster overhead per take, divided over N GPU workers (perfect scaling assumed)",
        "mean_clip_s": round(mean_clip_s, 2),
        "paper_audio_hours": round(paper_audio_s / 3600, 1),
        "cluster_overhead_per_take_s": round(overhead_per_take_s, 3),
        "hours_by_gpu_workers": table,
    }


def main() -> dict:
    from flows import cluster

    scratch = Path(tempfile.mkdtemp(prefix="cantolab-bench-scaleout-"))
    result: dict = {"takes": TAKES, "settings": SETTINGS, "load_average_start": os.getloadavg()}
    recordings = scratch / "recordings"
    try:
        takes, audio_s = _recordings(recordings)
        result["takes"], result["audio_s"] = takes, round(audio_s, 2)
        runs: dict = {}
        # (workers, task slots each): a worker transcribes one take at a time (one Whisper model,
        # one thread); its second slot writes the previous take's rows meanwhile, as the one-process
        # run's other task threads do. The 1-slot worker is measured too, to show what that is worth.
        for workers, slots in ((1, SLOTS), (2, SLOTS), (1, 1)):
            run = scratch / f"cluster-{workers}x{slots}"
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            with cluster.running(run, dask_workers=workers, dask_threads=slots, prefect_workers=0, timeout=600) as state:
                if slots == SLOTS:
                    result.setdefault("cluster_up_s", {})[f"{workers}_dask_workers"] = {
                        "seconds": round(time.perf_counter() - t0, 1), "load_average_1m_before": round(load, 2)}  # fmt: skip
                bucket = state.s3["bucket"]
                name = f"dask_{workers}_worker" + ("" if slots == SLOTS else f"_{slots}_slot")
                if (workers, slots) == (1, SLOTS):
                    runs["in_process_1_thread"] = _ingest(state, recordings, f"s3://{bucket}/in-process", dask=False)
                runs[name] = _ingest(state, recordings, f"s3://{bucket}/{name}", dask=True)
                if (workers, slots) == (2, SLOTS):
                    killed: list = []
                    run_ = _ingest(state, recordings, f"s3://{bucket}/dask-2-killed", dask=True, on_running=_kill_a_busy_worker(killed))
                    run_["killed_at_s"] = killed[0] if killed else None
                    run_["cpu_s"] = None  # the killed process's CPU time left with it: not comparable
                    run_["extra_wall_s_vs_uninterrupted"] = round(run_["wall_s"] - runs["dask_2_worker"]["wall_s"], 2)
                    runs["dask_2_worker_one_killed"] = run_
        for name, run in runs.items():
            if run["ingested"] != takes:  # runs over different takes would not compare
                raise RuntimeError(f"{name}: {run['ingested']} of {takes} takes ingested")
            run["audio_hours_per_hour"] = round(audio_s / run["wall_s"], 2)
            run["audio_hours_per_cpu_hour"] = round(audio_s / run["cpu_s"], 2) if run["cpu_s"] else None
            run["cores_busy_mean"] = round(run["cpu_s"] / run["wall_s"], 2) if run["cpu_s"] else None  # equal cores?
        result["runs"] = runs
        one, two, local = runs["dask_1_worker"], runs["dask_2_worker"], runs["in_process_1_thread"]
        result["speedup_2_vs_1_workers"] = round(one["wall_s"] / two["wall_s"], 2)
        result["cluster_overhead_1_worker_vs_in_process"] = {
            "wall": round(one["wall_s"] / local["wall_s"] - 1, 3),
            "cpu": round(one["cpu_s"] / local["cpu_s"] - 1, 3),
        }
        if "dask_1_worker_1_slot" in runs:
            result["one_slot_vs_two_slots_1_worker_wall"] = round(runs["dask_1_worker_1_slot"]["wall_s"] / one["wall_s"], 2)
        result["targets"] = {"speedup_2_vs_1_at_least": 1.7, "overhead_below": 0.15}
        mean_clip_s = audio_s / max(local["clips"], 1)
        overhead_per_take = max(one["wall_s"] - local["wall_s"], 0.0) / takes
        result["paper_table_on_paper"] = _paper_table(mean_clip_s, overhead_per_take)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    return write_result("scaleout", result)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
