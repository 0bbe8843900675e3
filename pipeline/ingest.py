"""Ingest as plain functions: discover takes, turn one take into dataset rows, write them.

`flows/ingest.py` wraps these in Prefect tasks (retries, caching, concurrency); they run the same
without Prefect. A take is written clips → features → labels → takes, so a `takes` row means the
take is complete; a run killed in between simply redoes that take.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline.config import AudioConfig, PreprocessConfig
from pipeline.dataset import Dataset
from pipeline.errors import ConfigError, InputError
from pipeline.ids import take_id_for_content
from pipeline.manifest import CAPTURE_MEASURED, TakeStatus, contract_fields, ingest_fields, manifest_path, read_manifest
from pipeline.records import parse_time, prepare_take, take_record
from pipeline.segment import ClipConfig, clip_rows
from pipeline.settings import validate
from pipeline.transcribe import PRODUCTION_DEFAULT, TranscribeOptions, check_options, load_transcriber, resolve_backend, review
from pipeline.transcribe.hallucination import HallucinationRules
from pipeline.vocabulary import LabelSets, normalize_label

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class IngestSettings:
    """Everything that changes the rows a take produces (and so its cache key)."""

    model: str = PRODUCTION_DEFAULT
    backend: Literal["auto", "faster-whisper", "openai-whisper"] = "auto"  # auto: faster-whisper when its model is available
    compute_type: str = "int8"  # faster-whisper on CPU
    threads: int = 0  # 0: all cores
    # "manifest": the take's language when its manifest/CSV gives one, else detect; "auto"; or a code.
    language: str = "manifest"
    transcribe: TranscribeOptions = TranscribeOptions()
    hallucination: HallucinationRules = HallucinationRules()
    clips: ClipConfig = ClipConfig()
    audio: AudioConfig = AudioConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    labels: LabelSets = LabelSets()  # the `[labels]` of the settings file; imported labels must be one of these

    @classmethod
    def from_dict(cls, data: dict | IngestSettings | None) -> IngestSettings:
        """Validated (pipeline.settings): unknown keys, wrong types and bad choices are a ConfigError naming the field."""
        return validate(cls, data)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=list))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def options_for(self, take_language: str | None) -> TranscribeOptions:
        if self.language == "auto":
            lang = None
        elif self.language == "manifest":
            lang = take_language.lower() if take_language else None
        else:
            lang = self.language
        return replace(self.transcribe, language=lang)


def check_settings(settings: IngestSettings) -> str:
    """Settings that cannot work stop the run here, before the first take; returns the backend that will run."""
    backend = resolve_backend(settings.model, settings.backend)  # a missing model: ModelNotFoundError (a ConfigError)
    check_options(backend, settings.transcribe)
    return backend


@dataclass
class TakeSource:
    """One recording to ingest, with what its manifest or CSV row says about it."""

    path: str
    origin: str  # where it was found: manifest file, CSV row, or the folder walk
    manifest: dict = field(default_factory=dict)
    labels: dict | None = None
    guessed: tuple[str, ...] = ()  # manifest fields inferred, not given (a session from the folder name)


@dataclass
class SourceProblem:
    stage: str
    source: str
    reason: str


def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _clean(value) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _labels_of(row: dict, settings: IngestSettings) -> tuple[dict | None, str | None]:
    labels = {}
    for key, allowed in settings.labels.field_values().items():
        value = _clean(row.get(key))
        if value is None:
            continue
        value = normalize_label(value)
        if value not in allowed:
            return None, f"unknown {key} {value!r} (allowed: {', '.join(allowed)})"
        labels[key] = value
    return (labels or None), None


def read_import_csv(
    csv_path: str | Path, root: str | Path, settings: IngestSettings = IngestSettings()
) -> tuple[list[TakeSource], list[SourceProblem]]:
    """Rows of a CSV of manifest fields (+ optional style/emotion); paths must stay inside `root`."""
    root, csv_path = Path(root), Path(csv_path)
    if not csv_path.is_file():
        what = "a folder" if csv_path.is_dir() else "missing" if not csv_path.exists() else "not a regular file"
        raise ConfigError(f"import CSV {csv_path}: {what}; give the path of a CSV file with a 'path' column")
    sources, problems = [], []
    # Rows are checked by their written path first; resolving symlinks (a few stat calls per path
    # component) is left for files that exist: 10,000 rows of missing files spent 8 s resolving.
    roots = {os.path.abspath(root), str(root.resolve())}
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ConfigError(f"{csv_path}: no 'path' column (columns: {', '.join(reader.fieldnames or [])})")
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path.name}:{line}"
            rel = _clean(row.get("path"))
            if rel is None:
                problems.append(SourceProblem("import", where, "empty path"))
                continue
            candidate = Path(rel) if Path(rel).is_absolute() else root / rel
            written = os.path.abspath(candidate)
            if not any(written == r or written.startswith(r.rstrip(os.sep) + os.sep) for r in roots) or (
                candidate.is_file() and not _inside(root, candidate)
            ):
                problems.append(SourceProblem("import", f"{where} {rel}", f"path escapes the recordings root {root}"))
                continue
            if not candidate.is_file():
                problems.append(SourceProblem("import", f"{where} {rel}", "file not found"))
                continue
            labels, bad = _labels_of(row, settings)
            if bad:
                problems.append(SourceProblem("import", f"{where} {rel}", bad))
                continue
            try:
                manifest = contract_fields(row, f"{where} {rel}")
            except InputError as exc:
                problems.append(SourceProblem("import", f"{where} {rel}", str(exc)))
                continue
            sources.append(TakeSource(str(candidate.resolve()), where, manifest, labels))
    return sources, problems


def discover_takes(
    root: str | Path, import_csv: str | Path | None = None, settings: IngestSettings = IngestSettings()
) -> tuple[list[TakeSource], list[SourceProblem]]:
    """Takes under `root`: the rows of `import_csv` when given, else every WAV/FLAC (with its manifest)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"recordings folder {root} does not exist")
    if import_csv is not None:
        return read_import_csv(import_csv, root, settings)
    sources, problems = [], []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        if not _inside(root, audio):
            problems.append(SourceProblem("discover", str(audio), "symlink points outside the recordings root"))
            continue
        mpath = manifest_path(audio)
        manifest: dict = {}
        if mpath.exists():
            try:
                take = read_manifest(mpath)
            except InputError as exc:
                problems.append(SourceProblem("discover", str(mpath), f"unreadable take manifest: {exc}"))
                continue
            if take.status == TakeStatus.RECORDING:
                # Being recorded now, or its recorder died: ingesting it would freeze a partial take.
                problems.append(
                    SourceProblem(
                        "discover",
                        str(audio.resolve()),
                        "interrupted take (status 'recording'): if no recorder is running, repair it with `cantolab capture recover`",
                    )
                )
                continue
            if take.discarded:  # the engineer discarded it after the take; it stays on disk, unused
                continue
            manifest = ingest_fields(take)
        elif audio.parent != root:
            manifest = {"session": audio.parent.name}
        guessed = ("session",) if manifest and not mpath.exists() else ()
        sources.append(TakeSource(str(audio.resolve()), str(mpath if manifest else audio), manifest, guessed=guessed))
    return sources, problems


