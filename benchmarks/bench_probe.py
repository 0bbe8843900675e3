"""Is the network ever worse than its own linear probe? (`make bench` → bench-results/probe.json)

Frozen Whisper-base states, the same folds and seeds for the network and the baseline (Whisper-mean +
standardized logistic regression, nothing tuned). Rows: GTSinger style leave-one-singer-out and with
every singer of a language held out at once (no language shortcut), RAVDESS 6 emotions and happy vs
sad in 3 singer folds, each with the probe path (`model.probe`, the default) and without it, the paired
difference network − baseline with a 95 % bootstrap interval over clips resampled within singers, and
per-singer accuracy for every model. RAVDESS is standardized per singer over all of that singer's clips
(transductive: unlabelled test clips shape the statistics) and, as the inductive figure, with training
singers' statistics only. CANTOLAB_BENCH_PROBE_SEEDS=1 runs one seed (a quick look).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.bench_accuracy import RAVDESS_EMOTIONS, base_config, baseline_predictions, build
from benchmarks.common import write_result
from model.controls import language_folds
from model.crossval import crossval, with_overrides
from model.data import load_examples
from model.evaluate import fmt, mean_std
from model.features import FeatureStats, clip_features, whisper_key
from model.splits import singer_folds
from model.stats import compare_predictions, interval_text
from pipeline.data import shared_data_dir


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def per_singer_accuracy(y: np.ndarray, preds: list[np.ndarray], singers: list[str]) -> dict[str, float]:
    singers = np.asarray(singers)
    out = {}
    for s in sorted(set(singers.tolist())):
        m = (singers == s) & (y >= 0)
        if m.any():
            out[s] = round(float(np.mean([(p[m] == y[m]).mean() for p in preds])), 3)
    return out


def compare(examples, feats, cfg, folds, task: str, classes: list[str], keep: tuple[str, ...] | None = None) -> dict:
    """Network (with and without the probe path) vs Whisper-mean + LR on the same folds; paired intervals."""
    singers = [e.singer for e in examples]
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(e.labels.get(task), -1) for e in examples])
    w_mean = np.asarray([f.mean(0) for f in feats])
    base = baseline_predictions(w_mean, examples, task, folds, False)
    base_pred = np.asarray([index.get(p, -1) for p in base])
    cols = None
    if keep:  # restricted: clips labelled with `keep`, argmax over those classes only
        cols = [index[c] for c in keep]
        y = np.where(np.isin(y, cols), y, -1)
    out: dict = {
        "task": task,
        "n_clips": int((y >= 0).sum()),
        "n_singers": len({s for s, v in zip(singers, y) if v >= 0}),
        "folds": len(folds),
    }
    out["majority_rate"] = float(np.bincount(y[y >= 0]).max() / (y >= 0).sum())
    if cols:  # the baseline restricted the same way: refit would change it, so argmax over its own classes only
        base_pred = np.where(np.isin(base_pred, cols), base_pred, -2)
    out["baseline_whisper_mean_logreg"] = {
        "accuracy": _acc(y, [base_pred]),
        "per_singer_accuracy": per_singer_accuracy(y, [base_pred], singers),
    }
    for name, probe in (("with_probe", True), ("without_probe", False)):
        t0 = time.perf_counter()
        cv = crossval(examples, feats, with_overrides(cfg, probe=probe), folds=folds)
        preds = []
        for s in cfg.seeds:
            p = cv.probs[s][task]
            if cols:
                restricted = np.full(len(p), -1)
                restricted[:] = np.asarray(cols)[p[:, cols].argmax(1)]
                preds.append(restricted)
            else:
                preds.append(p.argmax(1))
        row = {
            "accuracy": mean_std([_acc(y, [p]) for p in preds]),
            "macro_f1": mean_std([_f1(y, p) for p in preds]),
            "per_singer_accuracy": per_singer_accuracy(y, preds, singers),
            "seconds": round(time.perf_counter() - t0, 1),
            "seconds_per_epoch": cv.seconds_per_epoch,
            "mean_epochs": cv.epochs_run,
        }
        for metric in ("accuracy", "macro_f1"):
            row[f"minus_baseline_{metric}"] = compare_predictions(y, preds, [base_pred], singers, metric)
        out[name] = row
    out["baseline_whisper_mean_logreg"]["macro_f1"] = _f1(y, base_pred)
    return out


def _acc(y, preds) -> float:
    k = y >= 0
    return float(np.mean([(p[k] == y[k]).mean() for p in preds]))


def _f1(y, p) -> float:
    from model.stats import macro_f1

    return macro_f1(y, np.where(p < 0, y.max() + 1, p))


def main() -> dict:
    data = shared_data_dir()
    if data is None:
        return write_result("probe", {"skipped": "reference recordings absent: set CANTOLAB_DATA"})
    t_start = time.perf_counter()
    load_before = load_average()
    work = Path(os.environ.get("CANTOLAB_BENCH_WORK") or tempfile.mkdtemp(prefix="cantolab-bench-"))
    seeds = tuple(range(int(os.environ.get("CANTOLAB_BENCH_PROBE_SEEDS", "3"))))
    g_ex = load_examples(build(work / "gtsinger", "gtsinger"))
    r_ex = load_examples(build(work / "ravdess", "ravdess_song"), ("emotion",), {"emotion": RAVDESS_EMOTIONS})
    stats = FeatureStats()
    t0 = time.perf_counter()
    g_feats = clip_features(g_ex, whisper_key("base"), stats=stats)
    r_feats = clip_features(r_ex, whisper_key("base"), stats=stats)
    timings = {"whisper_s": round(time.perf_counter() - t0, 1), "whisper_clips": {"computed": stats.computed, "cached": stats.cached}}
    cfg = replace(with_overrides(base_config(), audio_encoder="whisper", encoder="audio"), class_weights=True, seeds=seeds)
    result: dict = {
        "protocol": {
            "features": "frozen Whisper-base encoder states (25 frames/s), cached per clip",
            "network": "audio-only, co-attention, class-weighted (the headline's audio model); probe = pooled states → LR inside the network",
            "baseline": "Whisper-mean + StandardScaler + LogisticRegression, same folds",
            "interval": "paired bootstrap 95 %, 2000 resamples of clips within singers; statistic = mean over seeds − baseline",
            "seeds": list(seeds),
        }
    }
    g_classes = sorted({e.labels["style"] for e in g_ex if e.labels.get("style")})
    loso = singer_folds([e.singer for e in g_ex], None)
    t0 = time.perf_counter()
    result["gtsinger_style_loso"] = compare(g_ex, g_feats, cfg, loso, "style", g_classes)
    result["gtsinger_style_language_held_out"] = compare(g_ex, g_feats, cfg, language_folds(g_ex), "style", g_classes)
    timings["gtsinger_s"] = round(time.perf_counter() - t0, 1)
    r_folds = singer_folds([e.singer for e in r_ex], 3)
    r_classes = sorted(RAVDESS_EMOTIONS)
    t0 = time.perf_counter()
    for norm, label in (("singer", "transductive"), ("global", "inductive")):
        r_cfg = replace(cfg, tasks=("emotion",), max_frames=64, feature_norm=norm, class_weights=False)
        result[f"ravdess_emotion6_{label}"] = compare(r_ex, r_feats, r_cfg, r_folds, "emotion", r_classes) | {
            "feature_norm": f"{norm}: "
            + (
                "each test singer standardized over all of that singer's clips (unlabelled, transductive)"
                if norm == "singer"
                else "statistics of the training singers only (inductive)"
            )
        }
    r_cfg = replace(cfg, tasks=("emotion",), max_frames=64, feature_norm="singer", class_weights=False)
    result["ravdess_happy_vs_sad_transductive"] = compare(r_ex, r_feats, r_cfg, r_folds, "emotion", r_classes, keep=("happy", "sad"))
    timings["ravdess_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - t_start, 1)
    result["timings"] = timings
    result["load_average"] = {"before": load_before, "after": load_average(), "cores": os.cpu_count()}
    result["table"] = table(result)
    return write_result("probe", result)


def table(result: dict) -> list[str]:
    lines = []
    for key, row in result.items():
        if not isinstance(row, dict) or "with_probe" not in row:
            continue
        b = row["baseline_whisper_mean_logreg"]
        for name in ("with_probe", "without_probe"):
            r = row[name]
            lines.append(
                f"{key} {name}: acc {fmt(r['accuracy'])} F1 {fmt(r['macro_f1'])} | Whisper-mean+LR acc {b['accuracy']:.3f} F1 {b['macro_f1']:.3f} "
                f"| Δacc {interval_text(r['minus_baseline_accuracy'])} ΔF1 {interval_text(r['minus_baseline_macro_f1'])} (maj {row['majority_rate']:.3f}, n {row['n_clips']})"
            )
    return lines


if __name__ == "__main__":
    import json

    print(json.dumps(main()["table"], indent=2))
