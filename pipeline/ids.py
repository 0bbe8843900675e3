"""Stable identifiers: the same take and span always get the same id, on any machine."""

from __future__ import annotations

import hashlib


def _short_hash(*parts: object, n: int = 16) -> str:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def clip_id(take_id: str, start_s: float, end_s: float) -> str:
    """Span rounded to milliseconds, so float noise in segment times cannot fork an id."""
    return "clip-" + _short_hash(take_id, f"{start_s:.3f}", f"{end_s:.3f}")


def take_id_for_content(sha256: str) -> str:
    """Imported recordings are keyed by their content: the same file imported twice is one take."""
    return "take-" + sha256[:16]
