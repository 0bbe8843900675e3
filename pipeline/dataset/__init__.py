"""The dataset: Delta Lake tables (schemas, keyed upserts, versions, readers, summaries)."""

from pipeline.dataset.schemas import KEYS, SCHEMA_VERSION, SCHEMAS
from pipeline.dataset.store import Dataset, DatasetError, StoreUnavailableError, UpsertResult, add_reject, parse_versions

__all__ = [
    "Dataset",
    "DatasetError",
    "StoreUnavailableError",
    "UpsertResult",
    "add_reject",
    "parse_versions",
    "KEYS",
    "SCHEMAS",
    "SCHEMA_VERSION",
]
