"""Metrics that keep results honest: accuracy and macro-F1 beside the majority-class rate."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict | None:
    """Metrics over clips with a known label; None when the evaluated set has none."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    known = y_true >= 0
    if not known.any():
        return None
    t, p = y_true[known], y_pred[known]
    labels = list(range(len(classes)))
    counts = np.bincount(t, minlength=len(classes))
    recalls = recall_score(t, p, labels=labels, average=None, zero_division=0)
    present = [i for i in labels if counts[i] > 0]
    rare = min(present, key=lambda i: (counts[i], i))
    return {
        "n": int(known.sum()),
        "accuracy": float((t == p).mean()),
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "majority_rate": float(counts.max() / counts.sum()),
        "majority_class": classes[int(counts.argmax())],
        "per_class_recall": {classes[i]: float(recalls[i]) for i in present},
        "rare_class": classes[rare],
        "rare_class_recall": float(recalls[rare]),
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
        "classes": classes,
    }


def mean_std(values: list[float]) -> dict:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=0)), "n": int(arr.size)}


def aggregate(per_seed: list[dict], tasks) -> dict:
    """mean ± std over seeds of each task's accuracy, macro-F1 and rare-class recall."""
    out = {}
    for task in tasks:
        runs = [m[task] for m in per_seed if m.get(task)]
        if not runs:
            continue
        out[task] = {key: mean_std([r[key] for r in runs]) for key in ("accuracy", "macro_f1", "rare_class_recall")} | {
            "majority_rate": runs[0]["majority_rate"],
            "n": runs[0]["n"],
            "seeds": len(runs),
        }
    return out


def fmt(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
