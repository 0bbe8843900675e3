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

import contextlib
import os
import sys
from collections.abc import Iterator
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


def is_object_store(models_dir: str) -> bool:
    return str(models_dir).startswith(("s3://", "s3a://"))


@contextlib.contextmanager
def local_models(models_dir: str) -> Iterator[str]:
    """The models folder to work in: a path as is; an `s3://` prefix mirrored to a local cache
    (`$CANTOLAB_MODELS_CACHE`, default `~/.cache/cantolab/retrain`, one folder per bucket and prefix)
    and, when the run succeeds, what it wrote or changed uploaded back (run folder, champion.json,
    decisions.jsonl, the MLflow store). The retrain deployment runs one at a time, so two runs never
    race on the prefix; a failed run uploads nothing."""
    if not is_object_store(models_dir):
        yield models_dir
        return
    from pipeline.objectstore import mirror_prefix, upload_changed

    root = Path(os.environ.get("CANTOLAB_MODELS_CACHE") or Path.home() / ".cache" / "cantolab" / "retrain")
    local = mirror_prefix(models_dir, root / models_dir.split("://", 1)[1].strip("/"), allow_missing=True)
    yield str(local)
    sent = upload_changed(local, models_dir)
    get_run_logger().info("models folder: %d file(s) uploaded to %s", len(sent), models_dir)


@flow(name="cantolab-retrain")
def retrain_flow(dataset: str, models_dir: str = "models", config: dict | None = None, margin: float = 0.0) -> dict:
    """Train a challenger, compare it with the champion on the same test singers, promote if the
    interval of the difference lies above `margin`. `models_dir`: a folder or an `s3://` prefix."""
    with local_models(models_dir) as local:
        decision = _retrain(dataset, local, config, margin)
    where = models_dir if is_object_store(models_dir) else str(Path(models_dir).resolve())
    publish_retrain(decision, where)  # the summary in the Prefect UI
    return decision


def _retrain(dataset: str, models_dir: str, config: dict | None, margin: float) -> dict:
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
    return decision


if __name__ == "__main__":
    print(retrain_flow(sys.argv[1], *(sys.argv[2:3] or [])))
