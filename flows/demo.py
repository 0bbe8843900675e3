"""`make demo`: the main job on the embedded default — the reference recordings end to end.

Each stage is one `step_*` function so that each owner can grow it without touching the others.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.data import SETS, label_sets_for, read_labels, shared_data_dir
from pipeline.dataset import Dataset
from pipeline.fsio import atomic_write_text, atomic_writer
from pipeline.settings import SETTINGS_ENV
from pipeline.synth import synth_session
from pipeline.vocabulary import LabelSets, load_label_sets

console = Console()


def demo_recordings() -> tuple[list[dict], str]:
    """Rows (abs_path, singer, labels…) of the real clips, or a synthesized session without them."""
    data = shared_data_dir()
    if data is None:
        folder = Path(tempfile.mkdtemp(prefix="cantolab-synth-"))
        console.print(f"[yellow]No reference data (CANTOLAB_DATA); synthesizing a short session in {folder}[/]")
        return synth_session(folder), "synthesized"
    rows = []
    for name in ("gtsinger", "ravdess_song"):
        if (data / name / "labels.csv").exists():
            table = read_labels(name, data)
            table["session"] = name
            rows.extend(table.to_dict("records"))
    return rows, str(data)


def use_settings_file(path: Path, labels: LabelSets) -> LabelSets:
    """Write the demo's settings file ([labels]: the reference sets' classes) and make it this process's
    $CANTOLAB_SETTINGS, so that ingest and training read the same vocabulary."""
    lines = ["[labels]", f"styles = {json.dumps(list(labels.styles))}", f"emotions = {json.dumps(list(labels.emotions))}", ""]
    atomic_write_text(path, "\n".join(lines))
    os.environ[SETTINGS_ENV] = str(path.resolve())
    return load_label_sets(path)


def step_ingest(dataset_root: Path) -> Dataset:
    """The real ingest flow over the reference recordings (GTSinger by default) with the bundled
    `base` model; their labels come in as `imported`. Prints transcription quality vs the lyrics.

    CANTOLAB_DEMO_SETS=gtsinger,ravdess_song adds RAVDESS (790 clips, ~15 min more on 2 cores);
    CANTOLAB_DEMO_MODEL picks another model (name or path).
    """
    import csv
    from collections import defaultdict

    from rich.table import Table

    from flows.commands.ingest import print_report
    from flows.ingest import PROGRESS_LISTENERS, ingest_flow, quiet_run_logs
    from pipeline.transcribe.quality import corpus_rates

    quiet_run_logs()
    rows, source = demo_recordings()
    wanted = set(os.environ.get("CANTOLAB_DEMO_SETS", "gtsinger").split(","))
    rows = [r for r in rows if r.get("session") in wanted or not r.get("session")]
    root = os.path.commonpath([os.path.dirname(r["abs_path"]) for r in rows])
    labels = use_settings_file(dataset_root.parent / "cantolab.toml", label_sets_for(wanted & set(SETS)))
    settings = {"model": os.environ.get("CANTOLAB_DEMO_MODEL", "base"), "labels": {"styles": labels.styles, "emotions": labels.emotions}}
    import_csv = dataset_root.parent / "import.csv"
    import_csv.parent.mkdir(parents=True, exist_ok=True)
    fields = ["path", "session", "singer", "song", "language", "style", "emotion"]
    with atomic_writer(import_csv, "w", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            clean = {k: (v if isinstance(v, str) else None) for k, v in r.items()}
            writer.writerow({**{k: clean.get(k) for k in fields}, "path": os.path.relpath(r["abs_path"], root)})
    console.print(f"ingesting {len(rows)} recordings of {source} ({', '.join(sorted(wanted))}) with Whisper {settings['model']}")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("ingest flow", total=len(rows))
        listener = lambda _result: progress.advance(bar)  # noqa: E731
        PROGRESS_LISTENERS.append(listener)
        try:
            report = ingest_flow(root, str(dataset_root), str(import_csv), settings)
        finally:
            PROGRESS_LISTENERS.remove(listener)
    print_report(report)

    by_path = {str(Path(r["abs_path"]).resolve()): r for r in rows}
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for take in report["takes"]:
        row = by_path.get(take["source"])
        if row is not None and isinstance(row.get("lyrics"), str):
            pairs[str(row.get("language") or "EN")].append((" ".join(take["transcripts"]), row["lyrics"]))
    if pairs:
        table = Table(title=f"Transcription quality vs reference lyrics (Whisper {settings['model']}; corpus-level)")
        for col in ("language", "clips", "WER", "CER"):
            table.add_column(col, justify="right" if col != "language" else "left")
        for lang, p in sorted(pairs.items()):
            rates = corpus_rates(p, lang)
            table.add_row(lang, str(len(p)), "—" if rates["wer"] is None else f"{rates['wer']:.3f}", f"{rates['cer']:.3f}")
        everything = corpus_rates([x for p in pairs.values() for x in p], "zh")
        table.add_row("all (CER, spaces removed)", str(sum(map(len, pairs.values()))), "", f"{everything['cer']:.3f}")
        console.print(table)
    return Dataset(dataset_root)


def step_info(ds: Dataset) -> None:
    from flows.commands.dataset import print_summary
    from pipeline.dataset.info import summarize

    print_summary(summarize(ds))


def step_train(ds: Dataset, out: Path) -> None:
    """Train the style + emotion model on the demo dataset; report singer-wise figures.

    The best configuration the benchmarks found (bench_probe, bench_accuracy): frozen Whisper-base
    states, audio only (in the reference data language decides style, so lyrics would let the model
    lean on language), co-attention with the probe path, class-weighted. Three seeds, a singer-wise
    split; RAVDESS clips have no style and only train the emotion head (masked loss). The figures are
    printed beside the simplest baseline's on the same split: mean Whisper state + LR fit on the
    training + validation singers, the same computation as the network's probe path (model.probe), so a
    network that kept its probe prints the baseline's figures exactly.
    """
    from model.config import ModelConfig, TrainConfig
    from model.data import DataError
    from model.evaluate import fmt
    from model.runs import train_and_save

    cfg = TrainConfig(
        model=ModelConfig(encoder="audio", audio_encoder="whisper", variant="coattn", d_model=64, layers=3, dropout=0.3, probe=True),
        lr=1e-3,
        epochs=30,
        patience=8,
        seeds=(0, 1, 2),
        max_frames=128,
        class_weights=True,
    )
    try:
        folder, run, _ = train_and_save(ds, cfg, out / "models", "demo")
    except (DataError, ValueError) as exc:
        console.print(f"[yellow]training skipped: {exc}[/]")
        return
    base = run.controls.get("probe_baseline", {})
    for task, s in run.summary.items():
        b = base.get(task)
        console.print(
            f"{task}: accuracy {fmt(s['accuracy'])}, macro-F1 {fmt(s['macro_f1'])} on {s['n']} clips of held-out singers "
            f"{', '.join(run.split.test)} (majority-class rate {s['majority_rate']:.3f})"
            + (
                f"; probe baseline (Whisper-mean + LR, the network's own probe): accuracy {b['accuracy']:.3f}, macro-F1 {b['macro_f1']:.3f}"
                if b
                else ""
            )
        )
    console.print(f"model and report: [bold]{folder}[/] (report.md)")


def main() -> None:
    out = Path(os.environ.get("CANTOLAB_DEMO_DIR", "demo-output"))
    out.mkdir(parents=True, exist_ok=True)
    ds = step_ingest(out / "dataset")
    step_info(ds)
    step_train(ds, out)


if __name__ == "__main__":
    main()
