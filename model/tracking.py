"""Experiment tracking with MLflow: every training run and every retrain decision, in one record.

A run logs its config (flattened params), per-seed and mean ± std test metrics, the saved model's own
test score (the number promotion uses), per-epoch training curves, the dataset and the versions of
its tables it read, and the run folder (weights, report.md, plots) as artifacts. The folder is
registered as a version of `cantolab-style-emotion`; the retrain flow gives it the `challenger` alias
and, when promoted, moves `champion` to it.

Where: `MLFLOW_TRACKING_URI` (a server, e.g. http://127.0.0.1:5000) or, by default, a local store
under the models folder (`<models>/mlflow.db`, artifacts in `<models>/mlartifacts`).
`CANTOLAB_TRACKING=off` turns tracking off (the run folder is still written).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REGISTERED_MODEL = "cantolab-style-emotion"
EXPERIMENT = "cantolab"
CHAMPION_ALIAS, CHALLENGER_ALIAS = "champion", "challenger"


@dataclass
class Tracked:
    run_id: str
    model_version: str
    tracking_uri: str


def enabled() -> bool:
    return os.environ.get("CANTOLAB_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def tracking_uri(models_dir: str | Path) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(models_dir).resolve() / 'mlflow.db')}"


def client(models_dir: str | Path):
    """An MlflowClient on the tracking store (and the same store as the model registry)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from mlflow import MlflowClient

    uri = tracking_uri(models_dir)
    if uri.startswith("sqlite:///"):
        Path(models_dir).mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(c, models_dir: str | Path) -> str:
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri(models_dir).startswith("sqlite:///"):  # local store: artifacts beside the database, not in ./mlruns
        location = (Path(models_dir).resolve() / "mlartifacts").as_uri()
    try:
        return c.create_experiment(EXPERIMENT, artifact_location=location)
    except Exception:  # created meanwhile by another process
        return c.get_experiment_by_name(EXPERIMENT).experiment_id


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = str(list(v) if isinstance(v, tuple) else v)[:6000]
    return out


def dataset_versions(dataset) -> dict[str, str]:
    """The version of each table the run read, as the dataset exposes it (Delta Lake versions once the
    dataset store has them; until then the Parquet store's newest part per table)."""
    if dataset is None:
        return {}
    for attr in ("versions", "table_versions"):
        fn = getattr(dataset, attr, None)
        if callable(fn):
            try:
                return {str(k): str(v) for k, v in dict(fn()).items()}
            except Exception as exc:  # a dataset API that differs: record nothing rather than fail a trained run
                log.warning("dataset versions unavailable (%s)", exc)
    out = {}
    for table in ("clips", "labels", "takes", "features"):
        try:
            if hasattr(dataset, "version"):
                out[table] = str(dataset.version(table))
            elif dataset.exists(table):
                parts = dataset._parts(table)  # Parquet store: (sequence, path) per part
                out[table] = f"parts:{len(parts)},newest:{max(p[0] for p in parts) if parts else 0}"
        except Exception:  # noqa: S112 - a table the store cannot describe is left out
            continue
    return out


def metric_items(metrics: dict, run) -> list[tuple[str, float, int]]:
    """(key, value, step) for per-seed metrics (step = seed), their mean and std, the saved model's
    score, and per-epoch curves (step = epoch)."""
    items = []
    for row in metrics.get("per_seed", []):
        seed = int(row["seed"])
        for task, m in row.items():
            if isinstance(m, dict):
                for key in ("accuracy", "macro_f1", "rare_class_recall"):
                    items.append((f"test.{task}.{key}", float(m[key]), seed))
                    items.append((f"seed{seed}.test.{task}.{key}", float(m[key]), 0))
    for task, s in metrics.get("summary", {}).items():
        for key in ("accuracy", "macro_f1", "rare_class_recall"):
            if s[key]["mean"] is not None:
                items.append((f"test.{task}.{key}.mean", float(s[key]["mean"]), 0))
                items.append((f"test.{task}.{key}.std", float(s[key]["std"]), 0))
        items.append((f"test.{task}.majority_rate", float(s["majority_rate"]), 0))
    saved = metrics.get("saved_model", {})
    if saved.get("score") is not None:
        items.append(("saved_model.score", float(saved["score"]), 0))
    for task, m in saved.get("tasks", {}).items():
        items.append((f"saved_model.{task}.macro_f1", float(m["macro_f1"]), 0))
        items.append((f"saved_model.{task}.accuracy", float(m["accuracy"]), 0))
    for seed, hist in (getattr(run, "histories", None) or {}).items():
        for h in hist:
            for key in ("train_loss", "val_macro_f1"):
                v = h.get(key)
                if v is not None and v == v:
                    items.append((f"seed{seed}.{key}", float(v), int(h["epoch"])))
    return items


