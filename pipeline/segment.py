"""Clips from Whisper segments: merged or split at word boundaries to a bounded length.

A take no longer than `max_seconds` is one clip. A longer take is cut between words (or between
segments when words are absent) so that each clip lasts `min_seconds`–`max_seconds` where the
lyrics allow; a take with no lyrics is cut into equal spans. Word times in a clip are relative to
the clip's start (the clip carries its own audio).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from pipeline.audio import encode_flac
from pipeline.errors import ConfigError
from pipeline.ids import clip_id
from pipeline.transcribe.types import ENCODER_FPS, Segment, Transcription, encoder_feature_key


@dataclass(frozen=True)
class ClipConfig:
    min_seconds: float = 4.0
    max_seconds: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError(f"clip length range must satisfy 0 < min <= max, got {self.min_seconds}–{self.max_seconds}")


@dataclass
class _Unit:
    """A piece of lyrics that is never cut: a word, or a whole segment without word times."""

    start: float
    end: float
    text: str
    segment: Segment
    word: object | None = None


@dataclass
class ClipSpan:
    start: float
    end: float
    units: list[_Unit] = field(default_factory=list)

    @property
    def segments(self) -> list[Segment]:
        seen: dict[int, Segment] = {}
        for u in self.units:
            seen.setdefault(id(u.segment), u.segment)
        return list(seen.values())


def _units(segments: list[Segment]) -> list[_Unit]:
    units = []
    for seg in segments:
        if seg.words:
            units += [_Unit(w.start, w.end, w.word, seg, w) for w in seg.words]
        elif seg.text.strip():
            units.append(_Unit(seg.start, seg.end, seg.text.strip(), seg))
    return sorted(units, key=lambda u: u.start)


def _free_intervals(units: list[_Unit], duration: float) -> list[tuple[float, float]]:
    """Stretches of the take inside no unit: where a cut loses no word."""
    free, pos = [], 0.0
    for u in units:
        if u.start > pos:
            free.append((pos, u.start))
        pos = max(pos, u.end)
    if duration > pos:
        free.append((pos, duration))
    return free


def _next_cut(pos: float, units: list[_Unit], free: list[tuple[float, float]], cfg: ClipConfig) -> float:
    lo, hi = pos + cfg.min_seconds, pos + cfg.max_seconds
    gaps = [(a, b) for a, b in free if b > lo and a < hi]
    if gaps:
        a, b = gaps[-1]  # the latest gap in range: clips as long as allowed
        return min(max((a + b) / 2, a, lo), b, hi)
    # A unit spans the whole allowed range (a long word-less segment): cut at its edge.
    covering = next(u for u in units if u.start < hi < u.end or (u.start <= hi and u.end >= hi))
    return covering.start if covering.start > lo else covering.end


def plan_clips(transcription: Transcription, duration: float, cfg: ClipConfig = ClipConfig()) -> list[ClipSpan]:
    """Spans covering the take from 0 to `duration`, cut only outside words (or word-less segments)."""
    duration = round(duration, 3)
    units = _units([s for s in transcription.segments if s.is_lyrics])
    if duration <= cfg.max_seconds:
        return [ClipSpan(0.0, duration, units)]
    if not units:
        n = math.ceil(duration / cfg.max_seconds)
        edges = [round(duration * i / n, 3) for i in range(n + 1)]
        return [ClipSpan(a, b) for a, b in zip(edges, edges[1:])]
    free = _free_intervals(units, duration)
    cuts = [0.0]
    while duration - cuts[-1] > cfg.max_seconds:
        cut = math.floor(_next_cut(cuts[-1], units, free, cfg) * 1000) / 1000  # ms ids; never past max
        if cut <= cuts[-1] or cut >= duration:
            break
        cuts.append(cut)
    cuts.append(duration)
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < cfg.min_seconds and cuts[-1] - cuts[-3] <= cfg.max_seconds:
        del cuts[-2]  # a short tail joins the clip before it when that stays within bounds
    spans = [ClipSpan(a, b) for a, b in zip(cuts, cuts[1:])]
    for u in units:
        mid = (u.start + u.end) / 2
        next(s for s in spans if mid < s.end or s is spans[-1]).units.append(u)
    return spans


def _weighted(values: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in values)
    return float(sum(v * w for v, w in values) / total) if total > 0 else None


def clip_rows(
    take_id: str,
    samples: np.ndarray,
    sample_rate: int,
    transcription: Transcription,
    cfg: ClipConfig = ClipConfig(),
    session: str | None = None,
    singer: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """`clips` rows (processed audio as 48 kHz / 24-bit FLAC) and `features` rows (encoder frames)."""
    now = datetime.now(UTC)
    duration = len(samples) / sample_rate
    clips, features = [], []
    frames = transcription.encoder_frames
    for span in plan_clips(transcription, duration, cfg):
        cid = clip_id(take_id, span.start, span.end)
        audio = samples[int(round(span.start * sample_rate)) : int(round(span.end * sample_rate))]
        flac = encode_flac(audio, sample_rate, "PCM_24")
        segs = span.segments
        lyric_units = [u for u in span.units]
        words = [
            {
                "word": u.word.word,
                "start": round(u.word.start - span.start, 3),
                "end": round(u.word.end - span.start, 3),
                "probability": float(u.word.probability),
            }
            for u in lyric_units
            if u.word is not None
        ]
        text = " ".join(u.text for u in lyric_units).strip() if words else " ".join(s.text.strip() for s in segs).strip()
        overlapping = [s for s in transcription.segments if s.end > span.start and s.start < span.end]
        weights = [(s, max(min(s.end, span.end) - max(s.start, span.start), 1e-3)) for s in overlapping]
        clips.append(
            {
                "clip_id": cid,
                "take_id": take_id,
                "session": session,
                "singer": singer,
                "start_s": span.start,
                "end_s": span.end,
                "audio_flac": flac,
                "sample_rate": sample_rate,
                "transcript": text,
                "language": transcription.language,
                "words": words,
                "avg_logprob": _weighted([(s.avg_logprob, w) for s, w in weights]),
                "no_speech_prob": max((s.no_speech_prob for s in overlapping), default=None),
                "compression_ratio": max((s.compression_ratio for s in overlapping), default=None),
                "suspected_hallucination": any(s.suspected_hallucination for s in overlapping),
                "asr_model": f"{transcription.backend}:{transcription.model}",
                "processed_sha256": hashlib.sha256(flac).hexdigest(),
                "created_at": now,
            }
        )
        if frames is not None:
            piece = frames[int(span.start * ENCODER_FPS) : math.ceil(span.end * ENCODER_FPS)]
            if len(piece) and not np.isnan(piece.astype(np.float32)).any():
                features.append(
                    {
                        "clip_id": cid,
                        "encoder_model": encoder_feature_key(transcription.model),
                        "n_frames": int(piece.shape[0]),
                        "dim": int(piece.shape[1]),
                        "frames": np.ascontiguousarray(piece, dtype="<f2").tobytes(),
                        "created_at": now,
                    }
                )
    return clips, features
