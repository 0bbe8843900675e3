"""Capture's side of the take manifest: claiming a take's files and naming things safely.

The manifest itself (fields, status values, read/write) is the shared contract in
`pipeline.manifest`; capture writes it when a take starts (`recording`), checkpoints it while it
runs, and finishes it (`complete`, or `stopped` with the reason). `recover` turns a `recording`
manifest left by a killed recorder into `recovered`.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from capture import __version__ as CAPTURE_VERSION
from pipeline import __version__ as PIPELINE_VERSION
from pipeline.errors import InputError
from pipeline.manifest import TakeManifest, TakeStatus, manifest_path, read_manifest, utc_now_iso, write_manifest

__all__ = [
    "TOOL_VERSION", "TakeManifest", "TakeStatus", "claim_take", "manifest_path", "read_manifest",
    "safe_component", "utc_now_iso", "write_manifest",
]  # fmt: skip

TOOL_VERSION = f"cantolab-capture {CAPTURE_VERSION} (pipeline {PIPELINE_VERSION})"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(value: str, what: str) -> str:
    """A session/singer name usable as a folder or id part; refuse what would escape the folder or
    break a listing (path separators, control characters such as a newline)."""
    stripped = value.strip()
    if not stripped or stripped in (".", ".."):
        raise InputError(f"{what} {value!r} cannot be used as a folder name (it is empty, '.' or '..')")
    if "/" in stripped or "\\" in stripped:
        raise InputError(f"{what} {value!r} contains a path separator ('/' or '\\'); use a plain name such as 2026-05-03-alto")
    if any(ord(c) < 32 or ord(c) == 127 for c in stripped):
        raise InputError(f"{what} {value!r} contains a control character (a newline or tab?); use a plain name")
    return stripped


def claim_take(session_dir: Path, singer: str, when: datetime | None = None) -> tuple[str, Path, int]:
    """A fresh take id and its WAV, created exclusively (O_EXCL): no take is ever overwritten.

    Returns (take_id, wav_path, open fd). The id reads `<UTC time>-<singer>-<random>` so takes sort
    by time in a folder listing and two recorders in the same second still differ.
    """
    session_dir.mkdir(parents=True, exist_ok=True)
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
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
