"""Small real runs on real clips: learning happens, runs save and load, predictions match."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.checkpoint import CheckpointError, load_run
from model.data import Example, encode_labels, label_maps, load_examples
from model.evaluate import task_metrics
from model.features import clip_features, normalize_features
from model.predict import predict_examples
from model.runs import train_and_save
from model.train import fit, predict_proba, train_run
from pipeline.audio import decode_audio_bytes, load_audio, write_audio
from tests.model.conftest import tiny_config


@pytest.fixture(scope="module")
def saved(gt_small, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    cfg = tiny_config(epochs=15, patience=15)
    folder, run, metrics = train_and_save(gt_small, cfg, models, "tiny", progress=False)
    return folder, run, metrics


def test_learning_happens_on_training_singers(gt_small):
    """Without validation the best epoch is the lowest training loss: the fit must beat the majority."""
    examples = load_examples(gt_small)
    cfg = tiny_config(epochs=20, patience=20)
    maps = label_maps(examples, cfg.tasks)
    ys = encode_labels(examples, maps)
    feats, _ = normalize_features(clip_features(examples), [], "global")
    texts = [e.transcript for e in examples]
    result = fit(cfg, 0, maps, (feats, texts, ys), None, feats[0].shape[1], None)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    probs = predict_proba(result.net, feats, texts, cfg.max_frames, "cpu")
    for task in cfg.tasks:
        m = task_metrics(ys[task], probs[task].argmax(1), maps[task])
        assert m["accuracy"] > m["majority_rate"], (task, m)


def test_run_folder_is_complete_and_honest(saved):
    folder, run, metrics = saved
    for name in (
        "model.safetensors",
        "config.json",
        "labels.json",
        "metrics.json",
        "report.md",
        "plots/training.png",
        "plots/confusion_style.png",
        "plots/attention_0.png",
    ):
        assert (folder / name).exists(), name
    saved_metrics = json.loads((folder / "metrics.json").read_text())
    test_singers = set(saved_metrics["split"]["test"])
    assert test_singers and not test_singers & set(saved_metrics["split"]["train"])
    assert {e.singer for e in run.test_examples} == test_singers
    for task in ("style", "emotion"):
        s = saved_metrics["summary"][task]
        assert 0 <= s["accuracy"]["mean"] <= 1 and 0 < s["majority_rate"] <= 1
    report = (folder / "report.md").read_text()
    assert "majority-class rate" in report and "language alone" in report.lower()
    assert "Baseline: pooled features + logistic regression" in report and "Saved model (seed" in report
    for task in ("style", "emotion"):
        b = saved_metrics["controls"]["probe_baseline"][task]
        assert b["n"] == saved_metrics["summary"][task]["n"] and 0 <= b["accuracy"] <= 1


def test_save_load_gives_the_same_predictions(saved):
    folder, run, _ = saved
    model = load_run(folder)
    rows = predict_examples(model, run.test_examples)
    for task in ("style", "emotion"):
        probs = np.asarray([[r[f"p_{task}_{c}"] for c in model.maps[task]] for r in rows])
        np.testing.assert_allclose(probs, run.test_probs[task], atol=1e-5)


def test_same_seed_same_result(gt_small):
    cfg = tiny_config(epochs=3)
    a = train_run(gt_small, cfg, progress=False)
    b = train_run(gt_small, cfg, progress=False)
    assert a.per_seed == b.per_seed
    np.testing.assert_allclose(a.test_probs["style"], b.test_probs["style"])


def test_label_maps_that_differ_are_refused(saved):
    folder, run, _ = saved
    model = load_run(folder)
    odd = Example("x", "someone", run.test_examples[0].audio(), labels={"style": "jazz", "emotion": "happy"})
    with pytest.raises(CheckpointError, match=r"style classes \['bel canto', 'pop'\] but the data has \['jazz'\]"):
        model.check_labels([odd])


def test_not_a_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_run(tmp_path)


def test_masked_style_trains_both_heads_on_mixed_data(mixed_small):
    cfg = tiny_config(epochs=4, split=(0.34, 0.33, 0.33))
    run = train_run(mixed_small, cfg, progress=False)
    assert run.maps == {"style": ["bel canto", "pop"], "emotion": ["happy", "sad"]}
    assert any(e.labels["style"] is None for e in run.train_examples + run.test_examples)
    assert all(np.isfinite(h["train_loss"]) for h in run.histories[0])


def test_lyrics_model_with_scratch_transformer(gt_small, tmp_path):
    cfg = tiny_config(epochs=2, model={"encoder": "audio+lyrics", "lyrics_encoder": "transformer"})
    folder, run, _ = train_and_save(gt_small, cfg, tmp_path, "lyr", progress=False)
    model = load_run(folder)
    assert model.vocab is not None and len(model.vocab) > 3
    rows = predict_examples(model, run.test_examples)
    got = np.asarray([[r[f"p_style_{c}"] for c in model.maps["style"]] for r in rows])
    np.testing.assert_allclose(got, run.test_probs["style"], atol=1e-5)


def test_predict_a_capture_format_wav(saved, tmp_path):
    """A take as `cantolab capture` writes it (48 kHz / 24-bit mono WAV), through the CLI."""
    from flows.cli import app

    folder, run, _ = saved
    samples, rate = decode_audio_bytes(run.test_examples[0].audio())
    wav = tmp_path / "take-001.wav"
    write_audio(wav, samples, rate, "PCM_24")
    assert load_audio(wav).subtype == "PCM_24"
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(app, ["predict", str(wav), "--model", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["style"] in ("bel canto", "pop") and rows[0]["emotion"] in ("happy", "sad")
    assert abs(rows[0]["p_style_pop"] + rows[0]["p_style_bel canto"] - 1) < 1e-5
    bad = CliRunner().invoke(app, ["predict", str(wav), "--model", str(tmp_path)])
    assert bad.exit_code == 2 and "not a model run folder" in bad.output


def test_cli_train_writes_a_run(gt_small, tmp_path):
    from flows.cli import app

    cfg = tiny_config(epochs=2).to_dict()
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    args = [
        "train",
        "--dataset",
        gt_small.root,
        "--config",
        str(tmp_path / "cfg.json"),
        "--models-dir",
        str(tmp_path / "models"),
        "--run",
        "cli",
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "cli" / "report.md").exists() and "majority rate" in result.output
    bad = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "empty"), "--quiet"])
    assert bad.exit_code == 2 and "clips table is empty" in bad.output
    bad = CliRunner().invoke(app, args[:-3] + ["--variant", "nonsense", "--quiet"])
    assert bad.exit_code == 2 and "model.variant='nonsense'" in bad.output


def test_uncertainty_loss_trains_on_real_clips(gt_small):
    examples = load_examples(gt_small)
    cfg = tiny_config(epochs=3, loss="uncertainty")
    maps = label_maps(examples, cfg.tasks)
    ys = encode_labels(examples, maps)
    feats, _ = normalize_features(clip_features(examples), [], "global")
    result = fit(cfg, 0, maps, (feats, [""] * len(examples), ys), None, feats[0].shape[1], None)
    assert len(result.history) == 3 and all(np.isfinite(h["train_loss"]) for h in result.history)


@pytest.mark.parametrize("option", ["class_weights", "oversample"])
def test_imbalance_options_lift_the_minority_class(option):
    """90 % happy, 10 % sad, and inputs that say nothing (every clip the same): a plain fit learns
    the prior (p(sad) ≈ 0.1); class weights or minority oversampling balance it (p(sad) → 0.5).
    Measured over seeds 0–3: plain 0.07–0.11, class weights 0.41–0.42, oversampling 0.38–0.58."""
    rng = np.random.default_rng(0)
    clip = rng.standard_normal((24, 8)).astype(np.float32)
    n, maps = 120, {"emotion": ["happy", "sad"]}
    ys = {"emotion": np.array([0] * 108 + [1] * 12)}

    def p_sad(**over):
        cfg = tiny_config(epochs=10, patience=10, tasks=("emotion",), max_frames=24, batch_size=16, **over)
        result = fit(cfg, 0, maps, ([clip] * n, [""] * n, ys), None, 8, None)
        return float(predict_proba(result.net, [clip], [""], cfg.max_frames, "cpu")["emotion"][0, 1])

    plain, balanced = p_sad(), p_sad(**{option: True})
    assert plain < 0.2, plain
    assert balanced > 0.3 and balanced > plain + 0.15, (plain, balanced)


def test_predict_clips_gives_probabilities_per_dataset_clip(saved, gt_small):
    """The rows `cantolab annotate predict-push` sends to Label Studio as pre-annotations."""
    from model.predict import predict_clips

    folder, run, _ = saved
    ids = [e.clip_id for e in run.test_examples]
    rows = predict_clips(folder, gt_small, ids)
    assert sorted(r["clip_id"] for r in rows) == sorted(ids)
    by_id = {r["clip_id"]: r for r in rows}
    model = load_run(folder)
    for i, e in enumerate(run.test_examples):
        probs = by_id[e.clip_id]["style_probs"]
        assert set(probs) == set(model.maps["style"])
        np.testing.assert_allclose([probs[c] for c in model.maps["style"]], run.test_probs["style"][i], atol=1e-5)
    assert predict_clips(folder, gt_small, []) == []


def test_tuned_whisper_block_trains_saves_and_predicts_the_same(gt_small, tmp_path):
    """A real run tuning Whisper-base's top block: its weights move from the bundled ones, the run
    folder keeps them, and the loaded model predicts what the trained one did."""
    from model.config import ConfigError
    from model.encoders import whisper_top

    with pytest.raises(ConfigError, match="needs feature_norm='none'"):
        tiny_config(model={"audio_encoder": "whisper", "whisper_tune_layers": 1})
    # Without the probe path: with it, early stopping may keep the untouched probe (epoch 0).
    cfg = tiny_config(
        epochs=2, feature_norm="none", pretrained_lr=1e-4, model={"audio_encoder": "whisper", "whisper_tune_layers": 1, "probe": False}
    )
    folder, run, _ = train_and_save(gt_small, cfg, tmp_path, "tuned", progress=False)
    assert run.feature == "whisper-encoder:base:below-top1"
    bundled = whisper_top("base", 1)[2]["blocks.0.mlp.0.weight"]
    model = load_run(folder)
    tuned = model.net.encoder.audio.blocks[0].mlp[0].weight.detach()
    assert not torch.equal(tuned, bundled)
    assert torch.equal(tuned, run.best.net.encoder.audio.blocks[0].mlp[0].weight.detach().cpu())
    rows = predict_examples(model, run.test_examples)
    got = np.asarray([[r[f"p_style_{c}"] for c in model.maps["style"]] for r in rows])
    np.testing.assert_allclose(got, run.test_probs["style"], atol=1e-5)
    assert "top 1 block(s) tuned" in (folder / "report.md").read_text()


def test_checkpoint_saved_before_frame_pool_loads_as_trained(gt_small, tmp_path):
    """A run folder from before `model.frame_pool` existed was trained on every frame: it loads with
    frame_pool 1 whatever today's default is, and predicts what it predicted when saved."""
    cfg = tiny_config(epochs=2, model={"frame_pool": 1})
    folder, run, _ = train_and_save(gt_small, cfg, tmp_path, "old", progress=False)
    config = json.loads((folder / "config.json").read_text())
    del config["train_config"]["model"]["frame_pool"]
    (folder / "config.json").write_text(json.dumps(config))
    model = load_run(folder)
    assert model.config.model.frame_pool == 1
    rows = predict_examples(model, run.test_examples)
    got = np.asarray([[r[f"p_style_{c}"] for c in model.maps["style"]] for r in rows])
    np.testing.assert_allclose(got, run.test_probs["style"], atol=1e-5)
