"""The Delta Lake dataset at the paper's scale, on local disk and on a real S3 server (SeaweedFS).

Growth is the figure that matters: the time to upsert a batch of 100 new clip rows with real-sized
FLAC bytes (2-s 48 kHz / 24-bit clips of GTSinger, ~150 KB) into a `clips` table already holding
1k, 10k and 28.6k rows, against the same batch into an empty table — each followed by the
compaction the ingest flow runs at its end. Then a re-upsert of the same 100 unchanged rows (no
commit), and reading `clips ⋈ labels` metadata (no audio) at the largest size. Each store runs in
its own spawned process, whose peak RSS is reported.

The rows that fill the table carry random bytes of the same size as the clips' FLAC (compressed
audio is incompressible too), because encoding 28.6k distinct FLAC clips would dominate the run.
`CANTOLAB_BENCH_DATASET_SIZES` (default 1000,10000,28600) picks the sizes.

Measured 2026-11-28 on 2 shared cores (load average 10–19; three runs): 100 clips upserted and
compacted in 0.45–0.6 s into an empty table on disk, 1.3–2.8× that at 28.6k rows; on SeaweedFS
1.9–2.5 s, 1.2–3.9× at 28.6k. Unchanged re-upsert (no commit) 0.06–0.27 s disk, 0.13–1.2 s S3.
clips ⋈ labels metadata at 28.9k rows 0.48–0.59 s disk, 1.1–1.7 s S3. Disk wins everywhere (S3:
a round trip per log entry and data file, and the server shares the cores); the part that grows
is the scan of each data file's key column (new vs changed keys, and replaceWhere's file search).
The old Parquet-parts store is not compared (it was replaced in the same change).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import write_result

BATCH = 100
REPEATS = 3
FILL_BATCH = 1000


def real_flac_clips(n: int) -> list[bytes]:
    """n distinct 2-s 48 kHz / 24-bit FLAC clips cut from GTSinger recordings (noise if absent)."""
    from pipeline.audio import encode_flac, load_audio
    from pipeline.data import read_labels, shared_data_dir

    out: list[bytes] = []
    if shared_data_dir() is not None:
        for path in read_labels("gtsinger")["abs_path"]:
            samples = load_audio(path).samples
            for start in range(0, len(samples) - 96_000, 96_000):
                out.append(encode_flac(samples[start : start + 96_000], 48_000))
                if len(out) == n:
                    return out
    rng = np.random.default_rng(0)
    while len(out) < n:  # no reference data: band-limited noise at singing level
        out.append(encode_flac((rng.standard_normal(96_000) * 0.1).astype("float32"), 48_000))
    return out


def clip_rows(prefix: str, start: int, n: int, audio: list[bytes] | int) -> list[dict]:
    now = datetime.now(UTC)
    rows = []
    for i in range(start, start + n):
        blob = audio[i - start] if isinstance(audio, list) else os.urandom(audio)
        cid = hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest()[:24]
        rows.append(
            {"clip_id": cid, "take_id": f"take-{i // 10}", "session": "bench", "singer": f"singer-{i % 40}", "start_s": 2.0 * (i % 10),
             "end_s": 2.0 * (i % 10) + 2.0, "audio_flac": blob, "sample_rate": 48_000, "transcript": f"la la {i}", "language": "en",
             "asr_model": "bench", "created_at": now}
        )  # fmt: skip
    return rows


def label_rows(clips: list[dict]) -> list[dict]:
    return [
        {
            "clip_id": c["clip_id"],
            "style": "pop" if i % 3 else "bel canto",
            "emotion": "sad" if i % 2 else "happy",
            "resolution": "imported",
        }
        for i, c in enumerate(clips)
    ]


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open(root: str, env: dict):
    os.environ.update(env)
    from pipeline.dataset import Dataset

    return Dataset(root)


def phase_batches(root: str, env: dict, flac: list[bytes], n_rows: int) -> dict:
    """REPEATS batches of 100 new real-FLAC rows (+ compaction each) and re-upserts, timed."""
    ds = _open(root, env)
    upserts, compactions, reupserts = [], [], []
    for r in range(REPEATS):
        rows = clip_rows(f"batch-{n_rows}-{r}", 0, BATCH, flac[:BATCH])
        upserts.append(_timed(ds.upsert, "clips", rows))
        compactions.append(_timed(ds.compact, "clips"))
        version = ds.versions()["clips"]
        again = [{**row, "created_at": datetime.now(UTC)} for row in rows]
        reupserts.append(_timed(ds.upsert, "clips", again))
        assert ds.versions()["clips"] == version, "a re-upsert of unchanged rows made a commit"
    return {
        "rows_before": n_rows,
        "upsert_100_s": statistics.median(upserts),
        "upsert_100_plus_compact_s": statistics.median(u + c for u, c in zip(upserts, compactions)),
        "reupsert_100_unchanged_s": statistics.median(reupserts),
        "peak_rss_mb": _rss_mb(),
    }


def phase_fill(root: str, env: dict, start: int, size: int, blob_size: int) -> None:
    """Grow clips (and labels) to `size` rows in batches, then compact as the ingest flow does."""
    ds = _open(root, env)
    while start < size:
        n = min(FILL_BATCH, size - start)
        rows = clip_rows("fill", start, n, blob_size)
        ds.upsert("clips", rows)
        ds.upsert("labels", label_rows(rows))
        start += n
    ds.compact("clips")
    ds.compact("labels")


def phase_read(root: str, env: dict) -> dict:
    """clips ⋈ labels metadata (no audio) through the documented reader: DuckDB over Arrow tables."""
    import duckdb

    ds = _open(root, env)
    reads = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.register("clips", ds.read("clips", ["clip_id", "singer", "start_s", "end_s"]))
        con.register("labels", ds.read("labels", ["clip_id", "style", "emotion"]))
        n = con.sql("select count(*) from clips join labels using (clip_id)").fetchall()[0][0]
        reads.append(time.perf_counter() - t0)
    return {"joined_rows": n, "clips_rows": ds.count("clips"), "seconds": statistics.median(reads), "peak_rss_mb": _rss_mb(),
            "clips_data_files": len(ds._open("clips").file_uris())}  # fmt: skip


def run_store(root: str, env: dict, sizes: list[int], flac: list[bytes]) -> dict:
    """Each phase in a fresh spawned process (delta-rs does not survive fork; RSS is per phase)."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    blob_size = int(statistics.mean(len(b) for b in flac))

    def fresh(fn, *args):
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(fn, *args).result()

    t0 = time.perf_counter()
    figures: dict = {"sizes": {"0": fresh(phase_batches, root, env, flac, 0)}}
    filled = REPEATS * BATCH
    for size in sizes:
        fresh(phase_fill, root, env, filled, size, blob_size)
        filled = max(filled, size)
        figures["sizes"][str(size)] = fresh(phase_batches, root, env, flac, filled)
        filled += REPEATS * BATCH
    empty = figures["sizes"]["0"]["upsert_100_plus_compact_s"]
    for entry in figures["sizes"].values():
        entry["vs_empty"] = round(entry["upsert_100_plus_compact_s"] / empty, 2)
    figures["read_clips_join_labels"] = fresh(phase_read, root, env)
    return figures | {"wall_s": time.perf_counter() - t0}


