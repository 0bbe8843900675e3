"""`cantolab cluster up | status | down | env`: every part of a studio deployment as local processes."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._errors import user_errors

console = Console()
cluster_app = typer.Typer(
    help="A local cluster on 127.0.0.1: S3 store, Prefect server + workers (pool `cantolab`), Dask scheduler + workers.",
    no_args_is_help=True,
)
RUN_DIR = typer.Argument("cluster-run", help="Run folder: state (cluster.json, cluster.env), logs/, the S3 data, Prefect's SQLite.")


@cluster_app.command("up")
def up_cmd(
    run_dir: str = RUN_DIR,
    dask_workers: int = typer.Option(2, "--dask-workers", "-n", min=0, help="Dask workers (one process each)."),
    dask_threads: int = typer.Option(
        2,
        "--dask-threads",
        min=1,
        help="Task slots per Dask worker. A worker transcribes one take at a time (the ingest's transcribe_concurrency, "
        "one Whisper model per worker); a second slot writes the previous take's rows meanwhile.",
    ),
    prefect_workers: int = typer.Option(2, "--prefect-workers", "-m", min=0, help="Prefect process workers polling the pool."),
    pool: str = typer.Option("cantolab", "--pool", help="Work pool name."),
    query_seconds: float = typer.Option(None, "--query-seconds", help="How often workers poll (Prefect's default 10 s)."),
    zombie_after: float = typer.Option(
        90.0, "--zombie-after", min=31, help="Seconds without a flow run's heartbeat (sent every 30 s) before it is set Crashed and rerun."
    ),
) -> None:
    """Start the cluster and wait until every part answers; stop what started if one fails."""
    from flows.cluster import up

    with user_errors():
        state = up(
            run_dir, dask_workers=dask_workers, dask_threads=dask_threads, prefect_workers=prefect_workers, pool=pool,
            worker_query_seconds=query_seconds, zombie_after=zombie_after, progress=lambda what: console.print(f"starting {what} …"),
        )  # fmt: skip
    console.print(f"[green]up[/]: Prefect {state.prefect_api} (UI {state.prefect_api.removesuffix('/api')}), "
                  f"Dask {state.dask_address}, S3 {state.s3['endpoint']} bucket s3://{state.s3['bucket']}")  # fmt: skip
    console.print(f"use it from a shell: [bold]source {run_dir}/cluster.env[/] (or `eval $(cantolab cluster env {run_dir})`)")


@cluster_app.command("status")
def status_cmd(run_dir: str = RUN_DIR) -> None:
    """Each process the cluster started: still running (same PID and command), its ports answering."""
    from flows.cluster import status

    with user_errors():
        rows = status(run_dir)
    table = Table(title=f"cluster {run_dir}")
    for col in ("name", "pid", "running", "ports", "log"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ok = "[green]yes[/]" if r["alive"] and r["listening"] else ("[yellow]no answer[/]" if r["alive"] else "[red]no[/]")
        table.add_row(r["name"], str(r["pid"]), ok, ", ".join(f"{k} {v}" for k, v in r["ports"].items()), r["log"])
    console.print(table)
    if not all(r["alive"] for r in rows):
        raise typer.Exit(1)


@cluster_app.command("down")
def down_cmd(run_dir: str = RUN_DIR, grace: float = typer.Option(15.0, help="Seconds between SIGTERM and SIGKILL.")) -> None:
    """Stop only the processes `up` started (checked by PID, start time and command), workers before servers."""
    from flows.cluster import down

    with user_errors():
        down(run_dir, grace, report=lambda name, what: console.print(f"{name}: {what}"))


@cluster_app.command("restart")
def restart_cmd(
    name: str = typer.Argument(..., help="A process as `status` names it: s3, prefect-server, prefect-worker-1, dask-worker-2, …"),
    run_dir: str = RUN_DIR,
    down_for: float = typer.Option(0.0, "--down-for", min=0, help="Seconds to leave it stopped (a fault drill)."),
) -> None:
    """Stop one process and start it again with its command, ports and data; wait until it is ready."""
    from flows.cluster import restart

    with user_errors():
        entry = restart(run_dir, name, down_for=down_for)
    console.print(f"{name}: running again (pid {entry.pid})")


@cluster_app.command("env")
def env_cmd(run_dir: str = RUN_DIR) -> None:
    """`export` lines that point Prefect, Dask and S3 clients at the cluster (`eval $(cantolab cluster env)`)."""
    from flows.cluster import load_state

    with user_errors():
        state = load_state(run_dir)
    for key, value in state.env().items():
        print(f"export {key}={value}")


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
