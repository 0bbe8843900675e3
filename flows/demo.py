"""`make demo`: the main job on the embedded default — the reference recordings end to end.

Each stage is one `step_*` function so that each owner can grow it without touching the others.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.audio import AudioError
from pipeline.data import read_labels, shared_data_dir
from pipeline.dataset import Dataset, add_reject
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record
from pipeline.synth import synth_session

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


def step_ingest(dataset_root: Path) -> Dataset:
    """Foundation version: load, check and preprocess every recording, keep it whole as one clip."""
    rows, source = demo_recordings()
    ds = Dataset(dataset_root)
    takes, clips, labels, failed = [], [], [], 0
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"preprocessing {source}", total=len(rows))
        for row in rows:
            try:
                prepared = prepare_take(row["abs_path"])
            except AudioError as exc:
                add_reject(ds, "preprocess", row["abs_path"], exc.problem)
                failed += 1
                progress.advance(task)
                continue
            take_id = take_id_for_content(prepared.clip.sha256)
            manifest = {"session": row.get("session"), "singer": row.get("singer"), "song": row.get("song"), "language": row.get("language")}
            takes.append(take_record(take_id, prepared, manifest))
            clip = whole_clip_record(take_id, prepared, row.get("session"), row.get("singer"))
            clips.append(clip)
            if row.get("style") or row.get("emotion"):
                style = row.get("style") if isinstance(row.get("style"), str) else None
                labels.append({"clip_id": clip["clip_id"], "style": style, "emotion": row.get("emotion"), "resolution": "imported", "annotators": []})
            progress.advance(task)
    results = {name: ds.upsert(name, rows_) for name, rows_ in (("takes", takes), ("clips", clips), ("labels", labels))}
    for name, r in results.items():
        console.print(f"{name}: {r.inserted} new, {r.updated} updated, {r.unchanged} unchanged")
    if failed:
        console.print(f"[yellow]{failed} recording(s) rejected; see the rejects table[/]")
    return ds


def step_info(ds: Dataset) -> None:
    from flows.commands.dataset import print_summary
    from pipeline.dataset.info import summarize

    print_summary(summarize(ds))


def step_train(ds: Dataset, out: Path) -> None:
    """Train the style + emotion model on the demo dataset; report singer-wise figures.

    Audio-only (log-mel CNN + co-attention): in the reference data language decides style, so lyrics
    would let the model lean on language. Three seeds, a singer-wise split; RAVDESS clips have no
    style and only train the emotion head (masked loss).
    """
    from model.config import ModelConfig, TrainConfig
    from model.data import DataError
    from model.evaluate import fmt
    from model.runs import train_and_save

    cfg = TrainConfig(
        model=ModelConfig(encoder="audio", audio_encoder="cnn", variant="coattn", d_model=64, layers=3, dropout=0.3),
        lr=1e-3, epochs=30, patience=8, seeds=(0, 1, 2), max_frames=96,
    )
    try:
        folder, run, _ = train_and_save(ds, cfg, out / "models", "demo")
    except (DataError, ValueError) as exc:
        console.print(f"[yellow]training skipped: {exc}[/]")
        return
    for task, s in run.summary.items():
        console.print(
            f"{task}: accuracy {fmt(s['accuracy'])}, macro-F1 {fmt(s['macro_f1'])} on {s['n']} clips of held-out singers "
            f"{', '.join(run.split.test)} (majority-class rate {s['majority_rate']:.3f})"
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
