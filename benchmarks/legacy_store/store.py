"""THE PREVIOUS DATASET STORE, kept only so `benchmarks/bench_dataset.py` can compare it with the
Delta Lake store in the same run. Nothing else imports it; do not use it for data.

It is `pipeline/dataset/store.py` as of commit fefe213^ (the commit before the switch to Delta
Lake), unchanged except that `Dataset` also accepts an fsspec filesystem (the bench hands it
pyarrow's S3 filesystem through fsspec's wrapper, as s3fs is not installed).

Original docstring:

A folder of Parquet tables with keyed, idempotent, atomic upserts.

Layout: `<root>/<table>/part-<seq>-<uid>.parquet`. An upsert writes only rows that are new or
changed (compared by a content hash that ignores bookkeeping timestamps) into one new part, then
rewrites the older parts that held superseded keys. Every file appears by rename, so a reader never
sees half a file; if a writer dies between the two steps the reader keeps the newest row per key,
and the next upsert finishes the clean-up. The parts are plain Parquet: DuckDB reads
`read_parquet('<root>/<table>/*.parquet')` directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.schemas import KEYS, READABLE_VERSIONS, SCHEMA_VERSION, SCHEMAS, VOLATILE

HASH_COLUMN = "_row_hash"
_PART = re.compile(r"^part-(\d{10})-[0-9a-f]{8}\.parquet$")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class DatasetError(ValueError):
    """A dataset that cannot be read or written as asked, with the table and file at fault."""


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return "NaN"
    return value


def row_hashes(table: pa.Table) -> list[str]:
    """Content hash per row over all non-volatile columns (binary columns by their digest)."""
    cols = [c for c in table.column_names if c not in VOLATILE and c != HASH_COLUMN]
    data = {c: table.column(c).to_pylist() for c in cols}
    out = []
    for i in range(table.num_rows):
        payload = json.dumps([_jsonable(data[c][i]) for c in cols], default=str, ensure_ascii=False)
        out.append(hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32])
    return out


def _check_table(name: str) -> None:
    if name not in SCHEMAS:
        raise DatasetError(f"unknown table {name!r}; tables are {', '.join(SCHEMAS)}")


def _conform(name: str, rows) -> pa.Table:
    """Cast input rows to the table's schema; unknown columns and missing keys are errors."""
    _check_table(name)
    schema = SCHEMAS[name]
    if isinstance(rows, pa.Table):
        table = rows
    else:
        rows = list(rows)
        unknown = sorted({k for r in rows for k in r} - set(schema.names))
        if unknown:
            raise DatasetError(f"{name}: unknown column(s) {', '.join(unknown)}")
        table = pa.Table.from_pylist(rows, schema=schema)
    unknown = sorted(set(table.column_names) - set(schema.names) - {HASH_COLUMN})
    if unknown:
        raise DatasetError(f"{name}: unknown column(s) {', '.join(unknown)}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            try:
                columns.append(table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DatasetError(f"{name}.{field.name}: cannot store as {field.type} ({exc})") from None
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    table = pa.Table.from_arrays(columns, schema=schema)
    for key in KEYS[name]:
        if table.column(key).null_count:
            raise DatasetError(f"{name}: key column {key!r} has {table.column(key).null_count} empty value(s)")
    return table


def _keys_of(table: pa.Table, key_cols: tuple[str, ...]) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in key_cols)))


