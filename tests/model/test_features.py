"""Audio features: cached by content + encoder, taken from the dataset's features table when ingest
kept them, else computed with the real bundled Whisper-base encoder."""

import math

import numpy as np

from model.data import load_examples
from model.features import LOGMEL, FeatureStats, WhisperEncoder, clip_audio_16k, clip_features, whisper_key


def test_logmel_is_cached_by_content(gt_small):
    examples = load_examples(gt_small)[:3]
    first, second = FeatureStats(), FeatureStats()
    a = clip_features(examples, LOGMEL, stats=first)
    b = clip_features(examples, LOGMEL, stats=second)
    assert second.cached == 3 and second.computed == 0
    for x, y, e in zip(a, b, examples):
        np.testing.assert_array_equal(x, y)
        seconds = len(clip_audio_16k(e.audio_flac)) / 16000
        assert x.shape[1] == 80 and abs(len(x) - seconds * 25) <= 2


def test_whisper_frames_kept_by_ingest_are_used(gt_small, tmp_dataset):
    examples = load_examples(gt_small)[:2]
    frames = np.arange(10 * 512, dtype=np.float32).reshape(10, 512) / 1000
    tmp_dataset.upsert(
        "features",
        [{"clip_id": examples[0].clip_id, "encoder_model": whisper_key("base"), "n_frames": 10, "dim": 512, "frames": frames.astype("<f2").tobytes()}],
    )
    stats = FeatureStats()
    got = clip_features(examples[:1], whisper_key("base"), dataset=tmp_dataset, stats=stats)
    assert stats.from_dataset == 1 and stats.computed == 0
    np.testing.assert_allclose(got[0], frames.astype(np.float16).astype(np.float32).reshape(5, 2, 512).mean(1), rtol=1e-3)


def test_real_whisper_base_encoder_states():
    """The bundled multilingual base (assembled by pipeline.models_cache), on 3 s of real-ish audio."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    states = WhisperEncoder("base")(audio)
    assert states.shape == (math.ceil(3 * 50) // 2, 512)
    assert np.isfinite(states).all() and states.std() > 0
