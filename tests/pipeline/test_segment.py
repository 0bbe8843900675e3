"""Clips from segments: bounded lengths, cuts between words, audio + words + features per clip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio import decode_audio_bytes
from pipeline.segment import ClipConfig, clip_rows, plan_clips
from pipeline.transcribe import Segment, Word, flag_segments
from pipeline.transcribe.types import ENCODER_FPS, Transcription

SR = 48_000


def sung(duration: float, word_every: float = 0.6, segment_every: float = 7.0, frames: bool = True) -> Transcription:
    """A take with a word every `word_every` s (0.4 s long), grouped into segments."""
    segments, t = [], 0.2
    while t + 0.4 < duration:
        start = t
        words = []
        while t + 0.4 < min(duration, start + segment_every):
            words.append(Word(f"w{len(words)}", round(t, 2), round(t + 0.4, 2), 0.9))
            t += word_every
        segments.append(Segment(start, words[-1].end, " ".join(w.word for w in words), words, -0.3, 0.1, 1.3))
        t += 0.5
    enc = np.random.default_rng(0).standard_normal((int(duration * ENCODER_FPS) + 1, 8)).astype(np.float16) if frames else None
    return Transcription(flag_segments(segments), "en", 0.99, duration, "test", "unit", enc)


def test_short_take_is_one_clip():
    spans = plan_clips(sung(12.0), 12.0, ClipConfig(4.0, 20.0))
    assert [(s.start, s.end) for s in spans] == [(0.0, 12.0)]


@settings(max_examples=40, deadline=None)
@given(duration=st.floats(21.0, 200.0), lo=st.floats(2.0, 6.0), span=st.floats(8.0, 25.0))
def test_long_take_clips_cover_it_within_bounds_and_cut_between_words(duration, lo, span):
    cfg = ClipConfig(lo, lo + span)
    t = sung(duration)
    spans = plan_clips(t, duration, cfg)
    assert spans[0].start == 0.0 and spans[-1].end == pytest.approx(duration, abs=1e-3)
    for a, b in zip(spans, spans[1:]):
        assert a.end == b.start
    words = [w for s in t.segments for w in s.words]
    for cut in [s.end for s in spans[:-1]]:
        assert not any(w.start < cut < w.end for w in words), "a word was cut"
    for s in spans:
        assert s.end - s.start <= cfg.max_seconds + 1e-6
    for s in spans[:-1]:
        assert s.end - s.start >= cfg.min_seconds - 1e-6
    assert sum(len(s.units) for s in spans) == len(words)  # every word in exactly one clip


def test_take_without_lyrics_is_cut_evenly():
    t = Transcription([], None, None, 50.0, "test", "unit")
    spans = plan_clips(t, 50.0, ClipConfig(4.0, 20.0))
    assert [(s.start, s.end) for s in spans] == [(0.0, 16.667), (16.667, 33.333), (33.333, 50.0)]


def test_clip_rows_carry_audio_words_and_encoder_frames():
    duration = 45.0
    samples = (0.5 * np.sin(2 * np.pi * 220 * np.arange(int(duration * SR)) / SR)).astype(np.float32)
    t = sung(duration)
    clips, features = clip_rows("take-1", samples, SR, t, ClipConfig(4.0, 20.0), session="s1", singer="alice")
    assert len(clips) >= 3 and len(features) == len(clips)
    for clip, feat in zip(clips, features):
        audio, rate = decode_audio_bytes(clip["audio_flac"])
        assert rate == SR and len(audio) == pytest.approx((clip["end_s"] - clip["start_s"]) * SR, abs=2)
        assert all(0.0 <= w["start"] < w["end"] <= clip["end_s"] - clip["start_s"] + 1e-6 for w in clip["words"])
        assert clip["transcript"] == " ".join(w["word"] for w in clip["words"])
        assert feat["clip_id"] == clip["clip_id"] and feat["dim"] == 8
        assert abs(feat["n_frames"] - (clip["end_s"] - clip["start_s"]) * ENCODER_FPS) <= 1
        frames = np.frombuffer(feat["frames"], dtype="<f2").reshape(feat["n_frames"], 8)
        first = int(clip["start_s"] * ENCODER_FPS)
        assert np.array_equal(frames, t.encoder_frames[first : first + feat["n_frames"]])
    again, _ = clip_rows("take-1", samples, SR, t, ClipConfig(4.0, 20.0))
    assert [c["clip_id"] for c in again] == [c["clip_id"] for c in clips]  # stable ids


def test_features_skipped_where_no_window_was_encoded():
    t = sung(40.0)
    t.encoder_frames[15 * ENCODER_FPS :] = np.nan  # the encoder never ran past 15 s
    samples = np.full(int(40.0 * SR), 0.1, dtype=np.float32)
    clips, features = clip_rows("take-2", samples, SR, t, ClipConfig(4.0, 10.0))
    covered = [c["clip_id"] for c in clips if c["end_s"] <= 15.0]
    assert 0 < len(covered) < len(clips)
    assert [f["clip_id"] for f in features] == covered  # no invented frames for the rest


def test_invalid_range_is_refused():
    with pytest.raises(ValueError, match="clip length range"):
        ClipConfig(10.0, 5.0)
