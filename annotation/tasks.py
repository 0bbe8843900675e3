"""Clips → Label Studio tasks: audio files under the document root, task data, who labels what.

Every clip goes to exactly two different annotators, chosen from the roster by a stable hash of the
clip id (so re-runs and other machines pick the same pair); a clip that already has tasks keeps the
annotators it has and only gets the missing ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pyarrow as pa

from annotation.settings import Roster
from pipeline.fsio import atomic_write_bytes


@dataclass(frozen=True)
class ClipForTask:
    clip_id: str
    transcript: str
    singer: str | None


def audio_relpath(media_subdir: str, clip_id: str) -> str:
    return f"{media_subdir}/{clip_id}.flac"


def audio_url(media_subdir: str, clip_id: str) -> str:
    return f"/data/local-files/?d={audio_relpath(media_subdir, clip_id)}"


def write_media(clips: pa.Table, media_dir: Path) -> int:
    """Write each clip's processed FLAC bytes as <clip_id>.flac (atomic; existing files are kept)."""
    media_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    ids = clips.column("clip_id").to_pylist()
    audio = clips.column("audio_flac")
    for i, cid in enumerate(ids):
        path = media_dir / f"{cid}.flac"
        if path.exists():
            continue
        data = audio[i].as_py()
        if not data:
            continue
        atomic_write_bytes(path, data)
        written += 1
    return written


def task_data(clip: ClipForTask, media_subdir: str) -> dict:
    return {
        "clip_id": clip.clip_id,
        "audio": audio_url(media_subdir, clip.clip_id),
        "transcript": clip.transcript or "(no transcript)",
    }


def pair_for(clip_id: str, annotators: tuple[str, ...]) -> tuple[str, str]:
    pairs = list(combinations(sorted(annotators), 2))
    h = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big")
    return pairs[h % len(pairs)]


def assign(clip_ids: list[str], roster: Roster, existing: dict[str, set[str]]) -> dict[str, list[str]]:
    """annotator → clip ids to add to their project; `existing` is clip id → annotators who have it."""
    todo: dict[str, list[str]] = {a: [] for a in roster.annotators}
    for cid in clip_ids:
        have = {a for a in existing.get(cid, set()) if a in todo}
        if len(have) >= 2:
            continue
        wanted = [a for a in pair_for(cid, roster.annotators) if a not in have]
        if len(have) + len(wanted) > 2:
            wanted = wanted[: 2 - len(have)]
        if len(have) + len(wanted) < 2:  # the hashed pair overlaps someone who left the roster's pairing
            spare = [a for a in sorted(roster.annotators) if a not in have and a not in wanted]
            wanted += spare[: 2 - len(have) - len(wanted)]
        for a in wanted:
            todo[a].append(cid)
    return todo
