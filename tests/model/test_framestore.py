"""The on-disk feature store training reads per batch (model.framestore)."""

from __future__ import annotations

import numpy as np
import pytest

from model.framestore import FrameStore
from model.train import fit
from tests.model.conftest import tiny_config


def test_store_reads_back_what_was_written_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((n, 8)).astype(np.float16) for n in (5, 1, 12, 7, 9, 3, 6, 4)]
    store = FrameStore.write(tmp_path / "s", iter(clips), sum(len(c) for c in clips), 8)
    assert len(store) == len(clips)
    for a, b in zip(clips, store):
        np.testing.assert_array_equal(a.astype(np.float32), b)
    mean, std = store.statistics()
    stacked = np.concatenate(clips).astype(np.float64)
    np.testing.assert_allclose(mean, stacked.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, stacked.std(0) + 1e-5, rtol=1e-4)
    normed = store.standardized(mean, std)
    np.testing.assert_allclose(normed[2], (clips[2].astype(np.float32) - mean) / std, rtol=1e-5)
    assert [len(f) for f in normed.subset([3, 0])] == [7, 5]
    ys = {"style": np.array([0, 1] * 4), "emotion": np.array([0, 1, 1, 0] * 2)}
    res = fit(tiny_config(epochs=2), 0, {"style": ["a", "b"], "emotion": ["c", "d"]}, (normed, [""] * 8, ys), None, 8, None)
    assert len(res.history) == 2 and np.isfinite(res.history[-1]["train_loss"])


def _clips(rng, dim=8):
    return [rng.standard_normal((n, dim)).astype(np.float16) for n in (5, 1, 12, 7, 9, 3, 6, 4)]


@pytest.mark.parametrize("mode", ["global", "singer", "clip", "none"])
def test_normalized_store_reads_what_normalize_features_gives(tmp_path, mode):
    from model.features import normalize_features

    clips = _clips(np.random.default_rng(1))
    store = FrameStore.write(tmp_path / "s", iter(clips))  # no total given: the header is written last
    singers = ["a", "b", "a", "c", "b", "a", "c", "c"]
    as_f32 = [c.astype(np.float32) for c in clips]
    _, ref = normalize_features(as_f32[:5], [], "global")
    want, _ = normalize_features(as_f32, singers, mode, ref)
    got = store.normalized(mode, singers, store.statistics(range(5)))
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[i], w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.window(i, 1, 3), w[1:4], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.subset([6, 2]).clip_means(), np.stack([want[6].mean(0), want[2].mean(0)]), rtol=1e-4, atol=1e-4)


def test_a_batch_from_the_store_equals_one_from_arrays(tmp_path):
    """make_batch reads only each crop's frames from a store; the batch (crops, padding, mask) is the same."""
    from model.train import make_batch

    clips = _clips(np.random.default_rng(2))
    store = FrameStore.write(tmp_path / "s", iter(clips)).subset(range(8))
    arrays = [c.astype(np.float32) for c in clips]
    idx = np.array([2, 0, 4, 1])
    for rng_seed in (None, 5):
        rngs = [np.random.default_rng(rng_seed) if rng_seed is not None else None for _ in range(2)]
        a = make_batch(arrays, [""] * 8, {}, idx, 6, "cpu", rngs[0])
        b = make_batch(store, [""] * 8, {}, idx, 6, "cpu", rngs[1])
        assert a.audio.shape == (4, 6, 8)
        np.testing.assert_array_equal(a.audio.numpy(), b.audio.numpy())
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())


def test_a_wrong_width_is_refused_and_leaves_no_store(tmp_path):
    clips = [np.zeros((3, 8), np.float16), np.zeros((2, 7), np.float16)]
    with pytest.raises(ValueError, match=r"clip 1.*\(n, 8\)"):
        FrameStore.write(tmp_path / "s", iter(clips))
    assert not (tmp_path / "s" / "frames.npy").exists()
