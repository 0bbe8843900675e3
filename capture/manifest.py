"""The take manifest: the contract between capture and ingest (DESIGN.md, "Take").

Written when a take starts (status `recording`), checkpointed while it runs, and finished at the
end (`complete`, or `stopped` after a write error). `recover` turns a `recording` manifest left by
a killed recorder into `recovered`. Every write is atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from capture import __version__ as CAPTURE_VERSION
from pipeline import __version__ as PIPELINE_VERSION
from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text

STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
STATUS_STOPPED = "stopped"  # ended early by a write error; what was recorded is kept
STATUS_RECOVERED = "recovered"

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
    tool_version: str = field(default_factory=lambda: f"cantolab-capture {CAPTURE_VERSION} (pipeline {PIPELINE_VERSION})")
    recovered: bool = False
    # capture's own bookkeeping
    status: str = STATUS_RECORDING
    input_channel: int = 1  # 1-based channel of the interface the mono take came from
    frames_lost: int = 0  # blocks the writer queue could not take (should always be 0)
    end_reason: str = ""
    error: str = ""
    ended_at: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> "TakeManifest":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe_component(value: str, what: str) -> str:
    """A session/singer name usable as a folder or id part; refuse what would escape the folder."""
    value = value.strip()
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ConfigError(f"{what} {value!r} cannot be used as a folder name (empty, '.', '..' or contains a slash)")
    return value


def manifest_path(wav_path: Path) -> Path:
    return wav_path.with_suffix(".json")


def write_manifest(path: Path, manifest: TakeManifest) -> None:
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", perms=0o644)


def read_manifest(path: Path) -> TakeManifest:
    return TakeManifest.from_dict(json.loads(Path(path).read_text()))


def claim_take(session_dir: Path, singer: str, when: datetime | None = None) -> tuple[str, Path, int]:
    """A fresh take id and its WAV, created exclusively (O_EXCL): no take is ever overwritten.

    Returns (take_id, wav_path, open fd). The id reads `<UTC time>-<singer>-<random>` so takes sort
    by time in a folder listing and two recorders in the same second still differ.
    """
    session_dir.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    who = _SAFE.sub("_", singer).strip("_") or "singer"
    for _ in range(100):
        take_id = f"{stamp}-{who}-{secrets.token_hex(3)}"
        wav = session_dir / f"{take_id}.wav"
        if manifest_path(wav).exists():
            continue
        try:
            fd = os.open(wav, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        return take_id, wav, fd
    raise RuntimeError(f"could not find a free take id in {session_dir}")
