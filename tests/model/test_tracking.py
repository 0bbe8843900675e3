"""`cantolab train` logs to MLflow's embedded default: a local store under the models folder."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.model.conftest import tiny_config


def test_cli_train_logs_run_metrics_artifacts_and_a_model_version(gt_small, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from flows.cli import app
    from model.tracking import EXPERIMENT, REGISTERED_MODEL, tracking_uri

    monkeypatch.setenv("CANTOLAB_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    models = tmp_path / "models"
    (tmp_path / "cfg.json").write_text(json.dumps(tiny_config(epochs=2, seeds=(0, 1)).to_dict()))
    args = ["train", "-d", gt_small.root, "-c", str(tmp_path / "cfg.json"), "--models-dir", str(models), "--run", "tracked", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (models / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    tracked = json.loads((models / "tracked" / "tracking.json").read_text())
    c = MlflowClient(tracking_uri=tracking_uri(models), registry_uri=tracking_uri(models))
    run = c.get_run(tracked["run_id"])
    assert run.data.tags["mlflow.runName"] == "tracked" and run.data.tags["cantolab.kind"] == "train"
    assert run.data.params["config.seeds"] == "[0, 1]"
    metrics = json.loads((models / "tracked" / "metrics.json").read_text())
    for task in ("style", "emotion"):
        assert run.data.metrics[f"test.{task}.accuracy.mean"] == metrics["summary"][task]["accuracy"]["mean"]
        history = c.get_metric_history(run.info.run_id, f"test.{task}.accuracy")
        assert sorted(m.step for m in history) == [0, 1]  # one value per seed
        assert sorted(m.value for m in history) == sorted(s[task]["accuracy"] for s in metrics["per_seed"])
    paths = {a.path for a in c.list_artifacts(run.info.run_id, "model/plots")}
    assert "model/plots/training.png" in paths
    assert str(models.resolve()) in run.info.artifact_uri  # artifacts beside the database
    assert c.get_model_version(REGISTERED_MODEL, tracked["model_version"]).run_id == run.info.run_id
    assert c.get_experiment_by_name(EXPERIMENT) is not None
