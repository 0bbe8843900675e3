"""The linear probe inside the network: untrained, the network is exactly the logistic regression on
pooled features (the Whisper-mean + LR baseline's recipe), and early stopping can keep it."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model.data import encode_labels, label_maps, load_examples
from model.features import clip_features, normalize_features
from model.net import MultiTaskNet
from model.train import fit, fit_probe, pooled_features, predict_proba
from tests.model.conftest import tiny_config


def test_untrained_network_predicts_what_the_probe_does(gt_small):
    examples = load_examples(gt_small)
    cfg = tiny_config()
    maps = label_maps(examples, cfg.tasks)
    ys = encode_labels(examples, maps)
    feats, _ = normalize_features(clip_features(examples), [], "global")
    net = MultiTaskNet(cfg.model, {t: len(maps[t]) for t in cfg.tasks}, feats[0].shape[1], None)
    fit_probe(net, feats, ys, cfg.eval_max_frames)
    got = predict_proba(net, feats, [""] * len(feats), cfg.eval_max_frames, "cpu")
    x = pooled_features(feats, cfg.eval_max_frames)
    for task in cfg.tasks:
        known = ys[task] >= 0
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[known], ys[task][known])
        np.testing.assert_allclose(got[task][known], lr.predict_proba(x[known]), atol=2e-4)


def test_early_stopping_falls_back_to_the_probe(gt_small):
    """With a learning rate that only does harm, no trained epoch beats the probe on validation."""
    examples = load_examples(gt_small)
    cfg = tiny_config(epochs=3, patience=3, lr=5.0)
    maps = label_maps(examples, cfg.tasks)
    ys = encode_labels(examples, maps)
    feats, _ = normalize_features(clip_features(examples), [], "global")
    half = len(examples) // 2
    pack = lambda a, b: (feats[a:b], [""] * (b - a), {t: y[a:b] for t, y in ys.items()})  # noqa: E731
    res = fit(cfg, 0, maps, pack(0, half), pack(half, len(examples)), feats[0].shape[1], None)
    assert res.probe_score is not None
    assert res.best_score >= res.probe_score
    if res.best_epoch == 0:
        assert res.best_score == res.probe_score