def main() -> dict:
    from pipeline.objectstore import start_seaweedfs

    sizes = [int(s) for s in os.environ.get("CANTOLAB_BENCH_DATASET_SIZES", "1000,10000,28600").split(",")]
    load_before = os.getloadavg()
    flac = real_flac_clips(BATCH)
    scratch = Path(tempfile.mkdtemp(prefix="cantolab-bench-dataset-"))
    result: dict = {
        "batch_rows": BATCH,
        "flac_bytes_mean": int(statistics.mean(len(b) for b in flac)),
        "repeats": REPEATS,
        "sizes": sizes,
    }
    try:
        result["disk"] = run_store(str(scratch / "dataset"), {}, sizes, flac)
        server = start_seaweedfs(scratch / "seaweedfs", buckets=("cantolab-bench",))
        try:
            result["s3"] = run_store("s3://cantolab-bench/dataset", server.env(), sizes, flac)
        finally:
            server.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    result["notes"] = (
        "Times are medians of 3; vs_empty = (upsert + compact at that size) / (upsert + compact into an empty table). "
        "Fill rows carry random bytes of the FLAC clips' size; measured batches carry real FLAC. "
        "The old Parquet-parts store is not measured here (it was replaced in the same change)."
    )
    return write_result("dataset", result)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
