"""The hand-written Parquet-parts dataset store that Delta Lake replaced, kept for the dataset bench only."""

from benchmarks.legacy_store.store import Dataset

__all__ = ["Dataset"]
