"""The linear probe: each clip's mean input frame → standardized logistic regression.

One computation behind three things that must agree: the network's probe path (MultiTaskNet.probe,
set by model.train.fit_probe), the probe baseline printed beside every network (report.md, the demo,
bench_accuracy), and the early-stopping guard that decides whether a trained epoch may replace it.
The same pooled features (the network's own standardized input, centre crop of eval_max_frames) and
the same training clips go in, so a network whose early stopping kept the probe predicts exactly what
the baseline predicts.

Early stopping starts from that probe (epoch 0) and keeps a trained epoch only when the paired
bootstrap 95 % interval of (epoch − probe) validation macro-F1, over the validation clips resampled
within singers, lies above zero: on two validation singers a higher point score alone is noise.
The probe is fit on training + validation singers, so it has seen the clips it is compared on: a
bias in its favour, kept on purpose. A cross-fitted comparison (probe fit on training singers only, as the trained path) was
measured and let noise through: on GTSinger leave-one-singer-out 16 % of fits left the probe on
that evidence and the network lost −0.027 [−0.054, −0.007] accuracy to the baseline on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

GUARD_BOOTSTRAP = 1000  # resamples of the validation clips per candidate epoch
GUARD_LEVEL = 0.95  # the bench's paired 95 % interval: its lower end must clear the margin
GUARD_SEED = 0  # the guard's resamples are fixed: the same fit makes the same decision


def pooled_features(feats, max_frames: int | None = None) -> np.ndarray:
    """Each clip's frame mean (centre crop of max_frames, as the network sees at evaluation), float32."""
    if hasattr(feats, "clip_means"):  # a FrameStore: streamed, one clip at a time
        return feats.clip_means(None, max_frames)
    out = []
    for f in feats:
        if max_frames and len(f) > max_frames:
            start = (len(f) - max_frames) // 2
            f = f[start : start + max_frames]
        out.append(np.asarray(f, dtype=np.float32).mean(0))
    return np.stack(out)


@dataclass
class LinearProbe:
    """Per task a linear map on the pooled features as given (standardization folded in): what the
    network's probe layers hold. Logits are computed in float32 by torch, as the network does."""

    weight: dict[str, np.ndarray]  # task → (classes, dim)
    bias: dict[str, np.ndarray]  # task → (classes,)

    def logits(self, x: np.ndarray) -> dict[str, np.ndarray]:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            return {
                t: torch.nn.functional.linear(xt, torch.from_numpy(w).float(), torch.from_numpy(self.bias[t]).float()).numpy()
                for t, w in self.weight.items()
            }

    def probs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {t: torch.softmax(torch.from_numpy(lg), -1).numpy() for t, lg in self.logits(x).items()}

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {t: lg.argmax(1) for t, lg in self.logits(x).items()}


def fit_linear_probe(x: np.ndarray, ys: dict[str, np.ndarray], n_classes: dict[str, int]) -> LinearProbe:
    """StandardScaler + LogisticRegression (L2, C=1, lbfgs: deterministic) per task on the labelled
    rows (y ≥ 0), folded into one linear map. A class absent from training gets a very low bias; one
    class alone is always predicted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    weights, biases = {}, {}
    for task, k in n_classes.items():
        y = np.asarray(ys[task])
        known = y >= 0
        weight = np.zeros((k, x.shape[1]))
        bias = np.full(k, -30.0)
        present = np.unique(y[known])
        if len(present) >= 2:
            scaler = StandardScaler().fit(x[known])
            clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x[known]), y[known])
            coef, inter = clf.coef_, clf.intercept_
            if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: the logit of the second
                coef, inter = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], inter])
            for row, cls in enumerate(clf.classes_):
                w = coef[row] / scaler.scale_
                weight[cls], bias[cls] = w, inter[row] - (w * scaler.mean_).sum()
        elif len(present) == 1:
            bias[present[0]] = 0.0
        weights[task], biases[task] = weight, bias
    return LinearProbe(weights, biases)


def probe_metrics(probe: LinearProbe, x_test: np.ndarray, y_test: dict[str, np.ndarray], maps: dict[str, list[str]]) -> dict:
    """Accuracy and macro-F1 per task of the probe on the test clips (the labelled ones), with the
    model's own metric code (model.evaluate.task_metrics)."""
    from model.evaluate import task_metrics

    pred = probe.predict(x_test)
    out = {}
    for task, p in pred.items():
        m = task_metrics(y_test[task], p, maps[task])
        if m:
            out[task] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return out


def guard_bound(
    y: dict[str, np.ndarray], trained: dict[str, np.ndarray], probe: dict[str, np.ndarray], groups, margin: float = 0.0
) -> dict:
    """Paired bootstrap of (trained − probe) validation macro-F1, mean over tasks, clips resampled within
    singers (GUARD_BOOTSTRAP resamples, fixed seed). `passed`: the lower end of its 95 % interval is above margin."""
    from model.stats import macro_f1, paired_bootstrap

    tasks = [t for t in y if (np.asarray(y[t]) >= 0).any()]

    def stat(idx):
        diffs = [macro_f1(y[t][idx], trained[t][idx]) - macro_f1(y[t][idx], probe[t][idx]) for t in tasks]
        diffs = [d for d in diffs if np.isfinite(d)]
        return float(np.mean(diffs)) if diffs else float("nan")

    r = paired_bootstrap(stat, list(groups), n_boot=GUARD_BOOTSTRAP, seed=GUARD_SEED, level=GUARD_LEVEL)
    return {"difference": r["difference"], "low": r["low"], "high": r["high"], "margin": margin, "passed": bool(r["low"] > margin)}


def fit_probe_for(
    train_feats,
    train_ys: dict[str, np.ndarray],
    val_feats,
    val_ys: dict[str, np.ndarray] | None,
    max_frames: int | None,
    n_classes: dict[str, int],
) -> LinearProbe:
    """The probe of one split: fit on the training and validation clips (every clip outside the test
    singers) — the network's probe path and the probe baseline are this one fit."""
    x = pooled_features(train_feats, max_frames)
    ys = dict(train_ys)
    if val_feats is not None and val_ys is not None and len(val_feats):
        x = np.vstack([x, pooled_features(val_feats, max_frames)])
        ys = {t: np.concatenate([train_ys[t], val_ys[t]]) for t in n_classes}
    return fit_linear_probe(x, ys, n_classes)
