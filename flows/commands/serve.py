"""`cantolab serve`: the scheduled deployments (ingest hourly, annotation sync, nightly retrain)."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.commands._errors import fail, user_errors
from flows.serve import DEFAULT_CRONS

console = Console()


def serve(
    recordings: str = typer.Option(..., "--recordings", "-r", help="Recordings root the hourly ingest scans."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder or s3:// prefix (shared storage when scaling out)."),
    model: str = typer.Option("large-v3", "--model", "-m", help="Whisper model for the scheduled ingest (name or path)."),
    models_dir: str = typer.Option(
        "models",
        "--models",
        help="The retrain's models folder (champion.json, decisions, runs): a path (made absolute) or s3://bucket/prefix.",
    ),
    import_csv: str = typer.Option(None, "--import-csv", help="CSV of plain WAV/FLAC files (and labels) the ingest also imports."),
    annotation_sync: bool = typer.Option(
        True, "--annotation-sync/--no-annotation-sync", help="Schedule the Label Studio sync (needs its settings)."
    ),
    ls_settings: str = typer.Option(None, "--annotation-settings", help="Annotation settings file for the sync (else its defaults)."),
    roster: str = typer.Option(None, "--roster", help="Annotator roster for the sync (else $CANTOLAB_ROSTER)."),
    document_root: str = typer.Option(None, "--document-root", help="Label Studio's document root (else $CANTOLAB_LS_DOCUMENT_ROOT)."),
    ingest_cron: str = typer.Option(DEFAULT_CRONS["ingest"], help="Cron for ingest."),
    sync_cron: str = typer.Option(DEFAULT_CRONS["annotation-sync"], help="Cron for the Label Studio annotation sync."),
    retrain_cron: str = typer.Option(DEFAULT_CRONS["retrain"], help="Cron for the nightly retrain."),
    timezone: str = typer.Option("UTC", "--timezone", help="Time zone the crons are read in (IANA name)."),
    work_pool: str = typer.Option(None, "--work-pool", help="Register on this process work pool and return; its workers run the flows."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the deployments and schedules, register nothing."),
) -> None:
    """Register the pipeline's deployments with schedules; run them here until stopped (Ctrl-C), or
    with --work-pool leave them to the pool's workers.

    Start a server first (`prefect server start`, UI on http://127.0.0.1:4200, or `cantolab cluster up`)
    and export PREFECT_API_URL=http://127.0.0.1:4200/api; without it each run gets a temporary server.
    """
    from flows.serve import build_deployments, preflight, resolve_models_dir
    from flows.serve import register as register_on_pool
    from flows.serve import serve as serve_deployments

    problems = preflight(model, models_dir, annotation_sync, ls_settings, roster, document_root)
    message = "cannot schedule the pipeline:\n  - " + "\n  - ".join(problems)
    if problems and not dry_run:
        fail(message)  # before anything is registered
    annotation = {"settings_path": ls_settings, "roster": roster, "document_root": document_root}
    with user_errors():  # a models folder no flow could use stops even a dry run
        folder = resolve_models_dir(models_dir)
        deployments = build_deployments(
            recordings, dataset, {"ingest": ingest_cron, "annotation-sync": sync_cron, "retrain": retrain_cron}, {"model": model},
            import_csv=import_csv, work_pool=work_pool, models_dir=models_dir, annotation_sync=annotation_sync, timezone=timezone,
            annotation={k: v for k, v in annotation.items() if v},
        )  # fmt: skip
    table = Table(title=f"cantolab deployments (models folder {folder})", caption="run one now: prefect deployment run <deployment>")
    table.add_column("deployment", no_wrap=True)
    for col in ("schedule", "work pool", "parameters"):
        table.add_column(col, overflow="fold")
    for d in deployments:
        crons = ", ".join(f"{s.schedule.cron} {s.schedule.timezone or 'UTC'}" for s in (d.schedules or []))
        table.add_row(
            f"{d.flow_name}/{d.name}", crons, d.work_pool_name or "(this process)", ", ".join(f"{k}={v}" for k, v in d.parameters.items())
        )
    console.print(table)
    if dry_run:
        if problems:
            console.print(Text(message, style="yellow"))  # plain text: messages hold [brackets]
        return
    if not os.environ.get("PREFECT_API_URL"):
        if work_pool:
            fail("--work-pool needs a Prefect server its workers share: export PREFECT_API_URL (e.g. `eval $(cantolab cluster env)`)")
        console.print("[yellow]PREFECT_API_URL is not set: schedules live only as long as this process's temporary server.[/]")
    if work_pool:
        for name, ident in register_on_pool(deployments).items():
            console.print(f"registered {name} ({ident}) on pool {work_pool!r}")
        return
    serve_deployments(deployments)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
