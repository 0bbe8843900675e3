"""Scheduled deployments for the unattended pipeline: ingest hourly, annotation sync, nightly retrain.

`cantolab serve` registers them with the Prefect server named by PREFECT_API_URL and runs them in
this process (`prefect.serve`). To scale out, point several machines at the same server: create a
work pool (`prefect work-pool create cantolab --type process`), start `prefect worker start --pool
cantolab` on each, and deploy with `--work-pool cantolab`; keep the dataset on shared or object
storage (any fsspec URL).
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
    attr: str  # the flow object in that module


SCHEDULED = (
    Scheduled("ingest", "flows.ingest", "ingest_flow"),
    Scheduled("annotation-sync", "flows.annotation_sync", "annotation_sync_flow"),
    Scheduled("retrain", "flows.retrain", "retrain_flow"),
)


def find_flow(spec: Scheduled):
    """Imported on demand: `cantolab serve --help` should not pay for torch and Label Studio's SDK."""
    return getattr(importlib.import_module(spec.module), spec.attr)


def build_deployments(
    recordings: str,
    dataset: str,
    crons: dict[str, str] | None = None,
    ingest_settings: dict | None = None,
    import_csv: str | None = None,
    work_pool: str | None = None,
) -> list:
    """One RunnerDeployment per scheduled flow, each given the parameters its flow accepts."""
    crons = {**DEFAULT_CRONS, **(crons or {})}
    offered = {"recordings": recordings, "dataset": dataset, "settings": ingest_settings, "import_csv": import_csv}
    deployments = []
    for spec in SCHEDULED:
        flow = find_flow(spec)
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
    return deployments


def serve(deployments: list) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*deployments)
