"""The dataset's tables (DESIGN.md, "The dataset"): Arrow schemas, keys and the schema version.

A change that adds a nullable column keeps old files readable (they are filled with nulls); any
other change bumps SCHEMA_VERSION, and files of an unsupported version are refused by name.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
# Versions whose files this code reads (missing nullable columns are filled with nulls).
READABLE_VERSIONS = frozenset({1})

_ts = pa.timestamp("us", tz="UTC")

TAKES = pa.schema(
    [
        pa.field("take_id", pa.string(), nullable=False),
        ("session", pa.string()),
        ("singer", pa.string()),
        ("song", pa.string()),
        ("notes", pa.string()),
        ("device_name", pa.string()),
        ("host_api", pa.string()),
        ("microphone", pa.string()),
        ("sample_rate", pa.int32()),
        ("subtype", pa.string()),
        ("channels", pa.int16()),
        ("started_at", _ts),
        ("frames", pa.int64()),
        ("seconds", pa.float64()),
        ("peak_dbfs", pa.float64()),
        ("clipped_samples", pa.int64()),
        ("input_overflows", pa.int64()),
        ("sha256", pa.string()),
        ("tool_version", pa.string()),
        ("recovered", pa.bool_()),
        ("source_path", pa.string()),
        ("language", pa.string()),
        ("dc_offset", pa.float64()),
        ("gain_db", pa.float64()),
        ("clipping_fraction", pa.float64()),
        ("processed_at", _ts),
    ]
)

WORD = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("probability", pa.float64())])

CLIPS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        ("take_id", pa.string()),
        ("session", pa.string()),
        ("singer", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("audio_flac", pa.binary()),
        ("sample_rate", pa.int32()),
        ("transcript", pa.string()),
        ("language", pa.string()),
        ("words", pa.list_(WORD)),
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("suspected_hallucination", pa.bool_()),
        ("asr_model", pa.string()),
        ("processed_sha256", pa.string()),
        ("created_at", _ts),
    ]
)

FEATURES = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("encoder_model", pa.string(), nullable=False),
        ("n_frames", pa.int32()),
        ("dim", pa.int32()),
        ("frames", pa.binary()),  # float16 little-endian, n_frames × dim, row-major
        ("created_at", _ts),
    ]
)

ANNOTATIONS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("round", pa.string(), nullable=False),  # first | adjudication
        ("style", pa.string()),
        ("emotion", pa.string()),
        ("created_at", _ts),
        ("updated_at", _ts),
        ("ls_project_id", pa.int64()),
        ("ls_task_id", pa.int64()),
        ("ls_annotation_id", pa.int64()),
    ]
)

LABELS = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        ("style", pa.string()),
        ("emotion", pa.string()),
        ("resolution", pa.string()),  # agreed | adjudicated | imported
        ("annotators", pa.list_(pa.string())),
        ("updated_at", _ts),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        ("reason", pa.string()),
        ("details", pa.string()),
        ("at", _ts),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "takes": TAKES,
    "clips": CLIPS,
    "features": FEATURES,
    "annotations": ANNOTATIONS,
    "labels": LABELS,
    "rejects": REJECTS,
}

KEYS: dict[str, tuple[str, ...]] = {
    "takes": ("take_id",),
    "clips": ("clip_id",),
    "features": ("clip_id", "encoder_model"),
    "annotations": ("clip_id", "annotator", "round"),
    "labels": ("clip_id",),
    "rejects": ("stage", "source"),
}

# Tables the store keeps for itself (not dataset content): which versions saved models point to.
PINS = pa.schema(
    [
        pa.field("pin", pa.string(), nullable=False),  # e.g. the model's folder or run id
        pa.field("table_name", pa.string(), nullable=False),
        ("version", pa.int64()),
        ("created_at", _ts),
    ]
)
INTERNAL_SCHEMAS: dict[str, pa.Schema] = {"_pins": PINS}
KEYS["_pins"] = ("pin", "table_name")

# Bookkeeping columns that change on every run; a row that differs only in these is unchanged.
VOLATILE = frozenset({"created_at", "updated_at", "processed_at", "at"})

RESOLUTIONS = ("agreed", "adjudicated", "imported")
ROUNDS = ("first", "adjudication")
