"""`cantolab capture push RECORDINGS s3://bucket/prefix`: finished takes to the object store."""

from __future__ import annotations

import typer
from rich.console import Console

from flows.commands._errors import user_errors
from flows.commands.capture import capture_app

console = Console()


def push(
    recordings: str = typer.Argument(..., help="Recordings root (RECORDINGS/<session>/<take_id>.wav + .json)."),
    dest: str = typer.Argument(..., help="s3://bucket/prefix; S3 settings from AWS_* and CANTOLAB_S3_ENDPOINT."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash takes already in the store instead of trusting manifest + size."),
) -> None:
    """Upload complete, stopped and recovered takes (never one still recording, never a discarded one),
    each verified by sha256 read back from the store; re-run to resume: nothing is sent twice."""
    from capture.push import push_recordings

    def show(take: str, outcome: str, detail: str) -> None:
        style = {"pushed": "green", "already": "dim", "skipped": "yellow"}[outcome]
        console.print(f"[{style}]{outcome}[/] {take}" + (f" ({detail})" if detail else ""), highlight=False)

    with user_errors():
        report = push_recordings(recordings, dest, verify=verify, on_take=show)
    console.print(
        f"{len(report.pushed)} pushed ({report.bytes_sent / 1e6:.1f} MB), {len(report.already)} already there, "
        f"{len(report.skipped)} skipped"
    )


def register(app: typer.Typer) -> None:
    capture_app.command("push")(push)
