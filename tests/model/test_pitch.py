"""The pitch stream: F0 cues that describe how a phrase is sung (vibrato, stability, glides), and the
model that reads them beside the audio states."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from model.crossval import crossval
from model.data import load_examples
from model.features import LOGMEL, cache_dir, clip_features, feature_name
from model.pitch import PITCH, PITCH_DIM, PITCH_FEATURES, clip_summary, pitch_features
from tests.model.conftest import tiny_config

RATE = 16_000


def sung(seconds: float, semitones) -> np.ndarray:
    """A harmonic tone (a voice-like spectrum) following a pitch contour given in semitones from A3."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 220.0 * 2 ** (np.asarray(semitones(t)) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return (sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2).astype(np.float32)


def two_per_singer(examples):
    kept, seen = [], Counter()
    for e in examples:
        seen[e.singer] += 1
        if seen[e.singer] <= 2:
            kept.append(e)
    return kept


def summary(audio: np.ndarray) -> dict[str, float]:
    return clip_summary(pitch_features(audio))


def test_vibrato_shows_as_rate_and_extent_and_a_glide_as_glide():
    steady = summary(sung(3.0, lambda t: np.zeros_like(t)))
    vibrato = summary(sung(3.0, lambda t: 0.8 * np.sin(2 * np.pi * 5.5 * t)))  # 5.5 Hz, ±0.8 semitone
    glide = summary(sung(3.0, lambda t: 4.0 * t))  # a slow portamento, 4 semitones per second
    assert steady["voicing_prob"] > 0.5 and vibrato["voicing_prob"] > 0.5
    assert abs(vibrato["vibrato_rate"] - 5.5) < 1.0, vibrato
    assert vibrato["vibrato_extent"] > 0.3 > steady["vibrato_extent"] + 0.2, (vibrato, steady)
    assert vibrato["vibrato_strength"] > steady["vibrato_strength"]
    assert abs(glide["glide"] - 4.0) < 1.0 and steady["glide"] < 0.5, (glide, steady)


def test_silence_is_unvoiced_and_all_zero_cues():
    x = pitch_features(np.zeros(RATE, dtype=np.float32))
    assert x.shape == (25, PITCH_DIM) and len(PITCH_FEATURES) == PITCH_DIM
    assert np.all(x[:, 1:7] == 0) and x[:, 0].max() < 0.5


def test_pitch_columns_follow_the_audio_frames_and_are_cached(gt_small):
    examples = load_examples(gt_small)[:3]
    both = clip_features(examples, LOGMEL + "+pitch")
    audio = clip_features(examples, LOGMEL)
    for a, b in zip(audio, both):
        assert b.shape[1] == a.shape[1] + PITCH_DIM and abs(len(a) - len(b)) <= 1
        np.testing.assert_array_equal(b[:, : a.shape[1]], a[: len(b)])
    assert len(list((cache_dir() / PITCH).glob("*.npy"))) >= 3  # computed once, read next time
    assert feature_name(tiny_config(model={"pitch": True}).model) == LOGMEL + "+pitch"


@pytest.mark.parametrize("audio_encoder", ["cnn", "whisper"])
def test_a_model_with_the_pitch_stream_trains_on_real_clips(gt_small, audio_encoder):
    examples = two_per_singer(load_examples(gt_small))  # pitch costs ~1 s per clip on a busy core
    cfg = tiny_config(epochs=2, patience=2, tasks=("style",), model={"pitch": True, "audio_encoder": audio_encoder})
    # Whisper-shaped input without running Whisper: the stream split only needs the column count.
    feats = clip_features(examples, feature_name(cfg.model)) if audio_encoder == "cnn" else None
    if feats is None:
        rng = np.random.default_rng(0)
        pitch = clip_features(examples, PITCH)
        feats = [np.concatenate([rng.normal(size=(len(p), 512)).astype(np.float32), p], 1) for p in pitch]
    folds = [sorted({e.singer for e in examples})[:2]]
    cv = crossval(examples, feats, cfg, folds=folds)
    probs = cv.probs[0]["style"]
    tested = [i for i, e in enumerate(examples) if e.singer in folds[0]]
    assert np.allclose(probs[tested].sum(1), 1.0, atol=1e-5)


def test_a_saved_pitch_model_predicts_new_files(gt_small, gtsinger, tmp_path):
    """The saved config names the pitch stream, so prediction computes it for files it never saw."""
    from model.predict import predict_clips, predict_paths
    from model.runs import train_and_save

    cfg = tiny_config(epochs=1, patience=1, tasks=("style",), model={"pitch": True})
    folder, run, _ = train_and_save(gt_small, cfg, tmp_path / "models", "pitch", progress=False)
    assert run.feature == LOGMEL + "+pitch" and run.audio_dim == 80 + PITCH_DIM
    rows = predict_paths(folder, gtsinger["abs_path"].iloc[0])
    probs = [v for k, v in rows[0].items() if k.startswith("p_style_")]
    assert len(rows) == 1 and len(probs) == 2 and abs(sum(probs) - 1) < 1e-4, rows
    assert len(predict_clips(folder, gt_small)) == len(load_examples(gt_small))
