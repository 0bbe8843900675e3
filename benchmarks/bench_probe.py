"""Is the network ever worse than its own linear probe? (`make bench` → bench-results/probe.json)

The same folds and seeds for the network and the baseline (its input features mean-pooled, then
standardized logistic regression, nothing tuned). GTSinger style on frozen Whisper-base states,
leave-one-singer-out and with every singer of a language held out at once (no language shortcut);
RAVDESS 6 emotions and happy vs sad with the log-mel CNN in 3 singer folds, standardized per singer
over all of that singer's clips (transductive: unlabelled test clips shape the statistics) and, as
the inductive figure, with the training singers' statistics only. Each network with the probe path
(`model.probe`, the default) and without it; the paired difference network − baseline with a 95 %
bootstrap interval over clips resampled within singers; per-singer accuracy for every model.
CANTOLAB_BENCH_PROBE_SEEDS=1 runs one seed (a quick look).
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
from model.features import LOGMEL, FeatureStats, clip_features, whisper_key
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


VARIANTS = os.environ.get("CANTOLAB_BENCH_PROBE_VARIANTS", "with_probe,without_probe").split(",")
ROWS = os.environ.get("CANTOLAB_BENCH_PROBE_ROWS", "gtsinger,ravdess").split(",")  # a busy machine can run a part


def run_cvs(examples, feats, cfg, folds) -> dict:
    """The network with and without the probe path on the same folds and seeds."""
    out = {}
    for name, probe in (("with_probe", True), ("without_probe", False)):
        if name not in VARIANTS:
            continue
        t0 = time.perf_counter()
        out[name] = (crossval(examples, feats, with_overrides(cfg, probe=probe), folds=folds), round(time.perf_counter() - t0, 1))
    return out


def compare(
    examples, feats, cvs: dict, folds, task: str, classes: list[str], baseline_name: str, keep: tuple[str, ...] | None = None
) -> dict:
    """Each network vs the baseline (pooled input features + standardized LR) on the same folds; paired
    intervals of network − baseline; per-singer accuracy of every model. With `keep`: only clips
    labelled with those classes, argmax over them (the 6-class models read as happy vs sad)."""
    singers = [e.singer for e in examples]
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(e.labels.get(task), -1) for e in examples])
    pooled = np.asarray([f.mean(0) for f in feats])
    base_pred = np.asarray([index.get(p, -1) for p in baseline_predictions(pooled, examples, task, folds, False)])
    cols = [index[c] for c in keep] if keep else None
    if cols:
        y = np.where(np.isin(y, cols), y, -1)
        base_pred = np.where(np.isin(base_pred, cols), base_pred, -2)  # the baseline's own 6-class call, counted wrong outside keep
    known = y >= 0
    out: dict = {"task": task, "n_clips": int(known.sum()), "n_singers": len({s for s, k in zip(singers, known) if k}), "folds": len(folds)}
    out["majority_rate"] = float(np.bincount(y[known]).max() / known.sum())
    out[baseline_name] = {
        "accuracy": _acc(y, [base_pred]),
        "macro_f1": _f1(y, base_pred),
        "per_singer_accuracy": per_singer_accuracy(y, [base_pred], singers),
    }
    for name, (cv, seconds) in cvs.items():
        preds = []
        for s in cv.config.seeds:
            p = cv.probs[s][task]
            preds.append(np.asarray(cols)[p[:, cols].argmax(1)] if cols else p.argmax(1))
        row = {
            "accuracy": mean_std([_acc(y, [p]) for p in preds]),
            "macro_f1": mean_std([_f1(y, p) for p in preds]),
            "per_singer_accuracy": per_singer_accuracy(y, preds, singers),
            "seconds": seconds,
            "seconds_per_epoch": cv.seconds_per_epoch,
            "mean_epochs": cv.epochs_run,
        }
        for metric in ("accuracy", "macro_f1"):
            row[f"minus_baseline_{metric}"] = compare_predictions(y, preds, [base_pred], singers, metric)
        out[name] = row
    out["baseline"] = baseline_name
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
    r_feats = clip_features(r_ex, LOGMEL, stats=stats) if "ravdess" in ROWS else None
    timings = {"features_s": round(time.perf_counter() - t0, 1), "feature_clips": {"computed": stats.computed, "cached": stats.cached}}
    g_cfg = replace(with_overrides(base_config(), audio_encoder="whisper", encoder="audio"), class_weights=True, seeds=seeds)
    result: dict = {
        "protocol": {
            "gtsinger": "frozen Whisper-base encoder states (25 frames/s), audio-only network, co-attention, class-weighted (the headline's audio model); "
            "baseline Whisper-mean + StandardScaler + LogisticRegression on the same folds",
            "ravdess": "log-mel CNN (the accuracy bench's RAVDESS model), 3 singer folds; baseline log-mel-mean + StandardScaler + LogisticRegression "
            "(the network's own probe; Whisper states for 790 clips did not fit this machine's CPU time)",
            "variants_run": VARIANTS,
            "rows_run": ROWS,
            "probe": "with_probe: pooled input features → logistic regression inside the network, heads zero-started (model.probe, the default)",
            "interval": "paired bootstrap 95 %, 2000 resamples of clips within singers; statistic = mean over seeds − baseline",
            "seeds": list(seeds),
        }
    }
    g_classes = sorted({e.labels["style"] for e in g_ex if e.labels.get("style")})
    t0 = time.perf_counter()
    for name, folds in (
        ("gtsinger_style_loso", singer_folds([e.singer for e in g_ex], None)),
        ("gtsinger_style_language_held_out", language_folds(g_ex)),
    ):
        cvs = run_cvs(g_ex, g_feats, g_cfg, folds)
        result[name] = compare(g_ex, g_feats, cvs, folds, "style", g_classes, "baseline_whisper_mean_logreg")
        write_result("probe", result | {"partial": True, "timings": timings})  # rows as they finish: a long run still leaves figures
    timings["gtsinger_s"] = round(time.perf_counter() - t0, 1)
    r_folds = singer_folds([e.singer for e in r_ex], 3)
    r_classes = sorted(RAVDESS_EMOTIONS)
    t0 = time.perf_counter()
    for norm, label in [] if "ravdess" not in ROWS else (("singer", "transductive"), ("global", "inductive")):
        r_cfg = replace(base_config(), tasks=("emotion",), max_frames=64, feature_norm=norm, seeds=seeds)
        cvs = run_cvs(r_ex, r_feats, r_cfg, r_folds)
        how = ("each test singer standardized over all of that singer's clips (unlabelled test clips shape the statistics: transductive)"
               if norm == "singer" else "standardized with the training singers' statistics only (inductive)")  # fmt: skip
        result[f"ravdess_emotion6_{label}"] = compare(r_ex, r_feats, cvs, r_folds, "emotion", r_classes, "baseline_logmel_mean_logreg") | {
            "feature_norm": how
        }
        result[f"ravdess_happy_vs_sad_{label}"] = compare(
            r_ex, r_feats, cvs, r_folds, "emotion", r_classes, "baseline_logmel_mean_logreg", keep=("happy", "sad")
        )
    timings["ravdess_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s"] = round(time.perf_counter() - t_start, 1)
    result["timings"] = timings
    result["load_average"] = {"before": load_before, "after": load_average(), "cores": os.cpu_count()}
    result["table"] = table(result)
    return write_result("probe", result)


def table(result: dict) -> list[str]:
    lines = []
    for key, row in result.items():
        if not isinstance(row, dict) or "baseline" not in row:
            continue
        b = row[row["baseline"]]
        for name in [v for v in ("with_probe", "without_probe") if v in row]:
            r = row[name]
            lines.append(
                f"{key} {name}: acc {fmt(r['accuracy'])} F1 {fmt(r['macro_f1'])} | Whisper-mean+LR acc {b['accuracy']:.3f} F1 {b['macro_f1']:.3f} "
                f"| Δacc {interval_text(r['minus_baseline_accuracy'])} ΔF1 {interval_text(r['minus_baseline_macro_f1'])} (maj {row['majority_rate']:.3f}, n {row['n_clips']})"
            )
    return lines


if __name__ == "__main__":
    import json

    print(json.dumps(main()["table"], indent=2))
