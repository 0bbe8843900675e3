"""Scheduled deployments for the unattended pipeline: ingest hourly, annotation sync, nightly retrain.

Two ways to run them, both against the Prefect server named by PREFECT_API_URL:
- `cantolab serve` registers them and runs them in this process (`prefect.serve`);
- `cantolab serve --work-pool cantolab` registers them on a process work pool and returns: any
  `prefect worker start --pool cantolab` (on any machine with cantolab installed) picks them up. The
  entrypoints are module paths of the installed package (`flows.ingest.ingest_flow`), so a worker
  pulls no source at run time: no storage, no image, no pull step (what `prefect deploy` would ask for).
Schedules are cron in UTC unless a time zone is given. Each deployment runs one at a time.
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

DEFAULT_CRONS = {"ingest": "0 * * * *", "annotation-sync": "*/30 * * * *", "retrain": "0 3 * * *"}


@dataclass(frozen=True)
class Scheduled:
    name: str
    module: str
    attr: str  # the flow object in that module


SCHEDULED = (
    Scheduled("ingest", "flows.ingest", "ingest_flow"),
    Scheduled("annotation-sync", "flows.annotation_sync", "annotation_sync_flow"),
    Scheduled("retrain", "flows.retrain", "retrain_flow"),
)


def find_flow(spec: Scheduled):
    """Imported on demand: `cantolab serve --help` should not pay for torch and Label Studio's SDK."""
    return getattr(importlib.import_module(spec.module), spec.attr)


def resolve_models_dir(models_dir: str) -> str:
    """The retrain's models folder: an `s3://bucket/prefix` (any worker can retrain: the run mirrors
    it and uploads what it wrote, flows.retrain) or a path, made absolute: a worker runs each flow in
    a temporary folder, so a relative `models` would be trained into and deleted with it. A path
    must be one every retraining worker sees (local disk for one machine, a shared mount otherwise)."""
    if models_dir.startswith(("s3://", "s3a://")):
        if not models_dir.split("://", 1)[1].strip("/"):
            raise ConfigError(f"models folder {models_dir!r}: name a bucket (s3://bucket/models)")
        return models_dir.rstrip("/")
    if "://" in models_dir:
        raise ConfigError(f"models folder {models_dir!r}: a path or an s3:// URL")
    return str(Path(models_dir).expanduser().resolve())


def _models_dir_problem(models_dir: str) -> str | None:
    """Why the retrain could not write its models folder, or None."""
    folder = resolve_models_dir(models_dir)
    if folder.startswith(("s3://", "s3a://")):
        from pyarrow import fs

        from pipeline.objectstore import arrow_s3_filesystem

        bucket = folder.split("://", 1)[1].split("/", 1)[0]
        try:
            found = arrow_s3_filesystem().get_file_info(bucket).type != fs.FileType.NotFound
        except OSError as exc:
            return f"models folder {folder}: the object store does not answer ({exc})"
        return None if found else f"models folder {folder}: bucket {bucket!r} does not exist at the S3 endpoint"
    path = Path(folder)
    parent = next(p for p in (path, *path.parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return f"models folder {path}: {parent} is not a writable folder"
    return None


def preflight(
    model: str,
    models_dir: str,
    annotation_sync: bool,
    ls_settings: str | None = None,
    roster: str | None = None,
    document_root: str | None = None,
) -> list[str]:
    """Every missing or bad setting the deployments would trip over, checked before anything is registered."""
    problems = []
    try:
        from pipeline.ingest import IngestSettings, check_settings

        check_settings(IngestSettings.from_dict({"model": model}))
    except ConfigError as exc:
        problems.append(f"Whisper model: {exc}")
    try:
        if problem := _models_dir_problem(models_dir):
            problems.append(problem)
    except ConfigError as exc:
        problems.append(str(exc))
    if annotation_sync:
        from annotation.settings import AnnotationSettings, SettingsError, read_secrets, service_token
        from annotation.workspace import load_roster, roster_path

        checks = (
            ("Label Studio settings", lambda: AnnotationSettings.load(ls_settings)),
            ("Label Studio token", service_token),
            ("annotator roster", lambda: load_roster(roster_path(roster))),
        )
        for what, check in checks:
            try:
                check()
            except SettingsError as exc:
                problems.append(f"{what}: {exc}")
        if not (document_root or os.environ.get("CANTOLAB_LS_DOCUMENT_ROOT") or read_secrets().get("document_root")):
            problems.append("Label Studio document root: set CANTOLAB_LS_DOCUMENT_ROOT (or --no-annotation-sync)")
    return problems


def build_deployments(
    recordings: str,
    dataset: str,
    crons: dict[str, str] | None = None,
    ingest_settings: dict | None = None,
    import_csv: str | None = None,
    work_pool: str | None = None,
    models_dir: str | None = None,
    annotation_sync: bool = True,
    timezone: str | None = None,
    annotation: dict | None = None,
) -> list:
    """One RunnerDeployment per scheduled flow, each given the parameters its flow accepts."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    crons = {**DEFAULT_CRONS, **(crons or {})}
    offered = {
        "recordings": recordings, "dataset": dataset, "settings": ingest_settings, "import_csv": import_csv,
        "models_dir": resolve_models_dir(models_dir) if models_dir else None,
        **(annotation or {}),  # settings_path, roster, document_root for the annotation sync
    }  # fmt: skip
    deployments = []
    for spec in SCHEDULED:
        if spec.name == "annotation-sync" and not annotation_sync:
            continue
        flow = find_flow(spec)
        accepted = inspect.signature(flow.fn).parameters
        params = {k: v for k, v in offered.items() if k in accepted and v is not None}
        options = {"work_pool_name": work_pool} if work_pool else {}
        deployments.append(
            flow.to_deployment(
                name=f"cantolab-{spec.name}",
                schedule=Cron(crons[spec.name], timezone=timezone or "UTC"),
                parameters=params,
                concurrency_limit=1,  # a slow run is never overlapped by the next tick
                tags=["cantolab", spec.name],
                # the installed package's module path (flows.ingest.ingest_flow): nothing to pull at run time
                entrypoint_type=EntrypointType.MODULE_PATH,
                **options,
            )
        )
    return deployments


def register(deployments: list) -> dict[str, str]:
    """Register on the work pool they name (their workers run them); returns `flow/deployment` → id."""
    return {f"{d.flow_name}/{d.name}": str(d.apply()) for d in deployments}


def serve(deployments: list) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*deployments)
