"""Paired bootstrap intervals over clips, resampled within singers.

Two models scored on the same clips differ by less than either's spread over clips: the paired
difference (same resample for both) is what says whether one is better. Clips are resampled within
each singer (every singer keeps its clip count), so the interval reflects which clips a singer sang,
not a different mix of singers; with ~15 test clips it is wide, and that is the point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    known = y >= 0
    return float((y[known] == p[known]).mean()) if known.any() else float("nan")


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Macro-F1 over the classes present in y (as model.evaluate.task_metrics), computed with bincount
    so that thousands of resamples stay fast."""
    known = y >= 0
    y, p = y[known], p[known]
    if not len(y):
        return float("nan")
    k = int(max(y.max(), p.max())) + 1
    tp = np.bincount(y[y == p], minlength=k).astype(float)
    true = np.bincount(y, minlength=k).astype(float)
    pred = np.bincount(p, minlength=k).astype(float)
    present = true > 0
    denom = true + pred
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"accuracy": accuracy, "macro_f1": macro_f1}


def within_group_resamples(groups: Sequence[str], n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) index arrays: each group's members drawn with replacement, group sizes kept."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = np.empty((n_boot, len(groups)), dtype=np.int64)
    for b in range(n_boot):
        out[b] = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
    return out


def paired_bootstrap(
    stat: Callable[[np.ndarray], float], groups: Sequence[str], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """`stat(idx)` is the difference (A − B) on the clips idx; its value on all clips and the percentile
    interval over resamples within groups."""
    n = len(groups)
    point = stat(np.arange(n))
    draws = np.asarray([stat(idx) for idx in within_group_resamples(groups, n_boot, seed)])
    draws = draws[np.isfinite(draws)]
    lo, hi = np.percentile(draws, [100 * (1 - level) / 2, 100 * (1 + level) / 2]) if len(draws) else (np.nan, np.nan)
    return {
        "difference": float(point),
        "low": float(lo),
        "high": float(hi),
        "level": level,
        "n_boot": int(n_boot),
        "n_clips": int(n),
        "n_groups": int(len(set(groups))),
        "includes_zero": bool(lo <= 0 <= hi),
        "resampling": "clips within singers",
    }


def compare_predictions(
    y: np.ndarray, preds_a: Sequence[np.ndarray], preds_b: Sequence[np.ndarray], groups: Sequence[str], metric: str, **kw
) -> dict:
    """A − B for one task, where A and B may each be several seeds' predictions (the statistic is the
    mean over seeds, as the reports' mean ± std): paired over the same clips in every resample."""
    fn = METRICS[metric]
    y = np.asarray(y)

    def stat(idx):
        return float(np.mean([fn(y[idx], p[idx]) for p in preds_a]) - np.mean([fn(y[idx], p[idx]) for p in preds_b]))

    return paired_bootstrap(stat, groups, **kw) | {"metric": metric}


def interval_text(r: dict, digits: int = 3) -> str:
    """`+0.012 [−0.020, +0.045]` and whether the interval includes zero."""
    return f"{r['difference']:+.{digits}f} [{r['low']:+.{digits}f}, {r['high']:+.{digits}f}]" + (
        " (includes 0)" if r["includes_zero"] else ""
    )
