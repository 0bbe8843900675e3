"""Model predictions as pre-annotations in the real server, most uncertain first."""

from __future__ import annotations

import json

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


def test_cli_refuses_a_missing_model_and_pushes_a_predictions_file(workflow, tmp_path, monkeypatch):
    from flows.cli import app

    wf = workflow
    monkeypatch.setenv("CANTOLAB_LS_URL", wf.settings.url)
    monkeypatch.setenv("CANTOLAB_LS_TOKEN", wf.server.credentials()[0])
    monkeypatch.setenv("CANTOLAB_LS_DOCUMENT_ROOT", str(wf.document_root))
    monkeypatch.setenv("CANTOLAB_LS_SECRETS", str(tmp_path / "secrets.json"))
    record_projects(wf.settings.url, wf.projects)  # what `annotate setup` records in the workspace
    roster = tmp_path / "roster.toml"
    roster.write_text(f"annotators = {json.dumps(list(wf.roster.annotators))}\nadjudicator = {json.dumps(wf.roster.adjudicator)}\n")
    settings = tmp_path / "settings.toml"
    settings.write_text('[annotation]\nproject_prefix = "Shared"\n')
    args = [
        "annotate",
        "predict-push",
        "no-such-model",
        "--dataset",
        str(wf.dataset.root),
        "--roster",
        str(roster),
        "--settings",
        str(settings),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "not a model run folder" in " ".join(res.output.split())
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([p.__dict__ for p in _preds(wf.clips)]))
    res = CliRunner().invoke(app, [*args, "--predictions", str(preds)])
    assert res.exit_code == 0, res.output
    assert "pushed 8 pre-annotations" in res.output  # model version "no-such-model": new predictions