def take_id_of(source: TakeSource, sha256: str) -> str:
    return str(source.manifest.get("take_id") or take_id_for_content(sha256))


@dataclass
class TakeRows:
    take: dict
    clips: list[dict]
    features: list[dict]
    labels: list[dict]
    hallucinations: int
    seconds: float


def process_take(source: TakeSource, sha256: str, settings: IngestSettings = IngestSettings(), gate=None) -> TakeRows:
    """Validate → preprocess → transcribe → clips. Raises InputError (AudioError…) for bad input, ConfigError for bad settings.

    `gate`: a context manager held around transcription only (the flow's concurrency limit).
    """
    prepared = prepare_take(source.path, settings.audio, settings.preprocess)
    take_id = take_id_of(source, sha256)
    manifest = dict(source.manifest)
    manifest.pop("take_id", None)
    transcriber = load_transcriber(settings.model, settings.backend, settings.compute_type, settings.threads)
    with gate if gate is not None else contextlib.nullcontext():
        result = transcriber.transcribe(prepared.whisper_input, settings.options_for(manifest.get("language")))
    review(result, prepared.whisper_input, settings.hallucination)
    if not manifest.get("language") and result.language:
        manifest["language"] = result.language
    take = take_record(take_id, prepared, manifest)
    for key in CAPTURE_MEASURED:
        if key in source.manifest and key in manifest:
            take[key] = manifest[key]  # the capture tool's own measurements win over re-measured ones
    clips, features = clip_rows(
        take_id, prepared.processed.samples, prepared.processed.sample_rate, result, settings.clips,
        session=manifest.get("session"), singer=manifest.get("singer"),
    )  # fmt: skip
    now = datetime.now(UTC)
    labels = [
        {"clip_id": c["clip_id"], "style": source.labels.get("style"), "emotion": source.labels.get("emotion"), "resolution": "imported", "annotators": [], "updated_at": now}
        for c in clips
    ] if source.labels else []  # fmt: skip
    return TakeRows(take, clips, features, labels, sum(bool(c["suspected_hallucination"]) for c in clips), prepared.seconds)


