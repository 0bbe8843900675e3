"""`cantolab train` and `cantolab predict`: the ML engineer's two commands."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._errors import fail, user_errors
from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text, atomic_writer

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _dataset_version(text: str) -> int | dict[str, int]:
    """`--dataset-version`: pairs, a number, or a run folder whose metrics.json records them."""
    from pipeline.dataset import parse_versions

    run_metrics = Path(text) / "metrics.json"
    if run_metrics.is_file():
        versions = (json.loads(run_metrics.read_text()).get("dataset") or {}).get("versions")
        if not versions:
            raise ConfigError(f"{run_metrics} records no dataset versions (trained before datasets had versions)")
        return {str(k): int(v) for k, v in versions.items()} if isinstance(versions, dict) else int(versions)
    return parse_versions(text)


def train(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder or s3:// URL with clips and labels."),
    dataset_version: str = typer.Option(
        None,
        "--dataset-version",
        help="Read the dataset as it was: table=version pairs (clips=12,labels=7), one number for every table, "
        "or a run folder (its metrics.json names the versions it was trained on).",
    ),  # fmt: skip
    config: Path = typer.Option(
        None, "--config", "-c", help="JSON training config (model.encoder, model.variant, tasks, lr, epochs, seeds…); defaults otherwise."
    ),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="Where run folders go."),
    run: str = typer.Option(None, "--run", help="Run folder name (default run-<UTC time>)."),
    encoder: str = typer.Option(None, help="Override model.encoder: audio | lyrics | audio+lyrics."),
    variant: str = typer.Option(None, help="Override model.variant: shared | concat | oneway | coattn."),
    pitch: bool = typer.Option(
        None, "--pitch/--no-pitch", help="Override model.pitch: F0, vibrato, stability and glides as a second audio stream."
    ),
    tasks: str = typer.Option(None, help="Comma-separated tasks (style,emotion); one task = single-task baseline."),
    epochs: int = typer.Option(None, help="Override the maximum epochs (early stopping on validation macro-F1)."),
    seeds: int = typer.Option(None, help="Number of seeds (0..N-1); results are mean ± std over them."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train the multi-task model on a singer-wise split and write models/<run>/ with its report.

    Every figure is on held-out singers (no singer in two splits), as mean ± std over seeds beside the majority-class rate.
    """
    from model.config import TrainConfig
    from model.runs import train_and_save

    with user_errors(FileNotFoundError):
        cfg = TrainConfig.load(config) if config else TrainConfig()
        model_over = {k: v for k, v in {"encoder": encoder, "variant": variant}.items() if v}
        if pitch is not None:
            model_over["pitch"] = pitch
        if model_over:
            cfg = replace(cfg, model=replace(cfg.model, **model_over))
        if tasks:
            cfg = replace(cfg, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()))
        if epochs is not None:
            cfg = replace(cfg, epochs=epochs)
        if seeds is not None:
            cfg = replace(cfg, seeds=tuple(range(seeds)))
        cfg.validate()
        from pipeline.dataset import Dataset

        data = Dataset(dataset, version=_dataset_version(dataset_version)) if dataset_version else dataset
        folder, result, metrics = train_and_save(data, cfg, models_dir, run, progress=not quiet)
    from model.evaluate import fmt

    table = Table(title=f"{folder.name}: test singers {', '.join(result.split.test)}")
    for col in ("task", "n", "accuracy", "macro-F1", "majority rate"):
        table.add_column(col)
    for task, s in result.summary.items():
        table.add_row(task, str(s["n"]), fmt(s["accuracy"]), fmt(s["macro_f1"]), f"{s['majority_rate']:.3f}")
    console.print(table)
    console.print(f"run folder: [bold]{folder}[/] (report.md, metrics.json, plots/)")


def predict(
    target: Path = typer.Argument(..., help="A WAV/FLAC file (e.g. a take from `cantolab capture`) or a folder of them."),
    model: Path = typer.Option(..., "--model", "-m", help="Run folder written by `cantolab train` (models/<run>)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write rows to this .csv or .json instead of printing."),
    lyrics: str = typer.Option("", help="Transcript to pair with the audio (models that read lyrics)."),
) -> None:
    """Style and emotion with their probabilities, per clip."""
    from model.predict import predict_paths

    rejected: list = []
    with user_errors(FileNotFoundError):
        rows = predict_paths(model, target, transcript=lyrics, rejected=rejected)
    for r in rejected:
        err.print(f"[yellow]skipped:[/] {r.reason}" if r.path in r.reason else f"[yellow]skipped:[/] {r.path}: {r.reason}")
    if not rows:
        fail(f"no file under {target} could be read ({len(rejected)} rejected)")
    if out:
        if out.suffix.lower() == ".json":
            atomic_write_text(out, json.dumps(rows, indent=2))
        else:
            with atomic_writer(out, "w", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        console.print(f"{len(rows)} prediction(s) written to {out}" + (f"; {len(rejected)} file(s) skipped (above)" if rejected else ""))
        return
    table = Table()
    table.add_column("clip")
    tasks = [k for k in rows[0] if k in ("style", "emotion")]
    for t in tasks:
        table.add_column(t)
    for r in rows:
        table.add_row(Path(r["clip_id"]).name, *[f"{r[t]} ({r[t + '_confidence']:.2f})" for t in tasks])
    console.print(table)
    if rejected:
        err.print(f"{len(rows)} predicted, {len(rejected)} file(s) skipped (above)")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)
