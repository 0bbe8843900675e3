"""Model predictions as pre-annotations in the real server, most uncertain first."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from annotation.predict_push import VIEW_TITLE, Prediction, order_by_uncertainty, push_predictions
from annotation.sync import export_tasks, run_sync
from annotation.workspace import record_projects


def _preds(clips):
    conf = [0.55, 0.95, 0.7, 0.85]
    return [Prediction(c.clip_id, {"pop": p, "bel canto": 1 - p}, {"happy": 1 - p, "sad": p, "mixed": 0.0}) for c, p in zip(clips, conf)]


def test_order_is_most_uncertain_first(workflow):
    preds = _preds(workflow.clips)
    assert [round(p.confidence, 2) for p in order_by_uncertainty(preds)] == [0.55, 0.7, 0.85, 0.95]


def test_push_creates_one_prediction_per_task_once(workflow):
    wf = workflow
    run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)
    pids = list(wf.projects.first.values())
    n = push_predictions([(wf.org(pid), pid) for pid in pids], _preds(wf.clips), model_version="test-model")
    assert n == 8  # 4 clips × 2 annotator projects
    by_clip = {c.clip_id: p for c, p in zip(wf.clips, _preds(wf.clips))}
    for pid in pids:
        preds = {x.task: x for x in wf.org(pid).predictions.list(project=pid)}
        for t in export_tasks(wf.org(pid), pid):
            pred = preds[t["id"]]
            p = by_clip[t["data"]["clip_id"]]
            assert pred.score == p.confidence and pred.model_version == "test-model"
            style = next(r for r in pred.result if r["from_name"] == "style")
            assert style["value"]["choices"] == [max(p.style_probs, key=p.style_probs.get)]
        views = wf.org(pid).views.list(project=pid)
        assert any(
            (v.data or {}).get("title") == VIEW_TITLE and (v.data or {}).get("ordering") == ["tasks:predictions_score"] for v in views
        )
    assert push_predictions([(wf.org(pid), pid) for pid in pids], _preds(wf.clips), model_version="test-model") == 0


@pytest.fixture(scope="module")
def trained_model(gtsinger, tmp_path_factory):
    """A real (tiny) model run trained on 6 GTSinger singers, as `cantolab train` leaves it."""
    from model.runs import train_and_save
    from tests.model.conftest import tiny_config
    from tests.model.datasets import build_dataset, pick

    root = tmp_path_factory.mktemp("push-model")
    ds = build_dataset(root / "dataset", pick(gtsinger, 6, 4, by="style"), "gtsinger")
    folder, _, _ = train_and_save(ds, tiny_config(epochs=2), root / "models", "tiny-push", progress=False)
    return folder


def test_cli_refuses_a_missing_model_and_pushes_a_trained_models_predictions(workflow, trained_model, tmp_path, monkeypatch):
    from flows.cli import app
    from model.predict import predict_clips

    wf = workflow
    run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)
    monkeypatch.setenv("CANTOLAB_LS_URL", wf.settings.url)
    monkeypatch.setenv("CANTOLAB_LS_TOKEN", wf.server.credentials()[0])
    monkeypatch.setenv("CANTOLAB_LS_DOCUMENT_ROOT", str(wf.document_root))
    monkeypatch.setenv("CANTOLAB_LS_SECRETS", str(tmp_path / "secrets.json"))
    record_projects(wf.settings.url, wf.projects)  # what `annotate setup` records in the workspace
    roster = tmp_path / "roster.toml"
    roster.write_text(f"annotators = {json.dumps(list(wf.roster.annotators))}\nadjudicator = {json.dumps(wf.roster.adjudicator)}\n")
    settings = tmp_path / "settings.toml"
    settings.write_text('[annotation]\nproject_prefix = "Shared"\n')
    options = ["--dataset", str(wf.dataset.root), "--roster", str(roster), "--settings", str(settings)]
    res = CliRunner().invoke(app, ["annotate", "predict-push", "no-such-model", *options])
    assert res.exit_code == 2 and "not a model run folder" in " ".join(res.output.split())

    res = CliRunner().invoke(app, ["annotate", "predict-push", str(trained_model), *options])
    assert res.exit_code == 0, res.output
    assert "pushed 8 pre-annotations" in res.output  # 4 clips × 2 annotator projects, model version "tiny-push"
    expected = {
        r["clip_id"]: Prediction(r["clip_id"], r["style_probs"], r["emotion_probs"]) for r in predict_clips(trained_model, wf.dataset)
    }
    assert set(expected) == {c.clip_id for c in wf.clips}
    pushed = 0
    for pid in wf.projects.first.values():
        preds = {x.task: x for x in wf.org(pid).predictions.list(project=pid) if x.model_version == "tiny-push"}
        tasks = export_tasks(wf.org(pid), pid)
        assert set(preds) == {t["id"] for t in tasks}
        pushed += len(preds)
        for t in tasks:
            pred, want = preds[t["id"]], expected[t["data"]["clip_id"]]
            assert pred.score == pytest.approx(want.confidence)
            chosen = {r["from_name"]: r["value"]["choices"] for r in pred.result}
            assert chosen == {
                "style": [max(want.style_probs, key=want.style_probs.get)],
                "emotion": [max(want.emotion_probs, key=want.emotion_probs.get)],
            }
    assert pushed == 8
    again = CliRunner().invoke(app, ["annotate", "predict-push", str(trained_model), *options])
    assert again.exit_code == 0 and "pushed 0 pre-annotations" in again.output  # once per model version
