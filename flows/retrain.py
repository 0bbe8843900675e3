"""The nightly retrain flow: a challenger trained on the current dataset meets the champion.

Both are scored by the same code on the same held-out singers (the champion's test singers are
reused so scores compare); the challenger is promoted only if strictly better; every decision is
recorded (models/decisions.jsonl, models/<run>/decision.json). `cantolab serve` schedules
`retrain_flow` nightly; run once with `python -m flows.retrain DATASET`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from model.champion import decide, read_champion
from model.config import TrainConfig
from model.runs import new_run_name, train_and_save


@task(name="train-challenger", cache_policy=NO_CACHE, persist_result=False)
def train_challenger(dataset: str, models_dir: str, cfg: TrainConfig, run_name: str):
    folder, run, _ = train_and_save(dataset, cfg, models_dir, run_name, progress=False)
    return str(folder), run.test_examples, run.dataset


@task(name="champion-vs-challenger", cache_policy=NO_CACHE, persist_result=False)
def compare(models_dir: str, challenger_dir: str, test_examples, min_improvement: float, dataset: dict | None = None) -> dict:
    return asdict(decide(models_dir, challenger_dir, test_examples, min_improvement, dataset))


@flow(name="cantolab-retrain")
def retrain_flow(dataset: str, models_dir: str = "models", config: dict | None = None, min_improvement: float = 0.0) -> dict:
    """Train a challenger, compare it with the champion on the same test singers, promote if better."""
    logger = get_run_logger()
    cfg = TrainConfig.from_dict(config)
    champion = read_champion(models_dir)
    if champion:
        cfg = replace(cfg, test_singers=tuple(champion["test_singers"]))
        logger.info("champion %s (score %.4f); challenger is tested on its singers %s", champion["run"], champion["score"], champion["test_singers"])
    folder, test_examples, versions = train_challenger(dataset, models_dir, cfg, new_run_name("challenger"))
    decision = compare(models_dir, folder, test_examples, min_improvement, versions)
    logger.info("%s: %s (%s)", decision["decision"], decision["challenger"], decision["reason"])
    return decision


if __name__ == "__main__":
    print(retrain_flow(sys.argv[1], *(sys.argv[2:3] or [])))