def write_take(ds: Dataset, rows: TakeRows, source: str | None = None, known: bool = True) -> dict[str, int]:
    """Replace the take's clips (a settings change may move clip boundaries), then mark it done.

    `known=False` (the take was not in the dataset when the run began) skips the search for stale
    clips, which reads the whole `clips` table. `source`: clear that file's old rejects here (a
    flow clears them once per run instead, see `RejectLog`).
    """
    take_id = rows.take["take_id"]
    new_ids = {c["clip_id"] for c in rows.clips}
    stale = []
    if known:
        existing = ds.read("clips", ["clip_id", "take_id"]).to_pylist()
        stale = [(r["clip_id"],) for r in existing if r["take_id"] == take_id and r["clip_id"] not in new_ids]
    inserted = {}
    inserted["clips"] = ds.upsert("clips", rows.clips).inserted
    inserted["features"] = ds.upsert("features", rows.features).inserted if rows.features else 0
    inserted["labels"] = ds.upsert("labels", rows.labels).inserted if rows.labels else 0
    if stale:
        ds.delete("clips", stale)
        stale_ids = {k[0] for k in stale}
        ds.delete("features", [k for k in ds.keys("features") if k[0] in stale_ids])
        ds.delete("labels", [k for k in stale if k in ds.keys("labels")])
    inserted["takes"] = ds.upsert("takes", [rows.take]).inserted
    if source is not None:  # fixed (or recovered) since an earlier run: no longer quarantined
        ds.delete("rejects", [("ingest", source), ("discover", source)])
    return inserted


# --------------------------------------------------------------------------- what is already known
# Metadata a re-ingest may fill in but never erase (DESIGN "The data path"; issue 14.1).
MERGED_FIELDS = ("session", "singer", "song", "notes", "device_name", "host_api", "microphone", "started_at",
                 "peak_dbfs", "clipped_samples", "input_overflows", "tool_version", "recovered", "language")  # fmt: skip


@dataclass
class KnownTake:
    """A take already in the dataset: its id, audio hash and the metadata a re-ingest must keep."""

    take_id: str
    sha256: str | None
    metadata: dict


def known_takes(ds: Dataset) -> tuple[dict[str, KnownTake], dict[str, KnownTake]]:
    """The dataset's takes by take_id and by audio hash, read once per run."""
    by_id, by_sha = {}, {}
    for row in ds.read("takes", ["take_id", "sha256", *MERGED_FIELDS]).to_pylist():
        meta = {k: row[k] for k in MERGED_FIELDS if row[k] is not None}
        if isinstance(meta.get("started_at"), datetime):
            meta["started_at"] = meta["started_at"].isoformat()
        known = KnownTake(row["take_id"], row["sha256"], meta)
        by_id[known.take_id] = known
        if known.sha256:
            by_sha.setdefault(known.sha256, known)
    return by_id, by_sha


def _same(key: str, a, b) -> bool:
    if key == "started_at":
        a, b = parse_time(a), parse_time(b)
        return a == b
    return str(a).strip().lower() == str(b).strip().lower()


