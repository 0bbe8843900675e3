"""The Delta Lake dataset at the paper's scale, on local disk and on a real S3 server (SeaweedFS).

Growth is the figure that matters: the time to upsert a batch of 100 new clip rows with
real-sized FLAC bytes (2-s 48 kHz / 24-bit clips of GTSinger: ~98 KB as FLAC, 288 KB raw) into a
`clips` table already holding 1k, 10k and 28.6k rows, against the same batch into an empty table,
each followed by the compaction the ingest flow runs at its end. 8 batches per size (two
compaction cycles); the figure is their mean, so compaction is amortized, and the first batch of a
fresh process (which reads every file's keys) is reported too. Then a re-upsert of the same 100
unchanged rows (no commit), and reading `clips ⋈ labels` metadata (no audio) at the largest size.
Each phase runs in its own spawned process, whose peak RSS is reported.

The rows that fill the table carry random bytes of the same size as the clips' FLAC (compressed
audio is incompressible too), because encoding 28.6k distinct FLAC clips would dominate the run.
`CANTOLAB_BENCH_DATASET_SIZES` (default 1000,10000,28600) picks the sizes.

The previous store (`benchmarks/legacy_store/`, the hand-written Parquet-parts store as of commit
fefe213^, kept for this comparison only) runs the same phases in the same run: its compaction
merges every part into one, so it runs at 1k and 10k rows on disk and 1k on S3 by default
(`CANTOLAB_BENCH_LEGACY_SIZES_DISK`, `_S3`); its batch cost grows with the table and its compaction
holds the whole table in memory (3.4–3.9 GB peak at 10k rows).

Figures with their load averages are in README ("The dataset") and bench-results/dataset.json.
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
REPEATS = 8  # Delta: two compaction cycles (4 small files each) per size
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


def _store(kind: str, root: str, env: dict):
    if kind == "delta":
        from pipeline.dataset import Dataset

        return Dataset(root)
    from benchmarks.legacy_store import Dataset as LegacyDataset

    if root.startswith("s3://"):  # s3fs is not installed: pyarrow's S3 client through fsspec's wrapper
        from fsspec.implementations.arrow import ArrowFSWrapper

        from pipeline.objectstore import arrow_s3_filesystem

        return LegacyDataset(root, ArrowFSWrapper(arrow_s3_filesystem(env)))
    return LegacyDataset(root)


def _open(kind: str, root: str, env: dict):
    """The store in this (spawned) process, warmed up on a one-row scratch table beside it: a
    process's first write pays ~1 s of imports and runtime start-up (pandas through
    `Table.from_pylist`, delta-rs' runtime), the same at every table size and not what is measured."""
    os.environ.update(env)
    scratch = _store(kind, root.rstrip("/") + "-warm-up", env)
    scratch.upsert("clips", clip_rows(f"warm-up-{os.getpid()}", 0, 1, [b"x"]))
    scratch.read("clips", ["clip_id"])
    return _store(kind, root, env)


def _state(kind: str, ds):
    """What an unchanged re-upsert must leave as it was: the table version (Delta) or its parts."""
    return ds.versions()["clips"] if kind == "delta" else tuple(ds._parts("clips"))


def _data_files(kind: str, ds) -> int:
    return len(ds._open("clips").file_uris()) if kind == "delta" else len(ds._parts("clips"))


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "median": statistics.median(values), "all": [round(v, 3) for v in values]}


def phase_batches(kind: str, root: str, env: dict, flac: list[bytes], n_rows: int, repeats: int) -> dict:
    """`repeats` batches of 100 new real-FLAC rows, each followed by compaction and a re-upsert."""
    ds = _open(kind, root, env)
    upserts, compactions, reupserts = [], [], []
    for r in range(repeats):
        rows = clip_rows(f"batch-{n_rows}-{r}", 0, BATCH, flac[:BATCH])
        upserts.append(_timed(ds.upsert, "clips", rows))
        compactions.append(_timed(ds.compact, "clips"))
        state = _state(kind, ds)
        again = [{**row, "created_at": datetime.now(UTC)} for row in rows]
        reupserts.append(_timed(ds.upsert, "clips", again))
        assert _state(kind, ds) == state, "a re-upsert of unchanged rows changed the table"
    totals = [u + c for u, c in zip(upserts, compactions)]
    return {
        "rows_before": n_rows,
        "upsert_100_s": _stats(upserts),
        "compact_s": _stats(compactions),
        "upsert_100_plus_compact_s": _stats(totals),
        "first_batch_s": totals[0],
        "reupsert_100_unchanged_s": _stats(reupserts),
        "data_files_after": _data_files(kind, ds),
        "peak_rss_mb": _rss_mb(),
    }


def phase_fill(kind: str, root: str, env: dict, start: int, size: int, blob_size: int) -> None:
    """Grow clips (and labels) to `size` rows in batches, then compact as the ingest flow does."""
    ds = _open(kind, root, env)
    while start < size:
        n = size - start if size - start < FILL_BATCH * 3 // 2 else FILL_BATCH  # no small last file
        rows = clip_rows("fill", start, n, blob_size)
        ds.upsert("clips", rows)
        ds.upsert("labels", label_rows(rows))
        start += n
    ds.compact("clips")
    ds.compact("labels")


def phase_read(kind: str, root: str, env: dict) -> dict:
    """clips ⋈ labels metadata (no audio) through the documented reader: DuckDB over Arrow tables."""
    import duckdb

    ds = _open(kind, root, env)
    reads = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.register("clips", ds.read("clips", ["clip_id", "singer", "start_s", "end_s"]))
        con.register("labels", ds.read("labels", ["clip_id", "style", "emotion"]))
        n = con.sql("select count(*) from clips join labels using (clip_id)").fetchall()[0][0]
        reads.append(time.perf_counter() - t0)
    return {"joined_rows": n, "clips_rows": ds.count("clips"), "seconds": _stats(reads), "peak_rss_mb": _rss_mb(),
            "clips_data_files": _data_files(kind, ds)}  # fmt: skip


