"""`cantolab dataset …`: look inside a dataset (folder or s3:// prefix), its versions, conversion."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._errors import fail
from pipeline.dataset import SCHEMAS, Dataset, DatasetError
from pipeline.dataset.info import summarize

dataset_app = typer.Typer(
    help="Inspect the dataset's Delta tables (takes, clips, features, annotations, labels, rejects), their versions, and convert old ones.",
    no_args_is_help=True,
)
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
    root: str = typer.Argument(..., help="Dataset folder or s3:// URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Row counts, hours of audio, singers and the label distribution (style × emotion)."""
    try:
        ds = Dataset(root)
        if not ds.root_exists():
            fail(f"no dataset at {root} (the folder does not exist)")
        summary = summarize(ds)
    except DatasetError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print_summary(summary)


@dataset_app.command("rejects")
def rejects(root: str = typer.Argument(..., help="Dataset folder or s3:// URL.")) -> None:
    """What a stage could not process: where, why and when (quarantined, never dropped)."""
    try:
        ds = Dataset(root)
        if not ds.root_exists():
            fail(f"no dataset at {root} (the folder does not exist)")
        rows = ds.read("rejects").to_pylist()
    except DatasetError as exc:
        fail(str(exc))
    if not rows:
        console.print("no rejects")
        return
    table = Table(title=f"{len(rows)} reject(s)")
    for col in ("stage", "source", "reason", "at"):
        table.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda r: (r["stage"], r["source"])):
        table.add_row(r["stage"], r["source"], r["reason"] or "", str(r["at"] or ""))
    console.print(table)


@dataset_app.command("history")
def history(
    root: str = typer.Argument(..., help="Dataset folder or s3:// URL."),
    table: list[str] = typer.Option(None, "--table", "-t", help="Only these tables (repeatable); default all."),
    limit: int = typer.Option(20, help="Newest commits per table to show (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the history as JSON."),
) -> None:
    """Every commit of each table: version, time, operation, rows inserted / updated / deleted."""
    try:
        ds = Dataset(root)
        if not ds.root_exists():
            fail(f"no dataset at {root} (the folder does not exist)")
        names = table or list(SCHEMAS)
        out = {name: ds.history(name)[: limit or None] for name in names}
    except DatasetError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for name, entries in out.items():
        if not entries:
            continue
        view = Table(title=f"{name} (version {entries[0]['version']})")
        for col in ("version", "time", "operation", "inserted", "updated", "deleted"):
            view.add_column(col, justify="right" if col in ("version", "inserted", "updated", "deleted") else "left")
        for e in entries:
            view.add_row(*(str(e[c]) for c in ("version", "time", "operation", "inserted", "updated", "deleted")))
        console.print(view)


@dataset_app.command("migrate")
def migrate_cmd(
    old: str = typer.Argument(..., help="Dataset folder in the old Parquet-parts layout."),
    new: str = typer.Argument(
        None, help="New dataset folder or s3:// URL; omit to convert in place (old parts kept in OLD/.pre-delta-backup/)."
    ),
) -> None:
    """Convert an old-layout dataset to Delta tables; compares row counts and content hashes per table."""
    from pipeline.dataset.legacy import migrate, migrate_in_place

    try:
        if new:
            results, where = migrate(old, new), new
        else:
            results, backup = migrate_in_place(old)
            where = old
    except DatasetError as exc:
        fail(str(exc))
    view = Table(title=f"{old} → {where}")
    for col in ("table", "rows old", "rows new", "hash old", "hash new", "same"):
        view.add_column(col)
    for r in results:
        view.add_row(r.table, str(r.rows_old), str(r.rows_new), r.hash_old, r.hash_new, "yes" if r.ok else "[red]NO[/]")
    console.print(view)
    if not all(r.ok for r in results):
        fail("the converted dataset differs from the old one (see the table above); the old one is unchanged, keep using it")
    console.print(f"converted: every row preserved; use {where} from now on", soft_wrap=True)
    if not new:
        console.print(f"the old Parquet parts are in {backup}; delete that folder once you are satisfied", soft_wrap=True)


@dataset_app.command("vacuum")
def vacuum_cmd(
    root: str = typer.Argument(..., help="Dataset folder or s3:// URL."),
    retention_hours: int = typer.Option(168, help="Keep unreferenced files younger than this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would be removed."),
) -> None:
    """Delete data files no current or pinned version (a saved model's) needs, past the retention."""
    try:
        removed = Dataset(root).vacuum(retention_hours=retention_hours, dry_run=dry_run)
    except DatasetError as exc:
        fail(str(exc))
    verb = "would remove" if dry_run else "removed"
    console.print(", ".join(f"{t}: {verb} {n} file(s)" for t, n in removed.items()) or "no tables")


@dataset_app.command("pins")
def pins_cmd(
    root: str = typer.Argument(..., help="Dataset folder or s3:// URL."),
    unpin: str = typer.Option(None, "--unpin", help="Drop this pin (e.g. a deleted model's), so vacuum may free its files."),
) -> None:
    """Which table versions saved models point to (vacuum keeps their files)."""
    try:
        ds = Dataset(root)
        if unpin:
            console.print(f"unpinned {unpin}: {ds.unpin(unpin)} table version(s)")
        rows = ds.read("_pins").to_pylist()
    except DatasetError as exc:
        fail(exc)
    view = Table(title=f"{len({r['pin'] for r in rows})} pin(s)")
    for col in ("pin", "table", "version", "created"):
        view.add_column(col, overflow="fold")
    for r in sorted(rows, key=lambda r: (r["pin"], r["table_name"])):
        view.add_row(r["pin"], r["table_name"], str(r["version"]), str(r["created_at"] or ""))
    console.print(view)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
