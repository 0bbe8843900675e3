"""Every trained model records the dataset URI and each table's version; `--dataset-version` reads them again."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app
from pipeline.dataset import Dataset
from tests.model.conftest import tiny_config
from tests.model.datasets import build_dataset, pick


def test_train_records_versions_pins_them_and_reproduces_the_data(gtsinger, tmp_path):
    ds = build_dataset(tmp_path / "dataset", pick(gtsinger, 6, 4, by="style"), "gtsinger")
    versions = ds.versions()
    (tmp_path / "cfg.json").write_text(json.dumps(tiny_config(epochs=2).to_dict()))
    base = ["train", "--dataset", ds.root, "--config", str(tmp_path / "cfg.json"), "--models-dir", str(tmp_path / "models"), "--quiet"]
    first = CliRunner().invoke(app, [*base, "--run", "first"])
    assert first.exit_code == 0, first.output
    recorded = json.loads((tmp_path / "models" / "first" / "metrics.json").read_text())
    assert recorded["dataset"] == {"uri": ds.root, "versions": versions}
    assert ds.pins() == {t: {v} for t, v in versions.items()}  # vacuum keeps what the model points to

    # The data moves on: half the labels go, the rest change; files of the old versions are vacuumed.
    labels = ds.read("labels").to_pylist()
    ds.delete("labels", [(r["clip_id"],) for r in labels[: len(labels) // 2]])
    ds.upsert("labels", [{**r, "style": "pop"} for r in labels[len(labels) // 2 :]])
    ds.compact("labels")
    ds.vacuum(retention_hours=0)
    assert ds.versions()["labels"] > versions["labels"]

    again = CliRunner().invoke(app, [*base, "--run", "again", "--dataset-version", str(tmp_path / "models" / "first")])
    assert again.exit_code == 0, again.output
    reproduced = json.loads((tmp_path / "models" / "again" / "metrics.json").read_text())
    assert reproduced["dataset"] == recorded["dataset"]
    assert (reproduced["split"], reproduced["n_test_clips"]) == (recorded["split"], recorded["n_test_clips"])
    pairs = ",".join(f"{t}={v}" for t, v in versions.items())
    assert Dataset(ds.root, version=pairs).count("labels") == len(labels)
    bad = CliRunner().invoke(app, [*base, "--run", "bad", "--dataset-version", "labels=999"])
    assert bad.exit_code == 2 and "version 999" in bad.output