class Dataset:
    """The project's data: one folder (local path or fsspec URL) holding all tables."""

    def __init__(self, root: str | os.PathLike, filesystem: fsspec.AbstractFileSystem | None = None):
        self.root = str(root)
        if filesystem is None:
            self.fs, self._base = fsspec.core.url_to_fs(self.root)
        else:  # bench only: an already configured filesystem, root given without its scheme
            self.fs, self._base = filesystem, self.root.split("://", 1)[-1]
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def __repr__(self) -> str:
        return f"Dataset({self.root!r})"

    # ---------- paths and locking
    def _dir(self, name: str) -> str:
        _check_table(name)
        return f"{self._base.rstrip('/')}/{name}"

    def _parts(self, name: str) -> list[tuple[int, str]]:
        folder = self._dir(name)
        if not self.fs.exists(folder):
            return []
        parts = []
        for path in self.fs.ls(folder, detail=False):
            match = _PART.match(path.rsplit("/", 1)[-1])
            if match:
                parts.append((int(match.group(1)), path))
        return sorted(parts)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """One writer per table: a thread lock in-process, plus flock across processes locally."""
        folder = self._dir(name)
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(folder, threading.Lock())
        with lock:
            if not self._local:
                yield
                return
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, ".lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_atomic(self, path: str, table: pa.Table) -> None:
        tmp = path.rsplit("/", 1)[0] + f"/.tmp-{uuid.uuid4().hex}.parquet"
        try:
            if self._local:
                pq.write_table(table, tmp, compression="zstd")
                os.replace(tmp, path)
            else:
                with self.fs.open(tmp, "wb") as fh:
                    pq.write_table(table, fh, compression="zstd")
                self.fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise

    def _with_metadata(self, name: str, table: pa.Table) -> pa.Table:
        meta = {b"cantolab.table": name.encode(), b"cantolab.schema_version": str(SCHEMA_VERSION).encode()}
        return table.replace_schema_metadata(meta)

    # ---------- reading
    def _read_part(self, name: str, path: str, columns: list[str] | None) -> pa.Table:
        try:
            if self._local:
                pf = pq.ParquetFile(path)
            else:
                pf = pq.ParquetFile(self.fs.open(path, "rb"))
        except Exception as exc:
            raise DatasetError(f"{name}: unreadable part {path} ({exc})") from None
        meta = pf.schema_arrow.metadata or {}
        raw = meta.get(b"cantolab.schema_version")
        version = int(raw) if raw and raw.isdigit() else None
        if version is None:
            raise DatasetError(f"{name}: {path} carries no cantolab schema version; it was not written by cantolab")
        if version > SCHEMA_VERSION:
            raise DatasetError(
                f"{name}: {path} was written with schema version {version}, newer than this cantolab's "
                f"{SCHEMA_VERSION}; upgrade cantolab to read it"
            )
        if version not in READABLE_VERSIONS:
            raise DatasetError(
                f"{name}: {path} uses schema version {version}, which this cantolab (schema {SCHEMA_VERSION}) "
                f"no longer reads; re-run ingest into a new dataset folder to rebuild it"
            )
        present = set(pf.schema_arrow.names)
        want = columns if columns is not None else SCHEMAS[name].names + [HASH_COLUMN]
        table = pf.read(columns=[c for c in want if c in present])
        schema = SCHEMAS[name]
        arrays, fields = [], []
        for col in want:
            field = schema.field(col) if col in schema.names else pa.field(col, pa.string())
            arrays.append(table.column(col) if col in table.column_names else pa.nulls(table.num_rows, field.type))
            fields.append(field)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _read_all(self, name: str, columns: list[str] | None) -> tuple[pa.Table, list[int]]:
        """Rows of every part (newest last) and each row's part sequence number."""
        tables, seqs = [], []
        for seq, path in self._parts(name):
            part = self._read_part(name, path, columns)
            tables.append(part)
            seqs.extend([seq] * part.num_rows)
        if not tables:
            return self._empty(name, columns), []
        return pa.concat_tables(tables), seqs

    def _empty(self, name: str, columns: list[str] | None) -> pa.Table:
        schema = SCHEMAS[name]
        if columns is None:
            return schema.empty_table()
        return pa.schema([schema.field(c) if c in schema.names else pa.field(c, pa.string()) for c in columns]).empty_table()

    def read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table's current rows (newest per key); an empty table with the schema when absent."""
        _check_table(name)
        key_cols = KEYS[name]
        cols = None if columns is None else list(dict.fromkeys([*key_cols, *columns]))
        table, _ = self._read_all(name, cols)
        keys = _keys_of(table, key_cols)
        if len(set(keys)) != len(keys):  # an interrupted upsert left an older copy: keep the newest
            last = {k: i for i, k in enumerate(keys)}
            table = table.take(sorted(last.values()))
        drop = [c for c in table.column_names if c == HASH_COLUMN or (columns is not None and c not in columns)]
        table = table.drop_columns(drop)
        return table.select(columns) if columns is not None else table

    def to_pandas(self, name: str, columns: list[str] | None = None):
        return self.read(name, columns).to_pandas()

    def keys(self, name: str) -> set[tuple]:
        return set(_keys_of(self.read(name, list(KEYS[name])), KEYS[name]))

    def count(self, name: str) -> int:
        return len(self.keys(name))

    def exists(self, name: str) -> bool:
        return bool(self._parts(name))

    # ---------- writing
    def upsert(self, name: str, rows: Iterable[dict] | pa.Table) -> UpsertResult:
        """Insert new keys, replace changed rows, skip identical ones: running twice changes nothing."""
        incoming = _conform(name, rows)
        key_cols = KEYS[name]
        in_keys = _keys_of(incoming, key_cols)
        if len(set(in_keys)) != len(in_keys):
            dup = next(k for k in in_keys if in_keys.count(k) > 1)
            raise DatasetError(f"{name}: key {dup} appears more than once in one upsert")
        if incoming.num_rows == 0:
            return UpsertResult(0, 0, 0)
        hashes = row_hashes(incoming)
        incoming = incoming.append_column(HASH_COLUMN, pa.array(hashes, pa.string()))
        with self._lock(name):
            parts = self._parts(name)
            existing: dict[tuple, tuple[str, int]] = {}  # key -> (hash, seq of newest copy)
            copies: dict[tuple, int] = {}
            part_of_seq = dict(parts)
            for seq, path in parts:
                meta = self._read_part(name, path, [*key_cols, HASH_COLUMN])
                for key, h in zip(_keys_of(meta, key_cols), meta.column(HASH_COLUMN).to_pylist()):
                    existing[key] = (h, seq)
                    copies[key] = copies.get(key, 0) + 1
            take, inserted, updated = [], 0, 0
            for i, (key, h) in enumerate(zip(in_keys, hashes)):
                old = existing.get(key)
                if old is None:
                    inserted += 1
                    take.append(i)
                elif old[0] != h:
                    updated += 1
                    take.append(i)
            unchanged = incoming.num_rows - inserted - updated
            stale = {k for k, n in copies.items() if n > 1}  # left by an interrupted upsert
            if not take and not stale:
                return UpsertResult(0, 0, unchanged)
            new_seq = (parts[-1][0] + 1) if parts else 1
            if take:
                folder = self._dir(name)
                self.fs.makedirs(folder, exist_ok=True)
                path = f"{folder}/part-{new_seq:010d}-{uuid.uuid4().hex[:8]}.parquet"
                self._write_atomic(path, self._with_metadata(name, incoming.take(take)))
            # Every older copy of a key goes: stale ones left by a crash, and those replaced just now.
            newest = {k: existing[k][1] for k in stale}
            newest.update({in_keys[i]: new_seq for i in take if in_keys[i] in existing})
            self._drop_superseded(name, part_of_seq, newest)
        return UpsertResult(inserted, updated, unchanged)

    def _drop_superseded(self, name: str, part_of_seq: dict[int, str], newest: dict[tuple, int]) -> None:
        """Rewrite older parts without the rows a newer part replaces."""
        if not newest:
            return
        key_cols = KEYS[name]
        for seq, path in sorted(part_of_seq.items()):
            meta = self._read_part(name, path, list(key_cols))
            keys = _keys_of(meta, key_cols)
            keep = [i for i, k in enumerate(keys) if k not in newest or newest[k] <= seq]
            if len(keep) == len(keys):
                continue
            if not keep:
                self.fs.rm(path)
                continue
            full = self._read_part(name, path, None).take(keep)
            self._write_atomic(path, self._with_metadata(name, full))

    def compact(self, name: str, max_parts: int = 1) -> int:
        """Merge a table's parts into one when it has more than `max_parts`; returns parts removed.

        Per-take upserts leave one small part each; readers and writers touch every part, so a
        long-running flow compacts at its end. The merged part lands (by rename) before the old
        ones go, so a crash in between only leaves duplicates the reader already resolves.
        """
        with self._lock(name):
            parts = self._parts(name)
            if len(parts) <= max_parts:
                return 0
            table, _ = self._read_all(name, None)
            keys = _keys_of(table, KEYS[name])
            last = {k: i for i, k in enumerate(keys)}
            merged = table.take(sorted(last.values())) if len(last) != len(keys) else table
            path = f"{self._dir(name)}/part-{parts[-1][0] + 1:010d}-{uuid.uuid4().hex[:8]}.parquet"
            self._write_atomic(path, self._with_metadata(name, merged))
            for _, old in parts:
                self.fs.rm(old)
        return len(parts)

    def delete(self, name: str, keys: Iterable[tuple]) -> int:
        """Remove rows by key; returns how many were removed."""
        _check_table(name)
        doomed = set(map(tuple, keys))
        if not doomed:
            return 0
        removed = 0
        key_cols = KEYS[name]
        with self._lock(name):
            for _, path in self._parts(name):
                meta = self._read_part(name, path, list(key_cols))
                k = _keys_of(meta, key_cols)
                keep = [i for i, key in enumerate(k) if key not in doomed]
                if len(keep) == len(k):
                    continue
                removed += len(k) - len(keep)
                if keep:
                    self._write_atomic(path, self._with_metadata(name, self._read_part(name, path, None).take(keep)))
                else:
                    self.fs.rm(path)
        return removed


def add_reject(ds: Dataset, stage: str, source: str, reason: str, details: str = "") -> None:
    """Quarantine what a stage could not process; a later success for the same source may delete it."""
    ds.upsert("rejects", [{"stage": stage, "source": str(source), "reason": reason, "details": details, "at": _now()}])
