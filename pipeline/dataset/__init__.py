"""The Parquet dataset: schemas, atomic keyed upserts, readers, summaries."""

from pipeline.dataset.schemas import KEYS, SCHEMA_VERSION, SCHEMAS
from pipeline.dataset.store import Dataset, DatasetError, UpsertResult, add_reject

__all__ = ["Dataset", "DatasetError", "UpsertResult", "add_reject", "KEYS", "SCHEMAS", "SCHEMA_VERSION"]
