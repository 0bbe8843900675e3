"""A dataset in the layout before Delta Lake, made at test time for the migration tests.

The Parquet-parts store wrote `<root>/<table>/part-<seq:010d>-<uid8>.parquet`, each file tagged
with `cantolab.table` and `cantolab.schema_version` in its Arrow metadata; an upsert that replaced
a key wrote the newer copy in a later part (so the older copy stays behind, as an interrupted
upsert left it). Rows are synthetic: three takes, six 2-s clips of random bytes, labels of which
`c2`'s second copy (adjudicated) must win.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.schemas import SCHEMAS

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _part(root: Path, name: str, seq: int, rows: list[dict]) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMAS[name])
    table = table.replace_schema_metadata({b"cantolab.table": name.encode(), b"cantolab.schema_version": b"1"})
    pq.write_table(table, folder / f"part-{seq:010d}-{seq:08x}.parquet", compression="zstd")


def write_legacy_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    words = [{"word": "la", "start": 0.0, "end": 0.5, "probability": 0.9}]
    _part(root, "takes", 1, [
        {"take_id": f"t{i}", "session": "s1", "singer": f"singer{i % 2}", "song": "x", "sample_rate": 48_000, "channels": 1,
         "started_at": AT, "seconds": 2.5, "processed_at": AT} for i in range(3)
    ])  # fmt: skip
    _part(root, "clips", 1, [
        {"clip_id": f"c{i}", "take_id": f"t{i % 3}", "singer": f"singer{i % 2}", "start_s": 0.0, "end_s": 2.0,
         "audio_flac": rng.bytes(2000), "sample_rate": 48_000, "transcript": f"la {i}", "language": "en", "words": words,
         "created_at": AT} for i in range(6)
    ])  # fmt: skip
    _part(root, "features", 1, [
        {"clip_id": f"c{i}", "encoder_model": "tiny.en", "n_frames": 2, "dim": 4,
         "frames": rng.standard_normal(8).astype(np.float16).tobytes(), "created_at": AT} for i in range(3)
    ])  # fmt: skip
    _part(root, "annotations", 1, [
        {"clip_id": f"c{i}", "annotator": a, "round": "first", "style": "pop", "emotion": "sad", "created_at": AT, "ls_task_id": i}
        for i in range(4) for a in ("ann1", "ann2")
    ])  # fmt: skip
    agreed = {"resolution": "agreed", "annotators": ["ann1", "ann2"], "updated_at": AT}
    _part(root, "labels", 1, [
        {"clip_id": "c0", "style": "pop", "emotion": "sad", **agreed},
        {"clip_id": "c2", "style": "pop", "emotion": "sad", **agreed},
        {"clip_id": "c3", "style": "pop", "emotion": "happy", **agreed},
    ])  # fmt: skip
    _part(root, "labels", 2, [{"clip_id": "c1", "style": "bel canto", "emotion": "happy", **agreed, "resolution": "adjudicated"}])
    _part(root, "labels", 3, [
        {"clip_id": "c2", "style": "bel canto", "emotion": "sad", "resolution": "adjudicated", "annotators": ["ann1"], "updated_at": AT}
    ])  # fmt: skip
    _part(root, "rejects", 1, [{"stage": "ingest", "source": "/r/broken.wav", "reason": "empty file (0 bytes)", "at": AT}])
    return root
