"""The dataset: one Delta Lake table per kind of row, on local disk or under an `s3://` prefix.

Each table is Parquet data files plus a transaction log (`_delta_log/`), written with `deltalake`
(delta-rs). A commit is one new log entry that appears atomically (a hard link on disk, a
conditional put on S3), so several processes on several machines may write at once with no lock:
optimistic concurrency, and a commit that lost a race is retried here with backoff. Every commit
is a version that can be read again (`Dataset(uri, version=…)`).

A keyed upsert reads only the key and row-hash columns and writes just the rows that are new or
changed, in one commit: new keys are appended, changed ones replaced (`replaceWhere` on their keys).
Identical rows make no commit at all. Every commit that changes rows also carries a Delta
application transaction (`txn`, app id `cantolab/<table>`): two such commits made from the same
version conflict, so a writer that raced another redoes its read and never adds a key twice —
without the append having to scan every data file for the keys, as `replaceWhere` does.
Data files never change once written, so the key and hash columns read from each are kept in
memory: a process that upserts again reads only the files added since (the cost of a batch does
not grow with the table). Large binary columns (audio, features) carry no Parquet statistics: their
min/max would put two whole clips into every file footer, which every reader fetches.
Readers go through the log, so a data file left by a killed writer is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, DeltaProtocolError, TableNotFoundError

from pipeline.dataset.schemas import INTERNAL_SCHEMAS, KEYS, SCHEMA_VERSION, SCHEMAS, VOLATILE
from pipeline.errors import CantolabError, InputError

HASH_COLUMN = "_row_hash"
LEGACY_PART = re.compile(r"^part-\d{10}-[0-9a-f]{8}\.parquet$")
MERGE_ABOVE_KEYS = 500  # an upsert writing more rows than this uses MERGE, not a replaceWhere key list
MAX_ATTEMPTS = 12  # commits lost to other writers before giving up (backoff grows to ~2 s)
COMPACT_TARGET_BYTES = 64 * 1024 * 1024  # compacted data files grow to about this size
COMPACT_MIN_FILES = 4  # small files merged once there are this many (or half a target's worth)
KEY_CACHE_FILES = 4096  # data files whose key/hash columns stay in memory (a few MB)
DEFAULT_RETENTION_HOURS = 168  # vacuum keeps unreferenced files younger than a week
TABLE_CONFIG = {
    "delta.enableExpiredLogCleanup": "false",  # old versions stay readable until vacuumed
    "delta.checkpointInterval": "10",  # opening a table replays at most ~10 commits (each a GET on S3)
}
# How long an unreachable object store is waited for (backoff 1, 2, 4 … 10 s) before an operation
# gives up; delta-rs' own retries span only a few seconds, less than a store restart takes.
STORE_RETRY_SECONDS = float(os.environ.get("CANTOLAB_STORE_RETRY_SECONDS", "120"))
# What delta-rs (object_store) and Arrow's S3 filesystem (AWS SDK) say when the store does not answer.
_UNREACHABLE = re.compile(
    r"error sending request|tcp connect error|connection refused|connection reset|connection closed|broken pipe|"
    r"timed out|could not connect|NETWORK_CONNECTION|curlCode: (?:7|28|52|55|56)\b|service unavailable|\b503\b|SlowDown",
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATS_TRUNCATE_BYTES = 64  # min/max statistics of a text column are cut to this length
# Rows per row group in tables holding audio or frames: the writer buffers a whole row group, so
# with the default (a million rows) compacting 27 MB of clips peaked 116 MB over its start, 49 MB here.
PAYLOAD_ROW_GROUP_ROWS = 16
T = TypeVar("T")
log = logging.getLogger(__name__)


def _writer(name: str) -> WriterProperties:
    """How a table's Parquet files are written: ZSTD; for binary payloads (audio, encoder frames) no
    statistics or dictionary, and small row groups.

    Parquet keeps each column chunk's min and max value in the file footer, untruncated by default:
    a 90 KB clip made a 184 KB footer, and every key-column scan read and parsed those footers
    (memory and time grew with the rows; issue 14.3). Statistics of opaque bytes serve no query."""
    payloads = {f.name: ColumnProperties(statistics_enabled="NONE", dictionary_enabled=False)
                for f in _schema(name) if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}  # fmt: skip
    return WriterProperties(
        compression="ZSTD", statistics_truncate_length=STATS_TRUNCATE_BYTES, column_properties=payloads or None,
        max_row_group_size=PAYLOAD_ROW_GROUP_ROWS if payloads else None,
    )  # fmt: skip


class DatasetError(InputError):
    """A dataset that cannot be read or written as asked, with the table and file at fault."""


class StoreUnavailableError(CantolabError, ConnectionError):
    """The object store did not answer for the whole retry window. A ConnectionError, i.e. transient:
    a task retries it later and a take is never quarantined for it; nothing of the operation was written."""


def is_store_unreachable(exc: BaseException) -> bool:
    """An error of the store's transport (refused, reset, timed out, 503), not of the data or the request."""
    if isinstance(exc, StoreUnavailableError):
        return False  # already waited for: not again at an outer level
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, (OSError, DeltaError, pa.ArrowException)) and bool(_UNREACHABLE.search(str(exc)))


