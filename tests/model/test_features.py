"""Audio features: cached by content + encoder, taken from the dataset's features table when ingest
kept them, else computed with the real bundled Whisper-base encoder."""

import math

import numpy as np
import pytest

from model.data import load_examples
from model.features import LOGMEL, FeatureStats, WhisperEncoder, clip_audio_16k, clip_features, parse_whisper_key, whisper_key


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
        [
            {
                "clip_id": examples[0].clip_id,
                "encoder_model": whisper_key("base"),
                "n_frames": 10,
                "dim": 512,
                "frames": frames.astype("<f2").tobytes(),
            }
        ],
    )
    stats = FeatureStats()
    got = clip_features(examples[:1], whisper_key("base"), dataset=tmp_dataset, stats=stats)
    assert stats.from_dataset == 1 and stats.computed == 0
    np.testing.assert_allclose(got[0], frames.astype(np.float16).astype(np.float32).reshape(5, 2, 512).mean(1), rtol=1e-3)


def test_feature_store_streams_kept_and_cached_clips_in_example_order_and_is_reused(gt_small, tmp_dataset):
    """train_run's path: a FrameStore built from the features table (record batches) and the per-clip
    cache, read back in the examples' order; a second run on the same clips opens it again."""
    from model.features import feature_store

    examples = load_examples(gt_small)[:3]
    frames = np.arange(8 * 512, dtype=np.float32).reshape(8, 512) / 1000
    kept = {"clip_id": examples[1].clip_id, "encoder_model": whisper_key("base"), "n_frames": 8, "dim": 512}
    tmp_dataset.upsert("features", [kept | {"frames": frames.astype("<f2").tobytes()}])
    want = clip_features(examples, whisper_key("base"), dataset=tmp_dataset)
    first, again = FeatureStats(), FeatureStats()
    store = feature_store(examples, whisper_key("base"), dataset=tmp_dataset, stats=first)
    assert first.from_dataset == 1 and first.cached == 2 and len(store) == 3
    for got, w in zip(store, want):
        np.testing.assert_array_equal(got, w.astype(np.float16).astype(np.float32))
    reused = feature_store(examples, whisper_key("base"), dataset=tmp_dataset, stats=again)
    assert reused.store.folder == store.store.folder and again.from_dataset == again.computed == 0
    np.testing.assert_array_equal(reused[1], store[1])
    other = feature_store(examples[:2], whisper_key("base"), dataset=tmp_dataset)
    assert other.store.folder != store.store.folder and len(other) == 2


