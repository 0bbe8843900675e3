"""Model predictions → Label Studio pre-annotations, most uncertain clips first.

Predictions come in as plain rows {clip_id, style_probs: {label: p}, emotion_probs: {label: p}}, from
a model run (the CLI calls `model.predict.predict_clips`; annotation itself never imports the model)
or from a file.
Uncertainty is 1 − the mean of the two top probabilities; the prediction's `score` is that
confidence, and a Data Manager tab "Most uncertain first" orders tasks by it, ascending, so
"Label all tasks" from that tab serves the least certain clips first.
Caveat for the workflow: pre-annotations anchor annotators; push them only where that is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

from label_studio_sdk import LabelStudio

from annotation.labeling import choice_result
from annotation.sync import export_tasks

VIEW_TITLE = "Most uncertain first"


@dataclass(frozen=True)
class Prediction:
    clip_id: str
    style_probs: dict[str, float]
    emotion_probs: dict[str, float]

    @property
    def confidence(self) -> float:
        return (max(self.style_probs.values()) + max(self.emotion_probs.values())) / 2

    def result(self) -> list[dict]:
        return [
            choice_result("style", max(self.style_probs, key=self.style_probs.get)),
            choice_result("emotion", max(self.emotion_probs, key=self.emotion_probs.get)),
        ]


def order_by_uncertainty(preds: list[Prediction]) -> list[Prediction]:
    return sorted(preds, key=lambda p: (p.confidence, p.clip_id))


def push_predictions(projects: list[tuple[LabelStudio, int]], preds: list[Prediction], model_version: str) -> int:
    """Create one prediction per (project, task of a predicted clip); returns how many were created.
    `projects`: (client that reaches the project — its organization's — , project id)."""
    created = 0
    ordered = order_by_uncertainty(preds)
    for client, pid in projects:
        tasks = {t["data"].get("clip_id"): t for t in export_tasks(client, pid)}
        done = {(x.task, x.model_version) for x in client.predictions.list(project=pid)}
        for p in ordered:
            task = tasks.get(p.clip_id)
            if task is None or (task["id"], model_version) in done:
                continue  # clip not in this project, or already pushed for this model version
            client.predictions.create(task=task["id"], result=p.result(), score=p.confidence, model_version=model_version)
            created += 1
        _ensure_uncertainty_view(client, pid)
    return created


def _ensure_uncertainty_view(client: LabelStudio, project_id: int) -> None:
    if any((v.data or {}).get("title") == VIEW_TITLE for v in client.views.list(project=project_id)):
        return
    client.views.create(project=project_id, data={"title": VIEW_TITLE, "ordering": ["tasks:predictions_score"]})
