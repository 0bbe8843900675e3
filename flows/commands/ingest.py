"""`cantolab ingest`: recordings folder → dataset, through the Prefect ingest flow."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flows.commands._errors import user_errors
from pipeline.models_cache import PRODUCTION_DEFAULT

console = Console(stderr=True)


def _settings(
    model, backend, language, beam_size, word_timestamps, vad, condition, min_clip, max_clip, features, threads, normalize, labels
) -> dict:
    return {
        "labels": labels,
        "model": model,
        "backend": backend,
        "language": language,
        "threads": threads,
        "transcribe": {
            "beam_size": beam_size,
            "word_timestamps": word_timestamps,
            "vad_filter": vad,
            "condition_on_previous_text": condition,
            "keep_encoder_frames": features,
        },
        "clips": {"min_seconds": min_clip, "max_seconds": max_clip},
        "preprocess": {"normalize": normalize},
    }


def print_report(report: dict) -> None:
    console.print(
        f"[bold]{report['discovered']}[/] take(s) found: [green]{report['ingested']} ingested[/] "
        f"({report['cached']} unchanged, from cache), [{'red' if report['rejected'] else 'green'}]{report['rejected']} rejected[/]; "
        f"{report['clips']} clips, {report['seconds'] / 60:.1f} min of audio, "
        f"[yellow]{report['suspected_hallucinations']}[/] suspected hallucination(s) (kept, flagged)"
    )
    if report.get("found_again") or report.get("changed") or report.get("skipped"):
        console.print(
            f"{report.get('found_again', 0)} take(s) found again (already in the dataset: id and metadata kept), "
            f"{len(report.get('changed', []))} changed, {report.get('skipped', 0)} skipped (another ingest of this dataset has them)"
        )
    for c in report.get("changed", []):
        console.print(f"  [yellow]changed[/] {c['take_id']} ({c['source']}): {', '.join(c['fields'])}")
    for r in report.get("skips", []):
        console.print(f"  [yellow]skipped[/] {r['source']}: {r['reason']}")
    for r in report["rejects"]:
        console.print(f"  [red]rejected[/] {r['source']}: {r['reason']}")


def ingest(
    recordings: str = typer.Argument(
        ...,
        help="Recordings root (a folder, or an s3:// prefix mirrored locally first): session folders of <take>.wav + <take>.json, or any WAV/FLAC files.",
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder or s3:// URL."),
    import_csv: Path = typer.Option(
        None,
        "--import-csv",
        help="CSV with a `path` column (relative to RECORDINGS) + manifest fields; `style`/`emotion` become imported labels.",
    ),
    model: str = typer.Option(PRODUCTION_DEFAULT, "--model", "-m", help="Whisper model name (large-v3, base, tiny.en…) or path."),
    backend: str = typer.Option("auto", help="auto | faster-whisper | openai-whisper."),
    language: str = typer.Option("manifest", help="'manifest' (the take's language, else detect), 'auto', or a code such as en."),
    beam_size: int = typer.Option(5, min=1),
    word_timestamps: bool = typer.Option(True, "--word-timestamps/--no-word-timestamps"),
    vad: bool = typer.Option(False, "--vad/--no-vad", help="Silero VAD filter (faster-whisper); encoder features are not kept with it."),
    condition_on_previous_text: bool = typer.Option(False, help="Off by default: feeds repetition loops on singing."),
    min_clip: float = typer.Option(4.0, help="Shortest clip in seconds where the lyrics allow."),
    max_clip: float = typer.Option(20.0, help="Longest clip in seconds; shorter takes stay whole."),
    features: bool = typer.Option(
        True, "--features/--no-features", help="Keep each clip's Whisper encoder frames (float16) in `features`."
    ),
    normalize: str = typer.Option("peak", help="peak | rms | lufs | none."),
    concurrency: int = typer.Option(1, min=1, help="Takes transcribed at once in this process."),
    threads: int = typer.Option(0, help="CPU threads per transcription (0: all cores)."),
    settings_file: Path = typer.Option(
        None,
        "--settings",
        help="Settings TOML; its [labels] table (styles, emotions) is the label vocabulary. Default: $CANTOLAB_SETTINGS.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the flow's report as JSON on stdout."),
) -> None:
    """Ingest new takes: validate, remove DC, normalize, transcribe sung lyrics, cut clips, write the dataset.

    Re-running is safe: finished takes come from the cache and nothing is duplicated; files that cannot
    be processed go to the `rejects` table (see `cantolab dataset rejects`).
    """
    import logging

    from flows.ingest import PROGRESS_LISTENERS, ingest_flow, model_identity, quiet_run_logs
    from flows.local_server import prefect_api

    if logging.getLogger().level > logging.DEBUG:  # `cantolab -v ingest` keeps Prefect's run logs
        quiet_run_logs()
    from pipeline.ingest import IngestSettings, discover_takes
    from pipeline.vocabulary import load_label_sets

    with user_errors(FileNotFoundError):  # bad settings or a missing model stop here, before the first take
        labels = load_label_sets(settings_file)
        settings = _settings(
            model, backend, language, beam_size, word_timestamps, vad, condition_on_previous_text, min_clip, max_clip, features, threads, normalize,
            {"styles": list(labels.styles), "emotions": list(labels.emotions)},
        )  # fmt: skip
        cfg = IngestSettings.from_dict(settings)
        model_identity(cfg)  # a missing model is reported before anything starts
        from pipeline.objectstore import local_recordings

        recordings = local_recordings(recordings)
        sources, _ = discover_takes(recordings, import_csv, cfg)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=as_json) as progress:
        bar = progress.add_task(f"ingesting {recordings}", total=len(sources))
        listener = lambda result: progress.advance(bar)  # noqa: E731
        PROGRESS_LISTENERS.append(listener)
        try:
            with user_errors(), prefect_api():  # PREFECT_API_URL, or a temporary server that dies with this process
                report = ingest_flow(str(recordings), dataset, str(import_csv) if import_csv else None, settings, concurrency)
        finally:
            PROGRESS_LISTENERS.remove(listener)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print_report(report)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
