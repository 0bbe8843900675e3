"""`cantolab dataset info` through the real console script on a real dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.legacy_layout import write_legacy_dataset

CLI = [str(Path(sys.executable).parent / "cantolab")]


def test_dataset_info_prints_counts_and_label_table(tmp_dataset):
    tmp_dataset.upsert(
        "labels",
        [
            {"clip_id": "a", "style": "pop", "emotion": "sad", "resolution": "agreed"},
            {"clip_id": "b", "style": "bel canto", "emotion": "happy", "resolution": "adjudicated"},
        ],
    )
    out = subprocess.run([*CLI, "dataset", "info", tmp_dataset.root], capture_output=True, text=True, check=True)
    assert "labels" in out.stdout and "bel canto" in out.stdout and "style × emotion" in out.stdout
    js = json.loads(
        subprocess.run([*CLI, "dataset", "info", tmp_dataset.root, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert js["rows"]["labels"] == 2 and js["style_x_emotion"] == {"bel canto × happy": 1, "pop × sad": 1}


def test_dataset_info_on_missing_folder_is_a_clear_error(tmp_path):
    out = subprocess.run([*CLI, "dataset", "info", str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and "no dataset at" in out.stderr


def test_help_lists_the_commands():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True)
    assert "dataset" in out.stdout


def test_dataset_rejects_lists_what_was_quarantined(tmp_dataset):
    from pipeline.dataset import add_reject

    add_reject(tmp_dataset, "preprocess", "/takes/broken.wav", "empty file (0 bytes)")
    out = subprocess.run([*CLI, "dataset", "rejects", tmp_dataset.root], capture_output=True, text=True, check=True)
    assert "broken.wav" in out.stdout and "empty file" in out.stdout


def test_dataset_history_lists_versions_and_row_changes(tmp_dataset):
    tmp_dataset.upsert("labels", [{"clip_id": "a", "style": "pop"}, {"clip_id": "b", "style": "pop"}])
    tmp_dataset.upsert("labels", [{"clip_id": "a", "style": "bel canto"}])
    tmp_dataset.delete("labels", [("b",)])
    out = subprocess.run([*CLI, "dataset", "history", tmp_dataset.root, "--json"], capture_output=True, text=True, check=True)
    labels = json.loads(out.stdout)["labels"]
    assert [(e["version"], e["operation"], e["inserted"], e["updated"], e["deleted"]) for e in labels] == [
        (3, "delete", 0, 0, 1), (2, "upsert", 0, 1, 0), (1, "upsert", 2, 0, 0), (0, "create", 0, 0, 0),
    ]  # fmt: skip
    table = subprocess.run([*CLI, "dataset", "history", tmp_dataset.root, "-t", "labels"], capture_output=True, text=True, check=True)
    assert "labels (version 3)" in table.stdout and "delete" in table.stdout


def test_old_layout_is_refused_with_how_to_convert_then_migrated(tmp_path):
    legacy = write_legacy_dataset(tmp_path / "legacy")
    out = subprocess.run([*CLI, "dataset", "info", str(legacy)], capture_output=True, text=True)
    assert out.returncode == 2 and "old Parquet-parts layout" in out.stderr and "cantolab dataset migrate" in out.stderr
    new = tmp_path / "delta"
    out = subprocess.run([*CLI, "dataset", "migrate", str(legacy), str(new)], capture_output=True, text=True)
    assert out.returncode == 0 and "every row preserved" in out.stdout, out.stdout + out.stderr
    js = json.loads(subprocess.run([*CLI, "dataset", "info", str(new), "--json"], capture_output=True, text=True, check=True).stdout)
    assert js["rows"] == {"takes": 3, "clips": 6, "features": 3, "annotations": 8, "labels": 4, "rejects": 1}


def test_rejects_on_a_missing_folder_is_an_error(tmp_path):
    out = subprocess.run([*CLI, "dataset", "rejects", str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and "no dataset at" in out.stderr


def test_pins_listed_and_dropped(tmp_dataset):
    tmp_dataset.upsert("labels", [{"clip_id": "a", "style": "pop"}])
    tmp_dataset.pin("model:/models/run-1")
    out = subprocess.run([*CLI, "dataset", "pins", tmp_dataset.root], capture_output=True, text=True, check=True)
    assert "model:/models/run-1" in out.stdout and "labels" in out.stdout
    out = subprocess.run(
        [*CLI, "dataset", "pins", tmp_dataset.root, "--unpin", "model:/models/run-1"], capture_output=True, text=True, check=True
    )
    assert "unpinned model:/models/run-1: 1" in out.stdout and tmp_dataset.pins() == {}
    out = subprocess.run([*CLI, "dataset", "vacuum", tmp_dataset.root, "--dry-run"], capture_output=True, text=True, check=True)
    assert "labels: would remove 0 file(s)" in out.stdout


def test_migrate_in_place_keeps_a_backup_and_other_files(tmp_path):

    old = write_legacy_dataset(tmp_path / "dataset")
    (old / ".ingest-cache").mkdir()
    (old / ".ingest-cache" / "keep.txt").write_text("x")
    out = subprocess.run([*CLI, "dataset", "migrate", str(old)], capture_output=True, text=True)
    assert out.returncode == 0 and "every row preserved" in out.stdout and ".pre-delta-backup" in out.stdout, out.stdout + out.stderr
    js = json.loads(subprocess.run([*CLI, "dataset", "info", str(old), "--json"], capture_output=True, text=True, check=True).stdout)
    assert js["rows"]["clips"] == 6 and js["rows"]["labels"] == 4
    assert (old / ".ingest-cache" / "keep.txt").exists() and len(list((old / ".pre-delta-backup" / "labels").glob("part-*.parquet"))) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset.")]  # no staging left behind