def _cause(exc: BaseException) -> str:
    """The innermost reason of a (multi-line, coloured) delta-rs or AWS error, on one line."""
    lines = [ln.strip(" ↳-") for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip(" ↳-")]
    text = lines[-1] if lines else type(exc).__name__
    if "Details:" in text:
        text = text.rsplit("Details:", 1)[1].strip()
    return text[:200]


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def _commit(name: str, dt: DeltaTable, info: dict) -> CommitProperties:
    """Commit metadata for a row change: our counts, and the table's application transaction that
    makes any two row changes from the same read version conflict (see the module docstring)."""
    return CommitProperties(
        custom_metadata={"cantolab": json.dumps(info)}, app_transactions=[Transaction(f"cantolab/{name}", dt.version() + 1)]
    )


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


def _schema(name: str) -> pa.Schema:
    if name in SCHEMAS:
        return SCHEMAS[name]
    if name in INTERNAL_SCHEMAS:
        return INTERNAL_SCHEMAS[name]
    raise DatasetError(f"unknown table {name!r}; tables are {', '.join(SCHEMAS)}")


def _check_table(name: str) -> None:
    _schema(name)


def _conform(name: str, rows) -> pa.Table:
    """Cast input rows to the table's schema; unknown columns and missing keys are errors."""
    schema = _schema(name)
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


def _stored_hashes(stored: pa.Table, incoming: pa.Table, key_cols: tuple[str, ...]) -> list[str | None]:
    """The stored row hash of each incoming row's key (None: a new key). A single key column is
    looked up in Arrow, so the work per upsert in Python is the batch's, not the table's."""
    if len(key_cols) == 1:
        (key,) = key_cols
        positions = pc.index_in(incoming.column(key), value_set=stored.column(key).combine_chunks())
        return stored.column(HASH_COLUMN).combine_chunks().take(positions).to_pylist()
    existing = dict(zip(_keys_of(stored, key_cols), stored.column(HASH_COLUMN).to_pylist()))
    return [existing.get(k) for k in _keys_of(incoming, key_cols)]


def _sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise DatasetError(f"key value {value!r} of type {type(value).__name__} cannot be used in a predicate")


def key_predicate(key_cols: tuple[str, ...], keys: Iterable[tuple]) -> str:
    """A SQL predicate that matches exactly these keys: an IN list on the last key column, per value
    of the others. One OR term per key made a 2,000-reject batch take 3–8 s to commit; rejects of
    one run share their stage, so that batch is now one term."""
    *lead, last = key_cols
    groups: dict[tuple, list] = {}
    for k in keys:
        groups.setdefault(tuple(k[:-1]), []).append(k[-1])
    terms = [
        " AND ".join([*(f"{c} = {_sql_literal(v)}" for c, v in zip(lead, prefix)), f"{last} IN ({', '.join(map(_sql_literal, values))})"])
        for prefix, values in groups.items()
    ]
    return terms[0] if len(terms) == 1 else " OR ".join(f"({t})" for t in terms)


class _KeyCache:
    """Key and row-hash columns per data file (immutable once written), least recently used out."""

    def __init__(self, capacity: int = KEY_CACHE_FILES):
        self.capacity, self._lock, self._files = capacity, threading.Lock(), OrderedDict()

    def get(self, path: str) -> pa.Table | None:
        with self._lock:
            table = self._files.get(path)
            if table is not None:
                self._files.move_to_end(path)
            return table

    def put(self, path: str, table: pa.Table) -> None:
        with self._lock:
            self._files[path] = table
            while len(self._files) > self.capacity:
                self._files.popitem(last=False)


