"""Clips → Label Studio tasks: audio files under the document root, task data, who labels what.

Every clip goes to two different annotators, chosen from the roster by a stable hash of the clip id
(so re-runs and other machines pick the same pair); a clip that already has tasks keeps the
annotators it has and only gets the missing ones. An annotator who skips a clip no longer counts:
the clip goes to the next annotator on the roster who has not had it, and when nobody is left, to
the adjudicator with the reason (`Assignment.exhausted`).
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
    suspected_hallucination: bool = False


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


HALLUCINATION_NOTE = "⚠ Whisper may have invented this transcript (suspected hallucination): judge by the audio."
PLAIN_NOTE = "Whisper transcript; it may be wrong."


def task_data(clip: ClipForTask, media_subdir: str) -> dict:
    return {
        "clip_id": clip.clip_id,
        "audio": audio_url(media_subdir, clip.clip_id),
        "transcript": clip.transcript or "(no transcript)",
        "asr_note": HALLUCINATION_NOTE if clip.suspected_hallucination else PLAIN_NOTE,
    }


def pair_for(clip_id: str, annotators: tuple[str, ...]) -> tuple[str, str]:
    pairs = list(combinations(sorted(annotators), 2))
    h = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big")
    return pairs[h % len(pairs)]


def _order(clip_id: str, annotators: tuple[str, ...]) -> list[str]:
    """The clip's hashed pair first, then everyone else in a per-clip order (who is asked third)."""
    pair = list(pair_for(clip_id, annotators))
    rest = sorted((a for a in annotators if a not in pair), key=lambda a: hashlib.sha256(f"{clip_id}|{a}".encode()).digest())
    return pair + rest


@dataclass
class Assignment:
    todo: dict[str, list[str]]  # annotator → clip ids to add to their project
    exhausted: dict[str, str]  # clip id → why no two annotators are left (goes to adjudication)


def assign(clip_ids: list[str], roster: Roster, existing: dict[str, set[str]], skipped: dict[str, set[str]] | None = None) -> Assignment:
    """`existing`: clip id → annotators who have a task for it; `skipped`: clip id → who skipped it."""
    skipped = skipped or {}
    out = Assignment({a: [] for a in roster.annotators}, {})
    for cid in clip_ids:
        have = {a for a in existing.get(cid, set()) if a in out.todo}
        gave_up = skipped.get(cid, set())
        need = 2 - len(have - gave_up)
        if need <= 0:
            continue
        wanted = [a for a in _order(cid, roster.annotators) if a not in have][:need]
        for a in wanted:
            out.todo[a].append(cid)
        if len(wanted) < need:
            out.exhausted[cid] = f"skipped by {len(gave_up & have)} annotator(s) and no one else on the roster is left"
    return out
