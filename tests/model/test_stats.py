"""Paired bootstrap over clips within singers: what decides promotion and the bench's intervals."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from model.stats import compare_predictions, macro_f1, within_group_resamples


def test_macro_f1_matches_sklearn_over_present_classes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 3, 40), rng.integers(0, 4, 40)
        present = sorted(set(y.tolist()))
        assert macro_f1(y, p) == f1_score(y, p, labels=present, average="macro", zero_division=0)


def test_resamples_stay_within_singers():
    groups = ["a"] * 3 + ["b"] * 5 + ["c"] * 2
    for idx in within_group_resamples(groups, 50, seed=1):
        assert sorted(groups[i] for i in idx) == sorted(groups)


def test_noise_is_not_a_difference_and_a_real_gain_is():
    rng = np.random.default_rng(0)
    singers = [f"s{i // 5}" for i in range(15)]  # 15 clips of 3 singers, as a nightly test set
    y = rng.integers(0, 2, 15)
    a = y.copy()
    a[:5] = 1 - a[:5]  # 10/15 right
    b = y.copy()
    b[3:7] = 1 - b[3:7]  # 11/15 right: higher point score, not evidence
    small = compare_predictions(y, [b], [a], singers, "accuracy")
    assert small["difference"] > 0 and small["includes_zero"]
    big = compare_predictions(np.tile(y, 4), [np.tile(y, 4)], [np.tile(1 - y, 4)], [f"s{i // 6}" for i in range(60)], "accuracy")
    assert big["low"] > 0.9 and not big["includes_zero"]