_KEYS_SEEN = _KeyCache()


def _local_path(root: str) -> str | None:
    if "://" not in root:
        return os.path.abspath(root)
    if root.startswith("file://"):
        return root[len("file://") :]
    return None


def parse_versions(text: str | None) -> int | dict[str, int] | None:
    """`--dataset-version`: `12` (every table) or `clips=12,labels=7`, or a JSON object of the same."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        if text.startswith("{"):
            pairs = {str(k): int(v) for k, v in json.loads(text).items()}
        else:
            pairs = {k.strip(): int(v) for k, v in (p.split("=", 1) for p in text.split(",") if p.strip())}
    except (ValueError, TypeError, AttributeError):
        raise DatasetError(f"dataset version {text!r}: expected a number or table=version pairs like clips=12,labels=7") from None
    for name in pairs:
        _check_table(name)
    return pairs


class Dataset:
    """The project's data: a folder or `s3://` prefix holding one Delta table per kind of row.

    `version` reads the past: an int (every table at that version) or `{table: version}` as a
    trained model records it; such a dataset is read-only.
    """

    def __init__(
        self, root: str | os.PathLike, version: int | dict[str, int] | str | None = None, storage_options: dict[str, str] | None = None
    ):
        self.root = str(root)
        local = _local_path(self.root)
        if local is None and not self.root.startswith(("s3://", "s3a://")):
            raise DatasetError(f"dataset {self.root}: unsupported URL (use a folder, file://… or s3://bucket/prefix)")
        self._local = local is not None
        self._base = local if local is not None else self.root.rstrip("/")
        if storage_options is None and not self._local:
            from pipeline.objectstore import delta_storage_options

            storage_options = delta_storage_options()
        self.storage_options = storage_options or None
        self.version = parse_versions(version) if isinstance(version, str) else version

    def __repr__(self) -> str:
        return f"Dataset({self.root!r}{'' if self.version is None else f', version={self.version!r}'})"

    # ---------- locations
    def table_uri(self, name: str) -> str:
        _check_table(name)
        return f"{self._base.rstrip('/')}/{name}"

    @property
    def local_path(self) -> Path | None:
        """The dataset folder on this machine; None on object storage."""
        return Path(self._base) if self._local else None

    def root_exists(self) -> bool:
        if self._local:
            return os.path.isdir(self._base)
        filesystem, path = self._filesystem()
        from pyarrow import fs

        return filesystem.get_file_info(path).type != fs.FileType.NotFound

    def _filesystem(self):
        from pyarrow import fs

        if self._local:
            return fs.LocalFileSystem(), self._base
        from pipeline.objectstore import arrow_s3_filesystem

        env = dict(os.environ)
        if self.storage_options:
            env.update(self.storage_options)
        return arrow_s3_filesystem(env), self._base.split("://", 1)[1]

    def _legacy_parts(self, name: str) -> list[str]:
        """Parquet parts of the pre-Delta layout in a table folder (to say how to convert them)."""
        from pyarrow import fs

        filesystem, base = self._filesystem()
        try:
            infos = filesystem.get_file_info(fs.FileSelector(f"{base}/{name}", allow_not_found=True))
        except OSError:
            return []
        return [i.path for i in infos if LEGACY_PART.match(i.base_name)]

    def _version_of(self, name: str) -> int | None:
        if self.version is None:
            return None
        if isinstance(self.version, int):
            return self.version
        return self.version.get(name)

    # ---------- opening
    def _open(self, name: str, *, current: bool = False) -> DeltaTable | None:
        """The table (at the pinned version unless `current`); None when it does not exist yet."""
        uri = self.table_uri(name)
        version = None if current else self._version_of(name)
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            pass
        except DeltaProtocolError as exc:
            raise DatasetError(
                f"{name}: table {uri} needs a newer Delta reader than this cantolab's deltalake ({exc}); upgrade cantolab"
            ) from None
        except (DeltaError, OSError) as exc:
            if not self._local and is_store_unreachable(exc):
                raise  # waited for and retried by _patient, not a property of the table
            if version is not None and "version" in str(exc).lower():
                raise DatasetError(
                    f"{name}: version {version} of {uri} cannot be read ({exc}); `cantolab dataset history` lists the versions"
                ) from None
            raise DatasetError(f"{name}: cannot open table {uri} ({exc})") from None
        if self._legacy_parts(name):
            raise DatasetError(
                f"{name}: {uri} is a dataset in the old Parquet-parts layout (before Delta Lake); convert it with "
                f"`cantolab dataset migrate {self.root}` (in place, the old parts kept as a backup) or "
                f"`cantolab dataset migrate {self.root} NEW_FOLDER`"
            )
        if version is not None:
            raise DatasetError(f"{name}: version {version} asked for, but {uri} has no table")
        return None

    def _create(self, name: str) -> DeltaTable:
        schema = _schema(name).append(pa.field(HASH_COLUMN, pa.string()))
        try:
            return DeltaTable.create(
                self.table_uri(name), schema=schema, mode="ignore", name=name,
                description=f"cantolab {name} (schema {SCHEMA_VERSION})", configuration=TABLE_CONFIG,
                storage_options=self.storage_options,
            )  # fmt: skip
        except (CommitFailedError, DeltaError):  # another writer created it first
            dt = self._open(name, current=True)
            if dt is None:
                raise
            return dt

    def _writable(self, name: str) -> DeltaTable:
        if self.version is not None:
            raise DatasetError(f"{name}: this dataset was opened at a past version ({self.version}) and is read-only")
        return self._open(name, current=True) or self._create(name)

    def _patient(self, name: str, what: str, call: Callable[[], T]) -> T:
        """Run `call`; while the object store does not answer (a restart, a network blip), wait with
        backoff and run it again, one warning per retry, for up to STORE_RETRY_SECONDS. Safe for
        writes: each attempt reads afresh, so an upsert whose commit did land changes nothing."""
        if self._local:
            return call()
        deadline = time.monotonic() + STORE_RETRY_SECONDS
        delay, retry = 1.0, 0
        while True:
            try:
                return call()
            except Exception as exc:
                if not is_store_unreachable(exc):
                    raise
                left = deadline - time.monotonic()
                from pipeline.objectstore import s3_endpoint

                where = (self.storage_options or {}).get("AWS_ENDPOINT_URL") or s3_endpoint() or "S3"
                if left <= 0:
                    raise StoreUnavailableError(
                        f"{name}: {what} on {self.root}: the object store {where} did not answer for "
                        f"{STORE_RETRY_SECONDS:.0f} s ({_cause(exc)}); nothing of it was written — retry when it is back"
                    ) from None
                retry += 1
                wait = min(delay, left)
                log.warning(
                    "%s: %s on %s: object store %s unreachable (%s); retry %d in %.0f s (gives up %.0f s after the first failure)",
                    name, what, self.root, where, _cause(exc), retry, wait, STORE_RETRY_SECONDS,
                )  # fmt: skip
                time.sleep(wait)
                delay = min(delay * 2, 10.0)

    def _retrying(self, name: str, what: str, attempt: Callable[[], T]) -> T:
        """Run a read-modify-commit; a commit beaten by another writer's is redone from a fresh read
        (and an unreachable store waited for: _patient)."""
        delay, last = 0.05, None
        for _ in range(MAX_ATTEMPTS):
            try:
                return self._patient(name, what, attempt)
            except CommitFailedError as exc:
                last = exc
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 2.0)
        raise DatasetError(
            f"{name}: {what} failed: {MAX_ATTEMPTS} attempts in a row lost to other writers' commits "
            f"(last: {last}); nothing of it was written — retry later or run fewer writers on this table"
        )

    # ---------- reading
    def _data_files(self, name: str, dt: DeltaTable) -> list[tuple[str, int]]:
        """The version's data files (from its log) as Arrow filesystem paths, with their sizes."""
        from urllib.parse import unquote

        actions = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pydict()
        base = self.table_uri(name)  # not dt.table_uri, which is percent-encoded
        base = base.split("://", 1)[1] if "://" in base else base
        out = []
        for path, size in zip(actions["path"], actions["size_bytes"]):
            path = unquote(path)  # the log holds relative paths as URI-encoded strings
            out.append((path.split("://", 1)[1] if "://" in path else f"{base}/{path}", size))
        return out

    def _arrow_dataset(self, name: str, dt: DeltaTable, files: list[tuple[str, int]] | None = None):
        """The version's data files read by Arrow's own filesystem. delta-rs' `to_pyarrow_table`
        reads through a Python filesystem bridge whose threads abort the process at interpreter exit
        ("terminate called without an active exception", 26 of 40 bare runs here). The log's file
        sizes are handed over, which saves a HEAD request per file on S3."""
        import pyarrow.dataset as pds

        schema = pa.schema(dt.schema())
        filesystem, _ = self._filesystem()
        fmt = pds.ParquetFileFormat()
        files = self._data_files(name, dt) if files is None else files
        fragments = [fmt.make_fragment(path, filesystem=filesystem, file_size=size) for path, size in files]
        return pds.FileSystemDataset(fragments, schema, fmt, filesystem)

    def _scan(self, name: str, dt: DeltaTable, columns: list[str], files: list[tuple[str, int]] | None = None) -> pa.Table:
        data = self._arrow_dataset(name, dt, files)
        return data.to_table(columns=[c for c in columns if c in data.schema.names or c == "__filename"])

    def scan(
        self, name: str, columns: list[str], where: dict[str, Iterable] | None = None, batch_rows: int = 256
    ) -> Iterator[pa.RecordBatch]:
        """The table's rows (at the pinned version) in record batches of at most `batch_rows`, only those
        whose column values are in `where` ({column: values}): a reader holds one batch, not the table
        (training reads clips' audio and encoder states this way). Order is the files', not the key's."""
        dt = self._open(name)
        if dt is None:
            return
        data = self._arrow_dataset(name, dt)
        missing = [c for c in [*columns, *(where or {})] if c not in data.schema.names]
        if missing:
            raise DatasetError(f"{name}: {self.table_uri(name)} has no column(s) {', '.join(missing)}")
        test = None
        for col, values in (where or {}).items():
            cond = pc.field(col).isin(pa.array(list(values), type=data.schema.field(col).type))
            test = cond if test is None else test & cond
        try:
            # no read-ahead beyond the next batch: memory stays about one batch (and a row group being decoded)
            for batch in data.to_batches(columns=columns, filter=test, batch_size=batch_rows, batch_readahead=1, fragment_readahead=1):
                if batch.num_rows:
                    yield batch
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{name}: a data file of {self.table_uri(name)} version {dt.version()} cannot be read ({exc})") from None

    def _key_hashes(self, name: str, dt: DeltaTable) -> pa.Table:
        """Key and row-hash columns of the version's rows; only files not seen before are read."""
        cols = [*KEYS[name], HASH_COLUMN]
        files = self._data_files(name, dt)
        cached = {path: _KEYS_SEEN.get(path) for path, _ in files}
        missing = [(path, size) for path, size in files if cached[path] is None]
        if missing:  # one parallel scan, split per file by Arrow's `__filename` field
            fresh = self._read_raw(name, dt, [*cols, "__filename"], missing)
            names = fresh.column("__filename")
            fresh = fresh.drop_columns(["__filename"])
            for path, _ in missing:
                cached[path] = fresh.filter(pc.equal(names, path))
                _KEYS_SEEN.put(path, cached[path])
        tables = [cached[path] for path, _ in files]
        return pa.concat_tables(tables) if tables else self._read_raw(name, dt, cols, [])

    def _read_raw(self, name: str, dt: DeltaTable, columns: list[str], files: list[tuple[str, int]] | None = None) -> pa.Table:
        try:
            table = self._scan(name, dt, columns, files)
        except (OSError, pa.ArrowException, DeltaError) as exc:
            if not self._local and is_store_unreachable(exc):
                raise
            raise DatasetError(f"{name}: a data file of {self.table_uri(name)} version {dt.version()} cannot be read ({exc})") from None
        schema = _schema(name)
        arrays, fields = [], []
        for col in columns:
            field = schema.field(col) if col in schema.names else pa.field(col, pa.string())
            arr = table.column(col) if col in table.column_names else pa.nulls(table.num_rows, field.type)
            arrays.append(arr.cast(field.type) if arr.type != field.type else arr)
            fields.append(field)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table's rows (current, or at the version asked for); empty with the schema when absent."""
        schema = _schema(name)
        want = schema.names if columns is None else list(columns)

        def attempt() -> pa.Table | None:
            dt = self._open(name)
            return None if dt is None else self._read_raw(name, dt, list(dict.fromkeys([*KEYS[name], *want])))

        table = self._patient(name, "read", attempt)
        if table is None:
            return pa.schema([schema.field(c) if c in schema.names else pa.field(c, pa.string()) for c in want]).empty_table()
        keys = _keys_of(table.select(list(KEYS[name])), KEYS[name])
        if len(set(keys)) != len(keys):  # only a writer outside cantolab could do this
            raise DatasetError(
                f"{name}: {self.table_uri(name)} holds a key more than once; it was written by something other than cantolab"
            )
        return table.select(want)

    def to_pandas(self, name: str, columns: list[str] | None = None):
        return self.read(name, columns).to_pandas()

    def to_polars(self, name: str, columns: list[str] | None = None):
        import polars as pl

        return pl.from_arrow(self.read(name, columns))

    def keys(self, name: str) -> set[tuple]:
        return set(_keys_of(self.read(name, list(KEYS[name])), KEYS[name]))

    def count(self, name: str) -> int:
        return len(self.keys(name))

    def exists(self, name: str) -> bool:
        _check_table(name)
        return self._patient(name, "exists", lambda: DeltaTable.is_deltatable(self.table_uri(name), storage_options=self.storage_options))

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

        def attempt() -> UpsertResult:
            dt = self._writable(name)
            old = _stored_hashes(self._key_hashes(name, dt), incoming, key_cols)
            take, inserted, updated = [], 0, 0
            for i, (was, h) in enumerate(zip(old, hashes)):
                if was is None:
                    inserted += 1
                    take.append(i)
                elif was != h:
                    updated += 1
                    take.append(i)
            result = UpsertResult(inserted, updated, incoming.num_rows - inserted - updated)
            if not take:
                return result
            batch = incoming.take(take)
            info = {"op": "upsert", "inserted": inserted, "updated": updated, "deleted": 0}
            commit = _commit(name, dt, info)
            if not updated:  # only new keys: nothing to find; a racing writer of the same keys conflicts on the txn
                write_deltalake(
                    dt, batch, mode="append", schema_mode="merge", writer_properties=_writer(name), commit_properties=commit
                )  # fmt: skip
                return result
            if len(take) > MERGE_ABOVE_KEYS:
                # A key list this long is slow to plan as a replaceWhere predicate (2,000 keys: ~3 s)
                # and from ~8,000 keys overflows delta-rs' stack (a segfault); MERGE joins instead.
                on = " AND ".join(f"t.{c} = s.{c}" for c in key_cols)
                dt.merge(
                    batch, on, source_alias="s", target_alias="t", merge_schema=True, writer_properties=_writer(name),
                    commit_properties=commit,
                ).when_matched_update_all().when_not_matched_insert_all().execute()  # fmt: skip
                return result
            # rows to replace: delta-rs finds the files that hold them
            predicate = key_predicate(key_cols, (in_keys[i] for i in take))
            write_deltalake(
                dt, batch, mode="overwrite", predicate=predicate, schema_mode="merge", writer_properties=_writer(name),
                commit_properties=commit,
            )  # fmt: skip
            return result

        return self._retrying(name, "upsert", attempt)

    def delete(self, name: str, keys: Iterable[tuple]) -> int:
        """Remove rows by key; returns how many were removed (no commit when none matched)."""
        _check_table(name)
        doomed = set(map(tuple, keys))
        if not doomed:
            return 0

        def attempt() -> int:
            dt = self._open(name, current=True) if self.version is None else self._writable(name)
            if dt is None:
                return 0
            meta = self._key_hashes(name, dt)
            present = doomed & set(_keys_of(meta, KEYS[name]))
            if not present:
                return 0
            info = {"op": "delete", "inserted": 0, "updated": 0, "deleted": len(present)}
            metrics = dt.delete(
                key_predicate(KEYS[name], sorted(present, key=str)), writer_properties=_writer(name),
                commit_properties=_commit(name, dt, info),
            )  # fmt: skip
            return int(metrics.get("num_deleted_rows", len(present)))

        return self._retrying(name, "delete", attempt)

    def compact(self, name: str, max_parts: int = 1) -> int:
        """Merge a table's small data files (Delta optimize) when it has more than `max_parts`.

        Per-take upserts leave one small file each; a long-running flow compacts at its end. Only
        files under half the target size are merged, and only once there are COMPACT_MIN_FILES of
        them or half a target's worth: the work per compaction is bounded by the target size, not
        by the table (a table of audio grows by whole files that are left alone), and each byte is
        rewritten about once instead of a growing file being rewritten after every batch.
        The old files stay until `vacuum` (earlier versions still read them). Returns files removed.
        """

        def attempt() -> int:
            dt = self._open(name, current=True) if self.version is None else self._writable(name)
            if dt is None:
                return 0
            sizes = pa.table(dt.get_add_actions(flatten=True)).column("size_bytes").to_pylist()
            small = [s for s in sizes if s < COMPACT_TARGET_BYTES // 2]
            if len(sizes) <= max_parts or len(small) <= 1:
                return 0
            if len(small) < COMPACT_MIN_FILES and sum(small) < COMPACT_TARGET_BYTES // 2:
                return 0
            metrics = dt.optimize.compact(
                target_size=COMPACT_TARGET_BYTES, max_concurrent_tasks=1, writer_properties=_writer(name)
            )  # one output file at a time: memory bounded by the target size, not by the number of cores
            return int(metrics.get("numFilesRemoved", 0))

        return self._retrying(name, "compact", attempt)

    # ---------- versions, pins and vacuum
    def versions(self) -> dict[str, int]:
        """Each existing table's version as this dataset reads it (what a trained model records)."""
        out = {}
        for name in SCHEMAS:
            dt = self._patient(name, "open", lambda n=name: self._open(n))
            if dt is not None:
                out[name] = dt.version()
        return out

    def history(self, name: str) -> list[dict]:
        """Every commit of a table, newest first: version, time, operation, rows inserted/updated/deleted."""
        dt = self._open(name, current=True)
        if dt is None:
            return []
        out = []
        for entry in dt.history():
            metrics = entry.get("operationMetrics") or {}
            mine = json.loads(entry["cantolab"]) if isinstance(entry.get("cantolab"), str) else {}
            op = mine.get("op") or {"WRITE": "write", "DELETE": "delete", "OPTIMIZE": "compact", "CREATE TABLE": "create"}.get(
                entry.get("operation", ""), str(entry.get("operation", "")).lower()
            )
            out.append(
                {
                    "version": entry.get("version"),
                    "time": datetime.fromtimestamp(entry.get("timestamp", 0) / 1000, UTC).isoformat(timespec="seconds"),
                    "operation": op,
                    "inserted": mine.get("inserted", metrics.get("num_added_rows", 0) if op == "write" else 0),
                    "updated": mine.get("updated", 0),
                    "deleted": mine.get("deleted", metrics.get("num_deleted_rows", 0)),
                }
            )
        return out

    def pin(self, label: str, versions: dict[str, int] | None = None) -> dict[str, int]:
        """Record that something (a saved model) points to these table versions: vacuum keeps them."""
        versions = dict(self.versions() if versions is None else versions)
        rows = [{"pin": label, "table_name": t, "version": v, "created_at": _now()} for t, v in versions.items()]
        if rows:
            Dataset(self.root, storage_options=self.storage_options).upsert("_pins", rows)
        return versions

    def unpin(self, label: str) -> int:
        current = Dataset(self.root, storage_options=self.storage_options)
        return current.delete("_pins", [k for k in current.keys("_pins") if k[0] == label])

    def pins(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for row in Dataset(self.root, storage_options=self.storage_options).read("_pins").to_pylist():
            out.setdefault(row["table_name"], set()).add(int(row["version"]))
        return out

    def vacuum(self, name: str | None = None, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> dict[str, int]:
        """Delete data files no version needs any more: older than the retention and not in a pinned version.

        Returns the number of files removed (or that would be) per table.
        """
        if self.version is not None:
            raise DatasetError("vacuum: this dataset was opened at a past version; open the current one")
        pins = self.pins()
        out = {}
        for table in [name] if name else list(SCHEMAS):
            dt = self._open(table, current=True)
            if dt is None:
                continue
            keep = sorted(v for v in pins.get(table, ()) if v <= dt.version())
            removed = dt.vacuum(
                retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False,
                keep_versions=keep or None, full=True,
            )  # fmt: skip
            out[table] = len(removed)
        return out


def add_reject(ds: Dataset, stage: str, source: str, reason: str, details: str = "") -> None:
    """Quarantine what a stage could not process; a later success for the same source may delete it."""
    ds.upsert("rejects", [{"stage": stage, "source": str(source), "reason": reason, "details": details, "at": _now()}])
