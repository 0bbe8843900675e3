"""Bad settings, damaged run folders and stray labels: a clear error naming the field or file, never a
traceback; a folder with one bad take still gets predictions for the others (issue 14, item 9)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from model.checkpoint import CheckpointError, load_run
from model.config import TrainConfig
from model.data import DataError, load_examples
from model.runs import train_and_save
from pipeline.audio import decode_audio_bytes, write_audio
from pipeline.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.vocabulary import LabelSets
from tests.model.conftest import tiny_config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"d_model": "64"}}, r"model\.d_model: Input should be a valid integer \(got '64'\)"),
        ({"lr": "fast"}, r"lr: Input should be a valid number \(got 'fast'\)"),
        ({"seeds": 3}, r"seeds: Input should be a valid array \(got 3\)"),
        ({"epochs": -5}, r"epochs=-5 must be 1 or more"),
        ({"epochs": 2.5}, r"epochs: Input should be a valid integer"),
        ({"class_weights": "yes"}, r"class_weights: Input should be a valid boolean \(got 'yes'\)"),
        ({"seeds": []}, r"at least one seed"),
        ({"split": [0.5, 0.5]}, r"split\.2: Field required"),
        ({"model": {"dropout": 1.5}}, r"model\.dropout=1\.5 must be in \[0, 1\)"),
        ({"model": "big"}, r"model: Input should be an object"),
    ],
)
def test_wrong_typed_or_impossible_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(data)


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"cfg\.json: not valid JSON"):
        TrainConfig.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"cfg\.json: a training config is a JSON object"):
        TrainConfig.load(bad)
    bad.write_text(json.dumps({"lr": "fast"}))
    with pytest.raises(ConfigError, match=r"cfg\.json: lr: Input should be a valid number"):
        TrainConfig.load(bad)


def test_cli_refuses_bad_configs_with_exit_2_and_no_model(gt_small, tmp_path):
    from flows.cli import app

    models = tmp_path / "models"
    for i, data in enumerate(({"epochs": -5}, {"lr": "fast"}, {"model": {"d_model": "64"}}, {"seeds": 3})):
        path = tmp_path / f"cfg{i}.json"
        path.write_text(json.dumps(data))
        result = CliRunner().invoke(app, ["train", "-d", gt_small.root, "-c", str(path), "--models-dir", str(models), "--quiet"])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and "Traceback" not in result.output
        assert str(path.name) in result.output
    result = CliRunner().invoke(app, ["train", "-d", gt_small.root, "--epochs", "0", "--models-dir", str(models), "--quiet"])
    assert result.exit_code == 2 and "epochs=0 must be 1 or more" in result.output
    assert not models.exists() or not any(models.iterdir())  # nothing saved


@pytest.fixture(scope="module")
def run_folder(gt_small, tmp_path_factory):
    folder, run, _ = train_and_save(gt_small, tiny_config(epochs=2), tmp_path_factory.mktemp("models"), "ok", progress=False)
    return folder, run


def _damaged(run_folder, tmp_path, name: str, content: bytes):
    folder = tmp_path / "damaged"
    shutil.copytree(run_folder[0], folder)
    (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("model.safetensors", lambda b: b[: len(b) // 2], r"model\.safetensors: not a readable safetensors file"),
        ("model.safetensors", lambda b: os.urandom(len(b)), r"model\.safetensors: not a readable safetensors file"),
        ("config.json", lambda b: b"{oops", r"config\.json: not valid JSON"),
        ("labels.json", lambda b: b"[]", r"labels\.json: expected a JSON object"),
        (
            "config.json",
            lambda b: json.dumps(json.loads(b) | {"train_config": json.loads(b)["train_config"] | {"lr": "fast"}}).encode(),
            r"config\.json: lr: Input should be a valid number",
        ),
    ],
)
def test_damaged_run_folder_is_a_checkpoint_error(run_folder, tmp_path, name, make, message):
    folder = _damaged(run_folder, tmp_path, name, make((run_folder[0] / name).read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_run(folder)


def test_cli_predict_on_damaged_weights_is_exit_2(run_folder, tmp_path):
    from flows.cli import app

    folder = _damaged(run_folder, tmp_path, "model.safetensors", os.urandom(4096))
    samples, rate = decode_audio_bytes(run_folder[1].test_examples[0].audio())
    write_audio(tmp_path / "a.wav", samples, rate, "PCM_24")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "a.wav"), "--model", str(folder)])
    assert result.exit_code == 2 and "not a readable safetensors file" in result.output and "Traceback" not in result.output


def test_predict_folder_with_one_bad_file_predicts_the_others(run_folder, tmp_path):
    from flows.cli import app

    takes = tmp_path / "takes"
    takes.mkdir()
    for i, e in enumerate(run_folder[1].test_examples[:2]):
        samples, rate = decode_audio_bytes(e.audio())
        write_audio(takes / f"good-{i}.wav", samples, rate, "PCM_24")
    (takes / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(app, ["predict", str(takes), "--model", str(run_folder[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert sorted(os.path.basename(r["clip_id"]) for r in rows) == ["good-0.wav", "good-1.wav"]
    assert "skipped" in result.output and "broken.wav" in result.output
    (takes / "good-0.wav").unlink()
    (takes / "good-1.wav").unlink()
    result = CliRunner().invoke(app, ["predict", str(takes), "--model", str(run_folder[0])])
    assert result.exit_code == 2 and "broken.wav" in result.output and "no file" in result.output


def test_labels_outside_the_vocabulary_are_refused(gt_small, tmp_path):
    """A Parquet part with a stray emotion must not train a 3-class head."""
    ds = Dataset(tmp_path / "dataset")
    for table in ("takes", "clips"):
        ds.upsert(table, gt_small.read(table).to_pylist())
    labels = gt_small.read("labels").to_pylist()
    labels[0] = labels[0] | {"emotion": "furious"}
    labels[1] = labels[1] | {"emotion": "Happy "}  # case and spaces are normalized, not refused
    ds.upsert("labels", labels)
    with pytest.raises(DataError, match=r"outside the vocabulary \(emotion: happy, sad, mixed\): emotion 'furious' on 1 clip"):
        load_examples(ds)
    with pytest.raises(DataError, match="furious"):
        train_and_save(ds, tiny_config(epochs=1), tmp_path / "models", "x", progress=False)
    assert not (tmp_path / "models" / "x").exists()
    # A team that labels another class says so in the config; then it trains.
    examples = load_examples(ds, vocabulary=LabelSets(emotions=("happy", "sad", "mixed", "furious")).field_values())
    assert {e.labels["emotion"] for e in examples} == {"happy", "sad", "furious"}
