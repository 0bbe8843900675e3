"""Converting a dataset of the old layout (Parquet parts per table, before Delta Lake).

Kept only to read such a dataset once: `<root>/<table>/part-<seq>-<uid>.parquet`, newest part
last, where a key found in several parts (an interrupted upsert) keeps its newest copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.schemas import KEYS, READABLE_VERSIONS, SCHEMAS
from pipeline.dataset.store import HASH_COLUMN, LEGACY_PART, Dataset, DatasetError, _jsonable

BATCH_ROWS = 500  # rows per commit while converting (bounded memory for audio-heavy tables)


def legacy_parts(root: str | Path, name: str) -> list[Path]:
    folder = Path(root, name)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if LEGACY_PART.match(p.name))


def is_legacy(root: str | Path) -> bool:
    return any(legacy_parts(root, name) and not Path(root, name, "_delta_log").exists() for name in SCHEMAS)


def read_legacy(root: str | Path, name: str) -> pa.Table:
    """One table of an old-layout dataset: newest row per key, in the table's schema."""
    schema = SCHEMAS[name]
    tables = []
    for path in legacy_parts(root, name):
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise DatasetError(f"{name}: unreadable part {path} ({exc})") from None
        raw = (pf.schema_arrow.metadata or {}).get(b"cantolab.schema_version")
        if raw is None or not raw.isdigit() or int(raw) not in READABLE_VERSIONS:
            raise DatasetError(f"{name}: {path} has schema version {raw!r}, which this converter does not read")
        table = pf.read()
        arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in schema]
        tables.append(pa.Table.from_arrays(arrays, schema=schema))
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    keys = list(zip(*(table.column(k).to_pylist() for k in KEYS[name])))
    last = {k: i for i, k in enumerate(keys)}
    return table.take(sorted(last.values())) if len(last) != len(keys) else table


def content_hash(table: pa.Table, name: str) -> str:
    """One digest over every column of every row, in key order (audio by its own digest)."""
    table = table.select([c for c in SCHEMAS[name].names if c in table.column_names and c != HASH_COLUMN])
    rows = table.to_pylist()
    rows.sort(key=lambda r: tuple(str(r[k]) for k in KEYS[name]))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([_jsonable(v) for v in row.values()], default=str, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass
class TableMigration:
    table: str
    rows_old: int
    rows_new: int
    hash_old: str
    hash_new: str

    @property
    def ok(self) -> bool:
        return self.rows_old == self.rows_new and self.hash_old == self.hash_new


def migrate(old: str | Path, new: str | Dataset) -> list[TableMigration]:
    """Copy every table of an old-layout dataset into Delta tables, then compare counts and hashes."""
    if not Path(old).is_dir():
        raise DatasetError(f"migrate: no dataset folder at {old}")
    if not is_legacy(old):
        raise DatasetError(f"migrate: {old} holds no table in the old Parquet-parts layout")
    target = new if isinstance(new, Dataset) else Dataset(new)
    out = []
    for name in SCHEMAS:
        table = read_legacy(old, name)
        for start in range(0, table.num_rows, BATCH_ROWS):
            target.upsert(name, table.slice(start, BATCH_ROWS))
        stored = target.read(name)
        out.append(TableMigration(name, table.num_rows, stored.num_rows, content_hash(table, name), content_hash(stored, name)))
    return out


def migrate_in_place(root: str | Path) -> tuple[list[TableMigration], Path]:
    """Convert an old-layout dataset folder where it is; the old parts are kept in `.pre-delta-backup/`.

    The Delta tables are built and checked in a staging folder beside it first, so a failed or
    interrupted conversion leaves the old tables as they were; then each old table folder moves
    into the backup and its Delta table takes its place (other contents, e.g. caches, stay).
    """
    import os
    import shutil

    from pipeline.fsio import fsync_dir, staging_dir

    root = Path(root)
    staging = staging_dir(root)
    try:
        results = migrate(root, staging)
        if not all(r.ok for r in results):
            return results, staging
        backup = root / ".pre-delta-backup"
        backup.mkdir(exist_ok=True)
        for name in SCHEMAS:
            if Path(root, name).exists():
                os.rename(root / name, backup / name)
            if Path(staging, name).exists():
                os.rename(staging / name, root / name)
        fsync_dir(root)
        return results, backup
    finally:
        shutil.rmtree(staging, ignore_errors=True)
