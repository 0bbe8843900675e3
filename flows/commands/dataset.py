"""`cantolab dataset …`: look inside a dataset folder."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._errors import fail, user_errors
from pipeline.dataset import Dataset
from pipeline.dataset.info import summarize

dataset_app = typer.Typer(help="Inspect the Parquet dataset (takes, clips, features, annotations, labels, rejects).", no_args_is_help=True)
console = Console()


def print_summary(summary: dict) -> None:
    table = Table(title=f"Dataset {summary['root']}", show_header=True)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in summary["rows"].items():
        table.add_row(name, str(n))
    console.print(table)
    console.print(
        f"audio: [bold]{summary['hours_takes']:.3f} h[/] in takes, [bold]{summary['hours_clips']:.3f} h[/] in clips; "
        f"[bold]{len(summary['singers'])}[/] singers; suspected hallucinations: {summary['suspected_hallucinations']}"
    )
    if summary["style_x_emotion"]:
        cross = Table(title="labels: style × emotion")
        styles = sorted(summary["style"])
        emotions = sorted(summary["emotion"])
        cross.add_column("style \\ emotion")
        for e in emotions:
            cross.add_column(e, justify="right")
        cross.add_column("total", justify="right")
        for s in styles:
            cells = [str(summary["style_x_emotion"].get(f"{s} × {e}", 0)) for e in emotions]
            cross.add_row(s, *cells, str(summary["style"][s]))
        console.print(cross)
        console.print("label resolution: " + ", ".join(f"{k} {v}" for k, v in summary["resolution"].items()))


@dataset_app.command("info")
def info(
    root: str = typer.Argument(..., help="Dataset folder (local path or fsspec URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Row counts, hours of audio, singers and the label distribution (style × emotion)."""
    ds = Dataset(root)
    if not ds.root_exists():
        fail(f"no dataset at {root} (the folder does not exist)")
    with user_errors():
        summary = summarize(ds)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print_summary(summary)


@dataset_app.command("rejects")
def rejects(root: str = typer.Argument(..., help="Dataset folder (local path or fsspec URL).")) -> None:
    """What a stage could not process: where, why and when (quarantined, never dropped)."""
    rows = Dataset(root).read("rejects").to_pylist()
    if not rows:
        console.print("no rejects")
        return
    table = Table(title=f"{len(rows)} reject(s)")
    for col in ("stage", "source", "reason", "at"):
        table.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda r: (r["stage"], r["source"])):
        table.add_row(r["stage"], r["source"], r["reason"] or "", str(r["at"] or ""))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
