"""One call from a dataset to a saved, reported run: models/<run>/ (what `cantolab train` does)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from model.checkpoint import save_run
from model.config import TrainConfig
from model.report import add_controls, run_metrics, write_report
from model.tracking import log_training
from model.train import RunResult, train_run
from pipeline.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text

TRACKING = "tracking.json"


def new_run_name(prefix: str = "run") -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"


def train_and_save(
    dataset,
    cfg: TrainConfig | None = None,
    models_dir: str | Path = "models",
    run_name: str | None = None,
    progress: bool = True,
    kind: str = "train",
) -> tuple[Path, RunResult, dict]:
    """Train, save models/<run>/ with its report, and log it to MLflow (model.tracking)."""
    name = run_name or new_run_name()
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' or '-'")
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    run = train_run(ds, cfg, progress=progress)
    add_controls(run)
    metrics = run_metrics(run)
    folder = save_run(run, Path(models_dir) / name, metrics)
    write_report(run, folder, metrics)
    pin_dataset(run, folder)
    tracked = log_training(folder, run, metrics, ds, models_dir, kind)
    if tracked:
        atomic_write_text(folder / TRACKING, json.dumps(asdict(tracked), indent=2))
        metrics["tracking"] = asdict(tracked)
    return folder, run, metrics


def read_tracking(folder: str | Path) -> dict | None:
    """The MLflow run id and registered model version of a run folder (None when untracked)."""
    path = Path(folder) / TRACKING
    return json.loads(path.read_text()) if path.exists() else None


def pin_dataset(run: RunResult, folder: Path) -> None:
    """Tell the dataset that this model points to these versions, so vacuum keeps their files."""
    if not run.dataset.get("versions"):
        return
    from pipeline.dataset import Dataset, DatasetError

    try:
        Dataset(run.dataset["uri"]).pin(f"model:{Path(folder).resolve()}", run.dataset["versions"])
    except (DatasetError, OSError) as exc:  # a read-only dataset: the run is still saved and records them
        import warnings

        warnings.warn(f"could not pin dataset versions for {folder}: {exc}", stacklevel=2)
