"""`cantolab serve`: the scheduled deployments (ingest hourly, annotation sync, nightly retrain)."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table

from flows.serve import DEFAULT_CRONS

console = Console()


def serve(
    recordings: str = typer.Option(..., "--recordings", "-r", help="Recordings root the hourly ingest scans."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder (local path or fsspec URL; shared storage when scaling out)."),
    model: str = typer.Option("large-v3", "--model", "-m", help="Whisper model for the scheduled ingest (name or path)."),
    ingest_cron: str = typer.Option(DEFAULT_CRONS["ingest"], help="Cron for ingest."),
    sync_cron: str = typer.Option(DEFAULT_CRONS["annotation-sync"], help="Cron for the Label Studio annotation sync."),
    retrain_cron: str = typer.Option(DEFAULT_CRONS["retrain"], help="Cron for the nightly retrain."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the deployments and schedules, serve nothing."),
) -> None:
    """Register the pipeline's deployments with schedules and run them here until stopped (Ctrl-C).

    Start a server first (`prefect server start`, UI on http://127.0.0.1:4200) and export
    PREFECT_API_URL=http://127.0.0.1:4200/api; without it each run gets a temporary server.
    """
    from flows.serve import build_deployments, serve as serve_deployments

    deployments = build_deployments(
        recordings, dataset, {"ingest": ingest_cron, "annotation-sync": sync_cron, "retrain": retrain_cron}, {"model": model}
    )
    table = Table(title="cantolab deployments")
    for col in ("deployment", "flow", "schedule", "parameters"):
        table.add_column(col, overflow="fold")
    for d in deployments:
        crons = ", ".join(getattr(s.schedule, "cron", str(s.schedule)) for s in (d.schedules or []))
        table.add_row(d.name, d.flow_name, crons, ", ".join(f"{k}={v}" for k, v in d.parameters.items()))
    console.print(table)
    if dry_run:
        return
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[yellow]PREFECT_API_URL is not set: schedules live only as long as this process's temporary server.[/]")
    serve_deployments(deployments)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
