"""The on-disk feature store training reads per batch (model.framestore)."""

from __future__ import annotations

import numpy as np

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
