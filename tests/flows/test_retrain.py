"""The retrain flow, run for real under Prefect: promote when better, keep otherwise, always recorded."""

from __future__ import annotations

import json

import pytest

from model.champion import read_champion
from tests.model.datasets import build_dataset, pick

# Happy vs sad on RAVDESS singers (per-singer standardization): enough signal for a tiny model to
# beat a barely trained one on held-out singers, small enough for seconds per run.
TINY = {
    "model": {"encoder": "audio", "d_model": 16, "layers": 1, "heads": 2, "dropout": 0.0}, "tasks": ["emotion"], "seeds": [0],
    "max_frames": 64, "batch_size": 8, "split": [0.5, 0.17, 0.33], "feature_norm": "singer",
}


@pytest.fixture(scope="module")
def dataset(ravdess, tmp_path_factory):
    rows = ravdess[ravdess["emotion"].isin(["happy", "sad"])]
    return build_dataset(tmp_path_factory.mktemp("retrain") / "dataset", pick(rows, 6, 16), "ravdess_song")


def test_promote_only_if_better_and_record_every_decision(dataset, prefect_harness, tmp_path, monkeypatch):
    from flows.retrain import retrain_flow

    monkeypatch.setenv("CANTOLAB_FEATURE_CACHE", str(tmp_path / "features"))
    models = tmp_path / "models"
    # A barely trained first model: the champion to beat.
    weak = retrain_flow(dataset.root, str(models), TINY | {"epochs": 1, "lr": 1e-7})
    assert weak["decision"] == "promote" and weak["reason"] == "no champion yet"
    assert read_champion(models)["run"] == weak["challenger"]

    trained = retrain_flow(dataset.root, str(models), TINY | {"epochs": 15, "patience": 15, "lr": 3e-3})
    assert trained["test_singers"] == weak["test_singers"]  # judged on the champion's held-out singers
    assert trained["champion"] == weak["challenger"]
    assert trained["challenger_score"] > trained["champion_score"], trained
    assert trained["decision"] == "promote"
    assert read_champion(models)["run"] == trained["challenger"]

    # The same recipe again, but it must beat the champion by more than is possible: kept.
    again = retrain_flow(dataset.root, str(models), TINY | {"epochs": 15, "patience": 15, "lr": 3e-3}, min_improvement=1.0)
    assert again["decision"] == "keep" and again["champion"] == trained["challenger"]
    assert read_champion(models)["run"] == trained["challenger"]
    assert json.loads((models / again["challenger"] / "decision.json").read_text())["decision"] == "keep"
    log = [json.loads(line) for line in (models / "decisions.jsonl").read_text().splitlines()]
    assert [d["decision"] for d in log] == ["promote", "promote", "keep"]
    # Each decision names the dataset versions both models were scored on.
    assert all(d["dataset"] == {"uri": dataset.root, "versions": dataset.versions()} for d in log)


def test_serve_schedules_the_retrain_flow():
    from flows.serve import SCHEDULED, find_flow
    from flows.retrain import retrain_flow

    spec = next(s for s in SCHEDULED if s.name == "retrain")
    assert find_flow(spec) is retrain_flow
