"""Champion vs challenger: both judged by the same code on the same held-out singers.

models/champion.json names the current champion run and its test singers; every decision (promote
or keep, with both scores and the reason) is appended to models/decisions.jsonl and written into
the challenger's folder as decision.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model.checkpoint import CheckpointError, load_run
from model.data import Example, encode_labels
from model.evaluate import task_metrics
from model.predict import predict_examples
from pipeline.errors import InputError
from pipeline.fsio import atomic_write_text

CHAMPION, DECISIONS = "champion.json", "decisions.jsonl"


@dataclass
class Decision:
    challenger: str
    champion: str | None
    decision: str  # promote | keep
    reason: str
    challenger_score: float
    champion_score: float | None
    metric: str = "mean test macro-F1 over tasks"
    test_singers: list[str] = field(default_factory=list)
    n_test_clips: int = 0
    challenger_metrics: dict = field(default_factory=dict)
    champion_metrics: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


def read_champion(models_dir: str | Path) -> dict | None:
    path = Path(models_dir) / CHAMPION
    return json.loads(path.read_text()) if path.exists() else None


def _write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str))


def score_run(run_dir: str | Path, examples: list[Example]) -> tuple[float, dict]:
    """Mean macro-F1 over the tasks the examples are labelled for, with the per-task metrics."""
    model = load_run(run_dir)
    model.check_labels(examples)
    rows = predict_examples(model, examples)
    ys = encode_labels(examples, model.maps)
    metrics = {}
    for task, classes in model.maps.items():
        pred = np.asarray([classes.index(r[task]) for r in rows])
        m = task_metrics(ys[task], pred, classes)
        if m:
            metrics[task] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "majority_rate")}
    if not metrics:
        raise InputError("no test clip carries a label the model predicts; nothing to compare on")
    return float(np.mean([m["macro_f1"] for m in metrics.values()])), metrics


def decide(models_dir: str | Path, challenger_dir: str | Path, test_examples: list[Example], min_improvement: float = 0.0) -> Decision:
    """Promote the challenger only if it beats the champion on the same test clips (strictly)."""
    models_dir, challenger_dir = Path(models_dir), Path(challenger_dir)
    singers = sorted({e.singer for e in test_examples})
    ch_score, ch_metrics = score_run(challenger_dir, test_examples)
    current = read_champion(models_dir)
    base = dict(challenger=challenger_dir.name, challenger_score=ch_score, test_singers=singers, n_test_clips=len(test_examples), challenger_metrics=ch_metrics)
    if current is None:
        d = Decision(champion=None, decision="promote", reason="no champion yet", champion_score=None, **base)
    else:
        try:
            cp_score, cp_metrics = score_run(models_dir / current["run"], test_examples)
        except (CheckpointError, FileNotFoundError) as exc:
            d = Decision(champion=current["run"], decision="promote", reason=f"champion cannot be evaluated on this dataset: {exc}", champion_score=None, **base)
        else:
            better = ch_score > cp_score + min_improvement
            reason = (
                f"challenger {ch_score:.4f} {'>' if better else '<='} champion {cp_score:.4f}"
                + (f" + {min_improvement}" if min_improvement else "")
            )
            d = Decision(champion=current["run"], decision="promote" if better else "keep", reason=reason, champion_score=cp_score, champion_metrics=cp_metrics, **base)
    record(models_dir, challenger_dir, d)
    return d


def record(models_dir: Path, challenger_dir: Path, d: Decision) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(challenger_dir / "decision.json", asdict(d))
    if d.decision == "promote":
        _write_json_atomic(
            models_dir / CHAMPION,
            {"run": d.challenger, "score": d.challenger_score, "metric": d.metric, "test_singers": d.test_singers, "promoted_at": d.at},
        )
    with open(models_dir / DECISIONS, "a") as fh:
        fh.write(json.dumps(asdict(d), default=str) + "\n")
