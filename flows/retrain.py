"""The nightly retrain flow: a challenger trained on the current dataset meets the champion.

Both are scored by the same code on the same held-out singers (the champion's test singers are
reused so scores compare); the challenger is promoted only when the paired bootstrap interval of its
difference to the champion lies above `margin` (model.champion). Every run and decision is logged to
MLflow (model.tracking): the challenger's model version gets the `challenger` alias and, when
promoted, the `champion` alias moves to it; models/champion.json and decisions.jsonl are the local
record beside it. `cantolab serve` schedules `retrain_flow` nightly; run once with
`python -m flows.retrain DATASET [MODELS_DIR]`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_retrain
from model import tracking
from model.champion import decide, read_champion
from model.config import TrainConfig
from model.runs import new_run_name, read_tracking, train_and_save


@task(name="train-challenger", cache_policy=NO_CACHE, persist_result=False)
def train_challenger(dataset: str, models_dir: str, cfg: TrainConfig, run_name: str):
    folder, run, _ = train_and_save(dataset, cfg, models_dir, run_name, progress=False, kind="retrain")
    return str(folder), run.test_examples, run.dataset


@task(name="champion-vs-challenger", cache_policy=NO_CACHE, persist_result=False)
def compare(models_dir: str, challenger_dir: str, test_examples, margin: float, dataset: dict | None = None) -> dict:
    tracked = read_tracking(challenger_dir)
    decision = asdict(decide(models_dir, challenger_dir, test_examples, margin, dataset))
    if tracked and tracking.enabled():
        tracking.set_alias(models_dir, tracking.CHALLENGER_ALIAS, tracked["model_version"])
        if decision["decision"] == "promote":
            tracking.set_alias(models_dir, tracking.CHAMPION_ALIAS, tracked["model_version"])
            folder = Path(models_dir) / decision["promoted_as"]
            tracking.client(models_dir).set_tag(tracked["run_id"], "cantolab.run_folder", str(folder.resolve()))
        tracking.log_decision(models_dir, tracked["run_id"], decision)
        decision["model_version"] = tracked["model_version"]
        decision["mlflow_run_id"] = tracked["run_id"]
    return decision


@flow(name="cantolab-retrain")
def retrain_flow(dataset: str, models_dir: str = "models", config: dict | None = None, margin: float = 0.0) -> dict:
    """Train a challenger, compare it with the champion on the same test singers, promote if the
    interval of the difference lies above `margin`."""
    logger = get_run_logger()
    cfg = TrainConfig.from_dict(config)
    champion = read_champion(models_dir)
    if champion:
        cfg = replace(cfg, test_singers=tuple(champion["test_singers"]))
        logger.info(
            "champion %s (score %.4f); challenger is tested on its singers %s", champion["run"], champion["score"], champion["test_singers"]
        )
    folder, test_examples, versions = train_challenger(dataset, models_dir, cfg, new_run_name("challenger"))
    decision = compare(models_dir, folder, test_examples, margin, versions)
    logger.info("%s: %s (%s)", decision["decision"], decision["challenger"], decision["reason"])
    publish_retrain(decision, str(Path(models_dir).resolve()))  # the summary in the Prefect UI
    return decision


if __name__ == "__main__":
    print(retrain_flow(sys.argv[1], *(sys.argv[2:3] or [])))