def test_real_whisper_base_encoder_states():
    """The bundled multilingual base (assembled by pipeline.models_cache), on 3 s of real-ish audio."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    states = WhisperEncoder("base")(audio)
    assert states.shape == (math.ceil(3 * 50) // 2, 512)
    assert np.isfinite(states).all() and states.std() > 0


def test_tuned_blocks_start_as_whispers_own():
    """States below the top 2 blocks, through WhisperTuned's copies of them, equal the whole encoder's
    output: the tuned model starts from Whisper, not from a re-implementation that drifts."""
    import torch

    from model.encoders import WhisperTuned

    rng = np.random.default_rng(1)
    t = np.arange(4 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    whole = WhisperEncoder("base").states(audio)
    below = WhisperEncoder("base", below_top=2).states(audio).clone()
    assert (below - whole).abs().max() > 1.0  # really the states of a lower block
    tuned = WhisperTuned("base", 2, 16, 0.0).eval()
    with torch.no_grad():
        x = below[None]
        for block in tuned.blocks:
            x = block(x, torch.ones(1, x.shape[1], dtype=torch.bool))
        torch.testing.assert_close(tuned.ln_post(x)[0], whole, atol=1e-4, rtol=1e-4)


def test_states_below_the_top_blocks_are_cached_under_their_own_key(gt_small, tmp_path, monkeypatch):
    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path))  # its own cache: other tests fill the shared one
    examples = load_examples(gt_small)[:2]
    key = whisper_key("base", 1)
    assert key != whisper_key("base") and parse_whisper_key(key) == ("base", 1)
    stats = FeatureStats()
    first = clip_features(examples, key, stats=stats)
    again = clip_features(examples, key, stats=stats)
    assert (stats.computed, stats.cached) == (2, 2)
    assert all(f.shape[1] == 512 and np.array_equal(f, g) for f, g in zip(first, again))


def test_a_whisper_model_cannot_tune_more_blocks_than_it_has():
    with pytest.raises(ValueError, match="has 6 encoder blocks"):
        WhisperEncoder("base", below_top=7)


def test_openai_whisper_encoder_features_match_the_frames_ingest_stores(gtsinger, tmp_dataset, monkeypatch, tmp_path):
    """The same clip's features two ways: the faster-whisper frames ingest keeps (int8, its default)
    and the openai-whisper encoder the model computes when none are kept (float32, same weights).
    Measured on this clip: same 189 frames, relative error 0.12, mean per-frame cosine 0.992; the
    same features one pooled frame (40 ms) out of step are 0.46 apart, half a frame 0.30."""
    from model.data import Example
    from pipeline.audio import sha256_file
    from pipeline.ingest import IngestSettings, TakeSource, process_take

    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "features"))
    row = gtsinger[gtsinger.path == "audio/EN-Alto-2-Vibrato-Vibrato-bBC73SBE.flac"].iloc[0]
    source = TakeSource(row.abs_path, row.abs_path, {"session": "s", "singer": row.singer, "language": "en"})
    rows = process_take(source, sha256_file(row.abs_path), IngestSettings.from_dict({"model": "base", "transcribe": {"beam_size": 1}}))
    assert len(rows.clips) == len(rows.features) == 1
    tmp_dataset.upsert("clips", rows.clips)
    tmp_dataset.upsert("features", rows.features)
    examples = [Example(c["clip_id"], row.singer, c["audio_flac"]) for c in rows.clips]
    kept, computed = FeatureStats(), FeatureStats()
    (stored,) = clip_features(examples, whisper_key("base"), dataset=tmp_dataset, stats=kept)
    (encoded,) = clip_features(examples, whisper_key("base"), stats=computed)
    assert kept.from_dataset == 1 and computed.computed == 1
    assert stored.shape == encoded.shape and stored.shape[1] == 512
    rel = np.linalg.norm(stored - encoded) / np.linalg.norm(encoded)
    cos = (stored * encoded).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(encoded, axis=1)
    assert rel < 0.2 and cos.mean() > 0.97, (rel, cos.mean())
    out_of_step = np.linalg.norm(stored[1:] - encoded[:-1]) / np.linalg.norm(encoded[:-1])
    assert out_of_step > 2 * rel, out_of_step


def test_lazy_examples_hold_no_audio_and_features_come_from_streamed_audio(gt_small, tmp_path, monkeypatch):
    """train_run's examples: FLAC read a batch at a time to key each clip, and again to compute the
    features a fresh cache lacks; the same keys and features as examples that hold their audio."""
    from model.features import feature_store

    eager = load_examples(gt_small)[:4]
    lazy = load_examples(gt_small, lazy_audio=True)[:4]
    assert [e.clip_id for e in lazy] == [e.clip_id for e in eager] and all(e.audio_flac is None for e in lazy)
    assert [e.content_key for e in lazy] == [e.content_key for e in eager]
    assert lazy[0].audio() == eager[0].audio_flac
    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "fresh"))
    stats = FeatureStats()
    store = feature_store(lazy, LOGMEL, stats=stats)
    assert stats.computed == 4 and stats.cached == 0
    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "fresh-again"))
    listed = FeatureStats()
    assert all(e.audio_flac is None for e in lazy[:2])
    assert [len(f) for f in clip_features(lazy[:2], LOGMEL, stats=listed)] == [len(store[0]), len(store[1])]
    assert listed.computed == 2 and listed.cached == 0
    for got, want in zip(store, clip_features(eager, LOGMEL)):
        np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
