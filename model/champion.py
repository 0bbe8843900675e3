"""Champion vs challenger: both judged by the same code on the same held-out singers, and promoted
only when the difference is more than noise.

The score is the saved model's mean test macro-F1 over tasks (the number report.md shows). The
challenger is promoted only when the paired bootstrap 95 % interval of challenger − champion, over
the same test clips resampled within singers, lies above `margin` (default 0): on ~15 clips a higher
point score alone is not evidence. models/champion.json names the champion's folder (given a
champion's name on promotion) and its test singers; every decision is appended to
models/decisions.jsonl, written as decision.json in the challenger's folder, and logged to MLflow
(model.tracking) where the `champion` alias moves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model.checkpoint import CheckpointError, load_run
from model.data import Example, encode_labels
from model.evaluate import task_metrics
from model.predict import predict_examples
from model.stats import macro_f1, paired_bootstrap
from pipeline.errors import InputError
from pipeline.fsio import atomic_write_text

CHAMPION, DECISIONS = "champion.json", "decisions.jsonl"
METRIC = "saved model's mean test macro-F1 over tasks"


@dataclass
class Decision:
    challenger: str
    champion: str | None
    decision: str  # promote | keep
    reason: str
    challenger_score: float
    champion_score: float | None
    metric: str = METRIC
    margin: float = 0.0
    interval: dict = field(default_factory=dict)  # paired bootstrap of challenger − champion
    promoted_as: str | None = None  # the champion's folder name after promotion
    test_singers: list[str] = field(default_factory=list)
    n_test_clips: int = 0
    challenger_metrics: dict = field(default_factory=dict)
    champion_metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # {"uri", "versions"}: the data both were scored on
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def read_champion(models_dir: str | Path) -> dict | None:
    path = Path(models_dir) / CHAMPION
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class Scored:
    score: float
    metrics: dict
    y: dict[str, np.ndarray]  # task → true class index (-1 unknown), in the model's class order
    pred: dict[str, np.ndarray]


def score_run(run_dir: str | Path, examples: list[Example]) -> Scored:
    """Mean macro-F1 over the tasks the examples are labelled for, per-task metrics and per-clip predictions."""
    model = load_run(run_dir)
    model.check_labels(examples)
    rows = predict_examples(model, examples)
    ys = encode_labels(examples, model.maps)
    metrics, y, pred = {}, {}, {}
    for task, classes in model.maps.items():
        p = np.asarray([classes.index(r[task]) for r in rows])
        m = task_metrics(ys[task], p, classes)
        if m:
            metrics[task] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "majority_rate")}
            y[task], pred[task] = ys[task], p
    if not metrics:
        raise InputError("no test clip carries a label the model predicts; nothing to compare on")
    return Scored(float(np.mean([m["macro_f1"] for m in metrics.values()])), metrics, y, pred)


def score_difference(challenger: Scored, champion: Scored, examples: list[Example], n_boot: int = 2000) -> dict:
    """Paired bootstrap of challenger − champion (mean macro-F1 over the tasks both can be scored on)."""
    tasks = [t for t in challenger.y if t in champion.y]
    if not tasks:
        raise InputError("champion and challenger share no task with test labels")

    def stat(idx):
        return float(np.mean([macro_f1(challenger.y[t][idx], challenger.pred[t][idx]) for t in tasks])
                     - np.mean([macro_f1(champion.y[t][idx], champion.pred[t][idx]) for t in tasks]))  # fmt: skip

    return paired_bootstrap(stat, [e.singer for e in examples], n_boot=n_boot) | {"tasks": tasks}


def decide(
    models_dir: str | Path, challenger_dir: str | Path, test_examples: list[Example], margin: float = 0.0, dataset: dict | None = None
) -> Decision:
    """Promote the challenger only if the interval of its difference to the champion lies above `margin`."""
    models_dir, challenger_dir = Path(models_dir), Path(challenger_dir)
    singers = sorted({e.singer for e in test_examples})
    ch = score_run(challenger_dir, test_examples)
    current = read_champion(models_dir)
    base = dict(challenger=challenger_dir.name, challenger_score=ch.score, test_singers=singers, n_test_clips=len(test_examples),
                challenger_metrics=ch.metrics, margin=margin, dataset=dataset or {})  # fmt: skip
    if current is None:
        d = Decision(champion=None, decision="promote", reason="no champion yet", champion_score=None, **base)
    else:
        try:
            cp = score_run(models_dir / current["run"], test_examples)
        except (CheckpointError, FileNotFoundError) as exc:
            d = Decision(
                champion=current["run"],
                decision="promote",
                reason=f"champion cannot be evaluated on this dataset: {exc}",
                champion_score=None,
                **base,
            )
        else:
            iv = score_difference(ch, cp, test_examples)
            better = iv["low"] > margin
            reason = (
                f"challenger {ch.score:.4f} vs champion {cp.score:.4f}: difference {iv['difference']:+.4f}, 95% interval "
                f"[{iv['low']:+.4f}, {iv['high']:+.4f}] over {iv['n_clips']} clips of {iv['n_groups']} singers "
                + (f"lies above {margin:g}" if better else f"does not lie above {margin:g}: kept")
            )
            d = Decision(champion=current["run"], decision="promote" if better else "keep", reason=reason, champion_score=cp.score,
                         champion_metrics=cp.metrics, interval=iv, **base)  # fmt: skip
    record(models_dir, challenger_dir, d)
    return d


def champion_name(challenger: str) -> str:
    """challenger-<UTC>-<hex> → champion-<UTC>-<hex>: the promoted model carries a champion's name."""
    stem = challenger.split("-", 1)[1] if challenger.startswith(("challenger-", "run-")) else challenger
    return f"champion-{stem}"


def record(models_dir: Path, challenger_dir: Path, d: Decision) -> Path:
    """Write the decision; on promotion rename the folder to a champion's name and point champion.json at it.
    Returns the challenger's folder as it is now."""
    models_dir.mkdir(parents=True, exist_ok=True)
    folder = challenger_dir
    if d.decision == "promote":
        d.promoted_as = champion_name(challenger_dir.name)
        folder = challenger_dir.with_name(d.promoted_as)
        challenger_dir.rename(folder)
    atomic_write_text(folder / "decision.json", json.dumps(asdict(d), indent=2, default=str))
    if d.decision == "promote":
        atomic_write_text(
            models_dir / CHAMPION,
            json.dumps(
                {
                    "run": d.promoted_as,
                    "trained_as": d.challenger,
                    "score": d.challenger_score,
                    "metric": d.metric,
                    "test_singers": d.test_singers,
                    "promoted_at": d.at,
                },
                indent=2,
            ),  # fmt: skip
        )
    with open(models_dir / DECISIONS, "a") as fh:
        fh.write(json.dumps(asdict(d), default=str) + "\n")
    return folder
