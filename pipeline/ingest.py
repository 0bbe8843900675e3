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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline.config import AudioConfig, PreprocessConfig
from pipeline.dataset import Dataset
from pipeline.errors import ConfigError, InputError
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record
from pipeline.segment import ClipConfig, clip_rows
from pipeline.settings import validate
from pipeline.transcribe import PRODUCTION_DEFAULT, TranscribeOptions, check_options, load_transcriber, resolve_backend, review
from pipeline.transcribe.hallucination import HallucinationRules
from pipeline.vocabulary import LabelSets, normalize_label

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
MANIFEST_FIELDS = (
    "take_id", "session", "singer", "song", "notes", "device_name", "host_api", "microphone", "started_at",
    "peak_dbfs", "clipped_samples", "input_overflows", "tool_version", "recovered", "language",
)  # fmt: skip


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


def read_import_csv(csv_path: str | Path, root: str | Path, settings: IngestSettings = IngestSettings()) -> tuple[list[TakeSource], list[SourceProblem]]:
    """Rows of a CSV of manifest fields (+ optional style/emotion); paths must stay inside `root`."""
    root, csv_path = Path(root), Path(csv_path)
    sources, problems = [], []
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
            if not _inside(root, candidate):
                problems.append(SourceProblem("import", f"{where} {rel}", f"path escapes the recordings root {root}"))
                continue
            if not candidate.is_file():
                problems.append(SourceProblem("import", f"{where} {rel}", "file not found"))
                continue
            labels, bad = _labels_of(row, settings)
            if bad:
                problems.append(SourceProblem("import", f"{where} {rel}", bad))
                continue
            manifest = {k: _clean(row.get(k)) for k in MANIFEST_FIELDS if _clean(row.get(k)) is not None}
            sources.append(TakeSource(str(candidate.resolve()), where, manifest, labels))
    return sources, problems


def discover_takes(root: str | Path, import_csv: str | Path | None = None, settings: IngestSettings = IngestSettings()) -> tuple[list[TakeSource], list[SourceProblem]]:
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
        manifest_path = audio.with_suffix(".json")
        manifest: dict = {}
        if manifest_path.exists():
            try:
                raw = json.loads(manifest_path.read_text())
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                problems.append(SourceProblem("discover", str(manifest_path), f"unreadable take manifest: {exc}"))
                continue
            if raw.get("status") == "recording":
                # Being recorded now, or its recorder died: ingesting it would freeze a partial take.
                problems.append(SourceProblem("discover", str(audio.resolve()), "interrupted take (status 'recording'): if no recorder is running, repair it with `cantolab capture recover`"))
                continue
            manifest = {k: raw[k] for k in MANIFEST_FIELDS if raw.get(k) is not None}
        elif audio.parent != root:
            manifest = {"session": audio.parent.name}
        sources.append(TakeSource(str(audio.resolve()), str(manifest_path if manifest else audio), manifest))
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
    for key, kind in (("peak_dbfs", float), ("clipped_samples", int), ("input_overflows", int)):
        if key in manifest:
            try:
                manifest[key] = kind(manifest[key])
            except (TypeError, ValueError):
                raise InputError(f"{source.origin}: {key} {manifest[key]!r} is not a {kind.__name__}") from None
    if "recovered" in manifest:
        manifest["recovered"] = str(manifest["recovered"]).lower() in ("1", "true", "yes")
    transcriber = load_transcriber(settings.model, settings.backend, settings.compute_type, settings.threads)
    with gate if gate is not None else contextlib.nullcontext():
        result = transcriber.transcribe(prepared.whisper_input, settings.options_for(manifest.get("language")))
    review(result, prepared.whisper_input, settings.hallucination)
    if not manifest.get("language") and result.language:
        manifest["language"] = result.language
    take = take_record(take_id, prepared, manifest)
    for key in ("peak_dbfs", "clipped_samples", "recovered", "tool_version"):
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


def write_take(ds: Dataset, rows: TakeRows, source: str | None = None) -> dict[str, int]:
    """Replace the take's clips (a settings change may move clip boundaries), then mark it done."""
    take_id = rows.take["take_id"]
    new_ids = {c["clip_id"] for c in rows.clips}
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
        ds.delete("rejects", [k for k in (("ingest", source), ("discover", source)) if k in ds.keys("rejects")])
    return inserted
