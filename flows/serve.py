"""Scheduled deployments for the unattended pipeline: ingest hourly, annotation sync, nightly retrain.

`cantolab serve` registers them with the Prefect server named by PREFECT_API_URL and runs them in
this process (`prefect.serve`). To scale out, point several machines at the same server: create a
work pool (`prefect work-pool create cantolab --type process`), start `prefect worker start --pool
cantolab` on each, and deploy with `--work-pool cantolab`; keep the dataset on shared or object
storage (any fsspec URL). Flows written by later issues join by existing under the names below.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

DEFAULT_CRONS = {"ingest": "0 * * * *", "annotation-sync": "*/30 * * * *", "retrain": "0 3 * * *"}


@dataclass(frozen=True)
class Scheduled:
    name: str
    module: str
    candidates: tuple[str, ...]  # flow object names tried in order


SCHEDULED = (
    Scheduled("ingest", "flows.ingest", ("ingest_flow",)),
    Scheduled("annotation-sync", "flows.annotation_sync", ("annotation_sync_flow", "sync_flow", "annotate_flow")),
    Scheduled("retrain", "flows.retrain", ("retrain_flow",)),
)


def find_flow(spec: Scheduled):
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name != spec.module:
            raise
        return None
    for attr in spec.candidates:
        if hasattr(module, attr):
            return getattr(module, attr)
    return None


def build_deployments(
    recordings: str,
    dataset: str,
    crons: dict[str, str] | None = None,
    ingest_settings: dict | None = None,
    import_csv: str | None = None,
    work_pool: str | None = None,
) -> tuple[list, list[str]]:
    """RunnerDeployments for the flows that exist, and the names of those not (yet) written."""
    crons = {**DEFAULT_CRONS, **(crons or {})}
    offered = {"recordings": recordings, "dataset": dataset, "settings": ingest_settings, "import_csv": import_csv}
    deployments, missing = [], []
    for spec in SCHEDULED:
        flow = find_flow(spec)
        if flow is None:
            missing.append(spec.name)
            continue
        accepted = inspect.signature(flow.fn).parameters
        params = {k: v for k, v in offered.items() if k in accepted and v is not None}
        options = {"work_pool_name": work_pool} if work_pool else {}
        deployments.append(
            flow.to_deployment(
                name=f"cantolab-{spec.name}",
                cron=crons[spec.name],
                parameters=params,
                concurrency_limit=1,  # a slow run is never overlapped by the next tick
                tags=["cantolab", spec.name],
                **options,
            )
        )
    return deployments, missing


def serve(deployments: list) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*deployments)