def merge_metadata(new: dict, known: dict, guessed: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """The merge rule: a non-null new value wins; a null (absent) one never overwrites a known value.

    A `guessed` field (inferred, e.g. a session from a folder name) never overwrites either.
    Returns the merged manifest and the fields whose known value the new one changes.
    """
    merged = dict(new)
    changed = []
    for key in MERGED_FIELDS:
        if key in known and (merged.get(key) is None or key in guessed):
            merged[key] = known[key]
        elif key in known and not _same(key, merged[key], known[key]):
            changed.append(key)
    return merged, changed


@dataclass
class Planned:
    """A source ready to run, with its audio hash, final take id and what the dataset knew of it."""

    source: TakeSource  # as found (what the task cache is keyed on)
    sha256: str
    take_id: str
    known: KnownTake | None = None
    changed: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)  # the source's manifest merged with what the dataset knew

    @property
    def merged(self) -> TakeSource:
        return replace(self.source, manifest=self.manifest)


def _describe(src: TakeSource) -> str:
    return src.origin if src.origin == src.path else f"{src.origin} ({src.path})"


def plan_take(
    src: TakeSource,
    sha: str,
    by_id: dict[str, KnownTake],
    by_sha: dict[str, KnownTake],
    seen_id: dict[str, Planned],
    seen_sha: dict[str, Planned],
) -> Planned | SourceProblem:
    """Decide what one source becomes, against the dataset and the sources planned before it.

    The rule for conflicts (documented in README "Ingest"): sources are taken in order (CSV rows
    top to bottom, or the recordings folder's sorted paths); the first one for a take wins, and a
    later one that gives the same audio again, or a take id already given to other audio, is
    rejected with a reason naming the row it conflicts with. Audio already in the dataset keeps
    its take id and metadata (merged by `merge_metadata`).
    """  # fmt: skip
    where = _describe(src)
    first = seen_sha.get(sha)
    if first is not None:
        same_labels = (first.source.labels or None) == (src.labels or None)
        detail = "" if same_labels else f" with different labels ({src.labels or 'none'} here, {first.source.labels or 'none'} there)"
        return SourceProblem("import" if src.origin != src.path else "discover", where,
                             f"same audio as {_describe(first.source)}{detail}: the first is ingested, this one is not")  # fmt: skip
    known = by_sha.get(sha)
    given = src.manifest.get("take_id")
    if known is not None and given and given != known.take_id:
        return SourceProblem(
            "ingest", where, f"same audio as take {known.take_id!r} already in the dataset, but this source names it {given!r}"
        )
    take_id = known.take_id if known is not None else take_id_of(src, sha)
    other = seen_id.get(take_id)
    if other is not None:
        return SourceProblem("import" if src.origin != src.path else "discover", where,
                             f"take id {take_id!r} is already given to {_describe(other.source)}, whose audio differs")  # fmt: skip
    known = known or by_id.get(take_id)
    changed: list[str] = []
    manifest = src.manifest | {"take_id": take_id}
    if known is not None:
        manifest, changed = merge_metadata(manifest, known.metadata, src.guessed)
        if known.sha256 and known.sha256 != sha:
            changed = ["audio", *changed]
    planned = Planned(src, sha, take_id, known, changed, manifest)
    seen_id[take_id] = seen_sha[sha] = planned
    return planned


@dataclass
class RejectLog:
    """Rejects collected in memory and written in batches (one upsert per `batch` rows, and at the end).

    One upsert per reject re-reads the table each time: 300 missing files took 37 s. Sources that
    were ingested have their old rejects removed in one delete at `flush`.
    """

    ds: Dataset
    batch: int = 2000
    rows: dict = field(default_factory=dict)
    cleared: list = field(default_factory=list)

    def add(self, stage: str, source: str, reason: str, details: str = "") -> None:
        self.rows[(stage, str(source))] = {
            "stage": stage,
            "source": str(source),
            "reason": reason,
            "details": details,
            "at": datetime.now(UTC),
        }
        if len(self.rows) >= self.batch:
            self.flush()

    def clear(self, source: str) -> None:
        self.cleared += [("ingest", source), ("discover", source)]
        if len(self.cleared) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.cleared:
            done = set(self.cleared) - set(self.rows)
            self.cleared = []
            if done:
                self.ds.delete("rejects", done)
        if self.rows:
            rows, self.rows = list(self.rows.values()), {}
            self.ds.upsert("rejects", rows)
