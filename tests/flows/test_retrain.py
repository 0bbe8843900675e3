"""The retrain flow, run for real under Prefect: promote when better, keep otherwise, always recorded."""

from __future__ import annotations

import json

import pytest

from model.champion import read_champion
from tests.flows.prefect_reads import latest_artifact
from tests.model.datasets import build_dataset, pick

# Happy vs sad on RAVDESS singers (per-singer standardization): enough signal for a tiny model to
# beat a barely trained one on held-out singers, small enough for seconds per run.
TINY = {
    "model": {"encoder": "audio", "d_model": 16, "layers": 1, "heads": 2, "dropout": 0.0},
    "tasks": ["emotion"],
    "seeds": [0],
    "max_frames": 64,
    "batch_size": 8,
    "split": [0.5, 0.17, 0.33],
    "feature_norm": "singer",
}


@pytest.fixture(scope="module")
def dataset(ravdess, tmp_path_factory):
    rows = ravdess[ravdess["emotion"].isin(["happy", "sad"])]
    return build_dataset(tmp_path_factory.mktemp("retrain") / "dataset", pick(rows, 6, 16), "ravdess_song")


def test_promote_only_when_the_interval_is_above_zero_tracked_in_mlflow(dataset, prefect_harness, mlflow_server, tmp_path, monkeypatch):
    """Three nightly runs against a real MLflow server: the first model is champion; a clearly better
    one is promoted (interval above zero) and named champion; the same recipe again cannot show a
    difference and is kept. Runs, metrics, artifacts and aliases are read back through MLflow's API."""
    from mlflow import MlflowClient

    from flows.retrain import retrain_flow
    from model.tracking import EXPERIMENT, REGISTERED_MODEL

    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "features"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("CANTOLAB_TRACKING", "on")
    models = tmp_path / "models"
    # A barely trained first model without the probe path (the probe alone is already a fair model).
    weak = retrain_flow(dataset.root, str(models), TINY | {"epochs": 1, "lr": 1e-7, "model": TINY["model"] | {"probe": False}})
    assert weak["decision"] == "promote" and weak["reason"] == "no champion yet"
    assert weak["promoted_as"].startswith("champion-") and read_champion(models)["run"] == weak["promoted_as"]
    assert (models / weak["promoted_as"] / "model.safetensors").exists() and not (models / weak["challenger"]).exists()

    recipe = TINY | {"epochs": 15, "patience": 15, "lr": 3e-3}
    trained = retrain_flow(dataset.root, str(models), recipe)
    assert trained["test_singers"] == weak["test_singers"]  # judged on the champion's held-out singers
    assert trained["champion"] == weak["promoted_as"]
    assert trained["interval"]["low"] > 0, trained["reason"]
    assert trained["decision"] == "promote" and read_champion(models)["run"] == trained["promoted_as"]
    report = (models / trained["promoted_as"] / "report.md").read_text()
    assert f"**{trained['challenger_score']:.4f}**" in report  # the score compared is the one the report shows

    again = retrain_flow(dataset.root, str(models), recipe)  # same recipe, same seed: no difference to find
    assert again["interval"]["difference"] == 0 and again["interval"]["includes_zero"]
    assert again["decision"] == "keep" and again["champion"] == trained["promoted_as"]
    assert read_champion(models)["run"] == trained["promoted_as"]
    assert json.loads((models / again["challenger"] / "decision.json").read_text())["decision"] == "keep"
    log = [json.loads(line) for line in (models / "decisions.jsonl").read_text().splitlines()]
    assert [d["decision"] for d in log] == ["promote", "promote", "keep"]
    # Each decision names the dataset versions both models were scored on.
    assert all(d["dataset"] == {"uri": dataset.root, "versions": dataset.versions()} for d in log)

    c = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    exp = c.get_experiment_by_name(EXPERIMENT)
    runs = {r.info.run_id: r for r in c.search_runs([exp.experiment_id])}
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs.values())
    assert {r.data.tags["cantolab.kind"] for r in runs.values()} == {"retrain"}
    r = runs[trained["mlflow_run_id"]]
    assert r.data.params["config.lr"] == "0.003" and r.data.params["config.model.encoder"] == "audio"
    assert r.data.params["dataset"] == str(dataset.root) and any(k.startswith("dataset_version.") for k in r.data.params)
    assert r.data.metrics["saved_model.score"] == pytest.approx(trained["challenger_score"])
    assert "test.emotion.accuracy.mean" in r.data.metrics and "test.emotion.accuracy.std" in r.data.metrics
    assert [m.step for m in c.get_metric_history(r.info.run_id, "test.emotion.macro_f1")] == [0]  # per seed (seeds [0])
    assert len(c.get_metric_history(r.info.run_id, "seed0.train_loss")) >= 2  # the training curve
    assert r.data.tags["cantolab.decision"] == "promote"
    arts = {a.path for a in c.list_artifacts(r.info.run_id, "model")}
    assert {"model/model.safetensors", "model/report.md", "model/metrics.json", "model/plots"} <= arts
    assert {a.path for a in c.list_artifacts(r.info.run_id)} >= {"decision.json", "dataset_versions.json"}
    local = c.download_artifacts(r.info.run_id, "model/report.md", str(tmp_path / "dl"))
    assert "Saved model" in open(local).read()
    assert c.get_model_version_by_alias(REGISTERED_MODEL, "champion").version == trained["model_version"]
    assert c.get_model_version_by_alias(REGISTERED_MODEL, "challenger").version == again["model_version"]
    assert runs[again["mlflow_run_id"]].data.tags["cantolab.decision"] == "keep"

    # The scheduler's view: the last run's summary, read back through the Prefect client.
    art, _ = latest_artifact("cantolab-retrain")
    text = art.data
    assert art.type == "markdown" and text.startswith("# Retrain: keep"), text
    ch, cp = again["challenger_metrics"]["emotion"]["macro_f1"], again["champion_metrics"]["emotion"]["macro_f1"]
    assert f"| emotion | {ch:.4f} (n=" in text and f"| {cp:.4f} (n=" in text, text
    assert ", ".join(again["test_singers"]) in text and f"`{(models / again['challenger']).resolve()}`" in text
    assert f"champion before this run: {trained['promoted_as']}" in text and f"MLflow model version {again['model_version']}" in text


