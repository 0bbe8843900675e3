"""The take manifest: the contract between capture (which writes it) and ingest (which reads it).

It lives in `pipeline` because ingest may not import `capture` (DESIGN.md, "Take"). The field
types are the contract: `read_manifest` and `contract_fields` validate and convert with pydantic,
so a CSV row's strings ("1.5", "true") and a manifest's JSON values arrive typed the same way and a
wrong value is an `InputError` naming the field. Every write goes through `pipeline.fsio`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, get_type_hints

import pydantic

from pipeline.errors import InputError
from pipeline.fsio import atomic_write_text


class TakeStatus(StrEnum):
    """Where a take is in its life; a manifest's `status` is one of these."""

    RECORDING = "recording"  # being recorded now, or its recorder died (`capture recover` repairs it)
    COMPLETE = "complete"
    STOPPED = "stopped"  # ended early (disk full, device gone, …); what was recorded is kept, `error` says why
    RECOVERED = "recovered"  # left `recording` by a killed recorder, repaired by `capture recover`


@dataclass
class TakeManifest:
    # DESIGN.md's take fields (the `takes` table's manifest columns)
    take_id: str
    session: str
    singer: str
    song: str
    notes: str = ""
    device_name: str = ""
    host_api: str = ""
    microphone: str = ""
    sample_rate: int = 48_000
    subtype: str = "PCM_24"
    channels: int = 1
    started_at: str = ""  # UTC ISO 8601
    frames: int = 0
    seconds: float = 0.0
    peak_dbfs: float | None = None
    clipped_samples: int = 0
    input_overflows: int = 0
    sha256: str | None = None
    tool_version: str = ""
    recovered: bool = False
    language: str | None = None  # the sung language when known (else ingest detects it)
    # capture's own bookkeeping
    status: TakeStatus = TakeStatus.RECORDING
    input_channel: int = 1  # 1-based channel of the interface the mono take came from
    frames_lost: int = 0  # blocks the writer queue could not take (should always be 0)
    end_reason: str = ""
    error: str = ""
    ended_at: str = ""  # UTC ISO 8601 of the last audio written
    # the engineer's verdict after the take (a discarded take stays on disk; ingest skips it)
    take_number: int | None = None  # 1, 2, … per song within a session
    discarded: bool = False
    rating: int | None = None  # 1..5 when given
    comment: str = ""  # the engineer's note after the take
    may_resample: bool = False  # recorded through an ALSA default/plug device that can resample

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


# The fields ingest copies into the `takes` table (the rest is capture's bookkeeping).
CONTRACT_FIELDS = (
    "take_id", "session", "singer", "song", "notes", "device_name", "host_api", "microphone", "started_at",
    "peak_dbfs", "clipped_samples", "input_overflows", "tool_version", "recovered", "language",
)  # fmt: skip
# Measured by the recorder on the raw input: they win over ingest's re-measurement.
CAPTURE_MEASURED = ("peak_dbfs", "clipped_samples", "recovered", "tool_version")

_ADAPTER = pydantic.TypeAdapter(TakeManifest)
_FIELD_TYPES = get_type_hints(TakeManifest)
_FIELD_ADAPTERS = {f.name: pydantic.TypeAdapter(_FIELD_TYPES[f.name]) for f in fields(TakeManifest)}


def _problem(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors())


def manifest_from_dict(data: Mapping[str, Any], where: str = "take manifest") -> TakeManifest:
    """A validated manifest; unknown keys (a newer writer's) are ignored, wrong types are an InputError."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: not a JSON object")
    known = {f.name for f in fields(TakeManifest)}
    values = {k: v for k, v in data.items() if k in known}
    # A manifest that does not say it is being recorded (another tool's, or an import) is a finished take.
    values.setdefault("status", TakeStatus.COMPLETE)
    try:
        return _ADAPTER.validate_python(values)
    except pydantic.ValidationError as exc:
        raise InputError(f"{where}: {_problem(exc)}") from None


def contract_fields(data: Mapping[str, Any], where: str = "take") -> dict[str, Any]:
    """The contract fields present in `data` (a CSV row, a partial manifest), typed; None/empty dropped."""
    out = {}
    for key in CONTRACT_FIELDS:
        value = data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            out[key] = _FIELD_ADAPTERS[key].validate_python(value.strip() if isinstance(value, str) else value)
        except pydantic.ValidationError as exc:
            raise InputError(f"{where}: {key}: {exc.errors()[0]['msg']} (got {value!r})") from None
    return out


def ingest_fields(manifest: TakeManifest) -> dict[str, Any]:
    """What ingest stores from a manifest: the contract fields that are set."""
    return contract_fields(manifest.to_dict())


def manifest_path(audio: Path) -> Path:
    """A take's manifest sits beside its audio: `<take_id>.json`."""
    return Path(audio).with_suffix(".json")


def read_manifest(path: str | Path) -> TakeManifest:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"take manifest {path}: unreadable JSON ({exc})") from None
    return manifest_from_dict(data, f"take manifest {path}")


def write_manifest(path: str | Path, manifest: TakeManifest) -> None:
    """Atomically (pipeline.fsio): a reader sees the old manifest or the new one, never half of one."""
    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(path, text, perms=0o644)


def utc_now_iso(when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
