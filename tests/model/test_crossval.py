"""Leave-singers-out cross-validation on real clips: every singer tested once, never trained on."""

from __future__ import annotations

import numpy as np

from model.controls import language_folds
from model.crossval import crossval
from model.data import load_examples
from model.features import clip_features
from tests.model.conftest import tiny_config


def test_every_singer_is_tested_once_by_a_model_that_never_heard_them(gt_small):
    examples = load_examples(gt_small)
    feats = clip_features(examples)
    folds = [[s] for s in sorted({e.singer for e in examples})]
    fitted: list = []
    cv = crossval(examples, feats, tiny_config(epochs=2, patience=2, seeds=(0, 1), tasks=("style",)), folds=folds, on_fit=fitted.append)
    assert len(fitted) == len(folds) * 2 and fitted == cv.fits
    singer_of = {e.clip_id: e.singer for e in examples}
    for seed in (0, 1):
        tested = []
        for rec in (r for r in cv.fits if r.seed == seed):
            test_singers = {singer_of[c] for c in rec.test}
            assert test_singers == set(folds[rec.fold])
            seen = {singer_of[c] for c in rec.train} | {singer_of[c] for c in rec.validation}
            assert not test_singers & seen, (rec.fold, seed, test_singers & seen)  # no test singer's clip in training
            assert rec.train and not set(rec.test) & (set(rec.train) | set(rec.validation))
            tested += rec.test
        assert sorted(tested) == sorted(singer_of)  # each clip tested exactly once per seed
    for seed in (0, 1):
        probs = cv.probs[seed]["style"]
        assert probs.shape == (len(examples), 2)
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)  # every clip got a held-out prediction
    s = cv.summary["style"]
    assert s["n"] == len(examples) and 0.0 <= s["accuracy"]["mean"] <= 1.0 and s["accuracy"]["n"] == 2
    assert s["majority_rate"] >= 0.5


def test_language_folds_hold_out_all_singers_of_a_language(gt_small):
    examples = load_examples(gt_small)
    folds = language_folds(examples)
    lang_of = {e.singer: e.language for e in examples}
    assert sorted(s for f in folds for s in f) == sorted(lang_of)
    for fold in folds:
        assert len({lang_of[s] for s in fold}) == 1
    assert len(folds) == len(set(lang_of.values()))