def log_training(folder: Path, run, metrics: dict, dataset, models_dir: str | Path, kind: str = "train") -> Tracked | None:
    """One MLflow run for a saved run folder, and a registered model version of it."""
    if not enabled():
        return None
    import time

    from mlflow.entities import Metric, Param, RunTag

    c = client(models_dir)
    exp = _experiment_id(c, models_dir)
    versions = dataset_versions(dataset)
    tags = {"mlflow.runName": folder.name, "cantolab.kind": kind, "cantolab.run_folder": str(folder.resolve())}
    r = c.create_run(exp, tags=tags)
    rid = r.info.run_id
    try:
        params = flatten(run.config.to_dict(), "config.")
        params["dataset"] = str(getattr(dataset, "root", dataset))
        params |= {f"dataset_version.{k}": v for k, v in versions.items()}
        params["test_singers"] = ",".join(run.split.test)[:6000]
        params["best_seed"] = str(run.best_seed)
        now = int(time.time() * 1000)
        ps = [Param(k, v) for k, v in params.items()]
        ms = [Metric(k, v, now, step) for k, v, step in metric_items(metrics, run)]
        for i in range(0, max(len(ps), len(ms)), 500):  # the API takes up to 1000 metrics, 100 params per batch
            c.log_batch(
                rid,
                metrics=ms[i : i + 500],
                params=ps[i : i + 100] if i == 0 else [],
                tags=[RunTag("cantolab.dataset", params["dataset"])] if i == 0 else [],
            )
        for j in range(100, len(ps), 100):
            c.log_batch(rid, params=ps[j : j + 100])
        c.log_dict(rid, {"dataset": params["dataset"], "versions": versions}, "dataset_versions.json")
        c.log_artifacts(rid, str(folder), "model")
        c.set_terminated(rid, "FINISHED")
    except Exception:
        c.set_terminated(rid, "FAILED")
        raise
    version = register(c, rid, f"{r.info.artifact_uri}/model")
    return Tracked(rid, version, tracking_uri(models_dir))


def register(c, run_id: str, source: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        c.create_registered_model(REGISTERED_MODEL, description="Cantolab style + emotion model; aliases champion / challenger")
    except MlflowException:
        pass  # already there
    return str(c.create_model_version(REGISTERED_MODEL, source=source, run_id=run_id).version)


def set_alias(models_dir: str | Path, alias: str, version: str) -> None:
    client(models_dir).set_registered_model_alias(REGISTERED_MODEL, alias, version)


def alias_version(models_dir: str | Path, alias: str):
    """The model version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client(models_dir).get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException:
        return None


def log_decision(models_dir: str | Path, run_id: str, decision: dict) -> None:
    """The retrain decision on the challenger's run: tags, the interval as metrics, decision.json."""
    from mlflow.entities import Metric, RunTag

    c = client(models_dir)
    tags = [RunTag("cantolab.decision", decision["decision"]), RunTag("cantolab.decision_reason", decision["reason"][:5000])]
    if decision.get("champion"):
        tags.append(RunTag("cantolab.champion_before", decision["champion"]))
    import time

    now = int(time.time() * 1000)
    ms = []
    for key in ("challenger_score", "champion_score"):
        if decision.get(key) is not None:
            ms.append(Metric(f"decision.{key}", float(decision[key]), now, 0))
    iv = decision.get("interval") or {}
    for key in ("difference", "low", "high"):
        if iv.get(key) is not None:
            ms.append(Metric(f"decision.interval.{key}", float(iv[key]), now, 0))
    c.log_batch(run_id, metrics=ms, tags=tags)
    c.log_dict(run_id, decision, "decision.json")