def test_an_s3_models_folder_survives_the_worker_that_trained(dataset, prefect_harness, s3_env, tmp_path, monkeypatch):
    """models_dir s3://…: each run mirrors it, trains locally and uploads what it wrote. The second
    run starts from an empty cache (another worker) and still meets the first run's champion on its
    test singers; the MLflow store travels with it."""
    from flows.retrain import retrain_flow
    from pipeline.objectstore import mirror_prefix

    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "features"))
    monkeypatch.setenv("CANTOLAB_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    url = f"s3://cantolab-test/{tmp_path.name}/models"
    recipe = TINY | {"epochs": 1}
    first = retrain_flow(dataset.root, url, recipe)
    assert first["decision"] == "promote"
    monkeypatch.setenv("CANTOLAB_MODELS_CACHE", str(tmp_path / "other-worker"))  # starts from nothing local
    second = retrain_flow(dataset.root, url, recipe)
    assert second["champion"] == first["promoted_as"] and second["test_singers"] == first["test_singers"], second
    fresh = mirror_prefix(url, tmp_path / "fresh")
    log = [json.loads(line) for line in (fresh / "decisions.jsonl").read_text().splitlines()]
    assert [d["challenger"] for d in log] == [first["challenger"], second["challenger"]]
    kept = second.get("promoted_as") or second["challenger"]
    assert (fresh / kept / "model.safetensors").exists() and (fresh / first["promoted_as"] / "model.safetensors").exists()
    assert (fresh / "mlflow.db").exists()
    art, _ = latest_artifact("cantolab-retrain")
    assert f"`{url}/{kept}`" in art.data and f"models folder: `{url}`" in art.data


def test_serve_schedules_the_retrain_flow():
    from flows.retrain import retrain_flow
    from flows.serve import SCHEDULED, find_flow

    spec = next(s for s in SCHEDULED if s.name == "retrain")
    assert find_flow(spec) is retrain_flow


@pytest.fixture(scope="module")
def champion(dataset, prefect_harness, tmp_path_factory):
    """A models folder whose champion is a trained run, and the examples it was tested on."""
    from flows.retrain import retrain_flow
    from model.data import load_examples

    models = tmp_path_factory.mktemp("champion") / "models"
    first = retrain_flow(dataset.root, str(models), TINY | {"epochs": 8, "patience": 8, "lr": 3e-3})
    assert first["decision"] == "promote"
    test = [e for e in load_examples(dataset) if e.singer in set(first["test_singers"])]
    assert test and len(test) == first["n_test_clips"]
    return models, first, test


def test_equal_scores_keep_the_champion(champion, tmp_path):
    """Promotion needs an interval above the margin: a challenger that scores the same (here the
    champion's own weights under another name) is kept out, with the margin at its default 0."""
    import shutil

    from model.champion import decide

    src, first, test = champion
    models = tmp_path / "models"
    shutil.copytree(src, models)
    twin = models / "challenger-twin"
    shutil.copytree(models / first["promoted_as"], twin)
    (twin / "decision.json").unlink()
    d = decide(models, twin, test)
    assert d.challenger_score == d.champion_score == pytest.approx(first["challenger_score"])
    assert d.decision == "keep" and "does not lie above 0" in d.reason, d
    assert read_champion(models)["run"] == first["promoted_as"]
    assert json.loads((twin / "decision.json").read_text())["decision"] == "keep"


@pytest.mark.parametrize("damage", ["weights deleted", "weights truncated", "folder gone"])
def test_an_unloadable_champion_is_replaced_and_the_reason_recorded(champion, dataset, tmp_path, monkeypatch, damage):
    """A champion that cannot be loaded cannot be compared or served: the challenger is promoted and
    the decision says why (the run does not crash every night until someone repairs the folder)."""
    import shutil

    from flows.retrain import retrain_flow

    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "features"))
    src, first, _ = champion
    models = tmp_path / "models"
    shutil.copytree(src, models)
    weights = models / first["promoted_as"] / "model.safetensors"
    if damage == "weights deleted":
        weights.unlink()
    elif damage == "weights truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        shutil.rmtree(weights.parent)
    d = retrain_flow(dataset.root, str(models), TINY | {"epochs": 1})
    assert d["decision"] == "promote" and d["champion"] == first["promoted_as"], d
    assert d["reason"].startswith("champion cannot be evaluated") and d["champion_score"] is None
    assert read_champion(models)["run"] == d["promoted_as"] and (models / d["promoted_as"]).is_dir()
    log = [json.loads(line) for line in (models / "decisions.jsonl").read_text().splitlines()]
    assert [x["decision"] for x in log] == ["promote", "promote"] and log[-1]["reason"] == d["reason"]