def run_store(kind: str, root: str, env: dict, sizes: list[int], flac: list[bytes], repeats: int) -> dict:
    """Each phase in a fresh spawned process (delta-rs does not survive fork; RSS is per phase)."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    blob_size = int(statistics.mean(len(b) for b in flac))

    def fresh(fn, *args):
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(fn, kind, root, env, *args).result()

    t0 = time.perf_counter()
    figures: dict = {"sizes": {"0": fresh(phase_batches, flac, 0, repeats)}}
    filled = repeats * BATCH
    for size in sizes:
        fresh(phase_fill, filled, size, blob_size)
        filled = max(filled, size)
        figures["sizes"][str(size)] = fresh(phase_batches, flac, filled, repeats)
        filled += repeats * BATCH
    empty = figures["sizes"]["0"]
    for entry in figures["sizes"].values():
        entry["vs_empty"] = round(entry["upsert_100_plus_compact_s"]["mean"] / empty["upsert_100_plus_compact_s"]["mean"], 2)
        entry["vs_empty_median_upsert"] = round(entry["upsert_100_s"]["median"] / empty["upsert_100_s"]["median"], 2)
    figures["read_clips_join_labels"] = fresh(phase_read)
    return figures | {"wall_s": time.perf_counter() - t0}


def _summary(result: dict) -> list[dict]:
    """One flat row per store, place and size: the table the README quotes."""
    rows = []
    for key, figures in result.items():
        if not isinstance(figures, dict) or "sizes" not in figures:
            continue
        for entry in figures["sizes"].values():
            rows.append(
                {"store": key, "rows_before": entry["rows_before"], "batch_mean_s": round(entry["upsert_100_plus_compact_s"]["mean"], 3),
                 "upsert_median_s": round(entry["upsert_100_s"]["median"], 3), "compact_mean_s": round(entry["compact_s"]["mean"], 3),
                 "vs_empty": entry["vs_empty"], "reupsert_median_s": round(entry["reupsert_100_unchanged_s"]["median"], 3),
                 "peak_rss_mb": round(entry["peak_rss_mb"])}
            )  # fmt: skip
        read = figures["read_clips_join_labels"]
        rows.append({"store": key, "read_join_rows": read["joined_rows"], "read_join_median_s": round(read["seconds"]["median"], 3),
                     "peak_rss_mb": round(read["peak_rss_mb"])})  # fmt: skip
    return rows


def main() -> dict:
    from pipeline.objectstore import start_seaweedfs

    sizes = [int(s) for s in os.environ.get("CANTOLAB_BENCH_DATASET_SIZES", "1000,10000,28600").split(",")]
    stores = os.environ.get("CANTOLAB_BENCH_DATASET_STORES", "delta,legacy").split(",")
    places = os.environ.get("CANTOLAB_BENCH_DATASET_PLACES", "disk,s3").split(",")
    legacy_repeats = int(os.environ.get("CANTOLAB_BENCH_LEGACY_REPEATS", "2"))
    # The old store's compaction rewrites the whole table (~1 GB at 10k rows, minutes here), so it
    # runs at smaller sizes by default; its cost grows linearly with the table (see the figures).
    legacy_sizes = {
        place: [int(s) for s in os.environ.get(f"CANTOLAB_BENCH_LEGACY_SIZES_{place.upper()}", default).split(",") if s]
        for place, default in (("disk", "1000,10000"), ("s3", "1000"))
    }
    load_before = os.getloadavg()
    flac = real_flac_clips(BATCH)
    scratch = Path(tempfile.mkdtemp(prefix="cantolab-bench-dataset-"))
    result: dict = {
        "batch_rows": BATCH,
        "flac_bytes_mean": int(statistics.mean(len(b) for b in flac)),
        "repeats": {"delta": REPEATS, "legacy": legacy_repeats},
        "sizes": {"delta": sizes, "legacy": legacy_sizes},
    }
    server = None
    try:
        for place in places:
            if place == "s3" and server is None:
                server = start_seaweedfs(scratch / "seaweedfs", buckets=("cantolab-bench",))
            for kind in stores:
                root = f"s3://cantolab-bench/{kind}" if place == "s3" else str(scratch / kind)
                env = server.env() if place == "s3" else {}
                repeats = REPEATS if kind == "delta" else legacy_repeats
                at = sizes if kind == "delta" else legacy_sizes.get(place, sizes)
                result[f"{kind}_{place}"] = run_store(kind, root, env, at, flac, repeats)
                result[f"{kind}_{place}"]["load_average_after"] = os.getloadavg()
                if place == "disk":
                    shutil.rmtree(root, ignore_errors=True)
                    shutil.rmtree(root + "-warm-up", ignore_errors=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    result["summary"] = _summary(result)
    result["notes"] = (
        "delta = pipeline.dataset (Delta Lake); legacy = the hand-written Parquet-parts store it replaced "
        "(benchmarks/legacy_store, commit fefe213^), whose compact merges every part into one. "
        "batch_mean_s = mean over the repeats of (upsert of 100 new clips + compaction), i.e. the amortized cost "
        "with compaction after every batch as the ingest flow runs it; vs_empty = batch_mean_s / the same into an "
        "empty table. Fill rows carry random bytes of the FLAC clips' size; measured batches carry real FLAC."
    )
    return write_result("dataset", result)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
