"""One annotation sync: clips → tasks, annotations → dataset, disagreements → adjudication, → labels.

Every step reads the server's state before it writes (tasks are keyed by the clip_id in their
data), and the dataset is written after each step, so a run that loses the server halfway leaves
nothing half-done: the next run starts from what the server and the dataset say and finishes the
job, without duplicate tasks or lost labels.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
from label_studio_sdk import LabelStudio

from annotation.client import Projects, ServerUnavailable, is_unavailable, user_ids
from annotation.export import Problem, records_from_export
from annotation.resolve import resolve
from annotation.settings import AnnotationSettings, Roster
from annotation.tasks import ClipForTask, assign, task_data, write_media
from pipeline.dataset import Dataset

log = logging.getLogger(__name__)
REJECT_STAGE = "annotation"
IMPORT_BATCH = 500


class SyncInterrupted(ServerUnavailable):
    """The server went away mid-sync. `report` says how far the run got; the next run resumes."""

    def __init__(self, stage: str, cause: BaseException, report: "SyncReport"):
        super().__init__(f"Label Studio unavailable during {stage!r}: {cause}. Nothing is lost; run the sync again.")
        self.stage = stage
        self.report = report


@dataclass
class SyncReport:
    clips: int = 0
    media_written: int = 0
    tasks_created: dict[str, int] = field(default_factory=dict)
    duplicate_tasks: int = 0
    annotations: dict[str, int] = field(default_factory=lambda: {"inserted": 0, "updated": 0, "unchanged": 0})
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    adjudication_created: int = 0
    adjudication_updated: int = 0
    labels: dict[str, int] = field(default_factory=lambda: {"inserted": 0, "updated": 0, "unchanged": 0})
    agreed: int = 0
    adjudicated: int = 0
    pending_adjudication: int = 0
    incomplete: int = 0
    kept_imported: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: str | None = None

    @property
    def changed(self) -> bool:
        return bool(
            sum(self.tasks_created.values())
            or self.annotations["inserted"]
            or self.annotations["updated"]
            or self.adjudication_created
            or self.adjudication_updated
            or self.labels["inserted"]
            or self.labels["updated"]
        )

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["problems"] = [p.__dict__ for p in self.problems]
        return d


def export_tasks(client: LabelStudio, project_id: int) -> list[dict]:
    """Every task of a project with its annotations (the Community edition exports synchronously)."""
    raw = b"".join(client.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=True))
    return json.loads(raw or b"[]")


def _index_tasks(tasks: list[dict], project_id: int, report: SyncReport) -> dict[str, dict]:
    by_clip: dict[str, dict] = {}
    for t in sorted(tasks, key=lambda t: t["id"]):
        cid = (t.get("data") or {}).get("clip_id")
        if cid in by_clip:
            report.duplicate_tasks += 1
            report.problems.append(Problem(f"ls:{project_id}:{t['id']}", "duplicate task for a clip", f"clip {cid}; task {by_clip[cid]['id']} is used"))
            continue
        if cid:
            by_clip[cid] = t
    return by_clip


def _import(client: LabelStudio, project_id: int, datas: list[dict]) -> int:
    n = 0
    for i in range(0, len(datas), IMPORT_BATCH):
        batch = datas[i : i + IMPORT_BATCH]
        client.projects.import_tasks(project_id, request=[{"data": d} for d in batch])
        n += len(batch)
    return n


def _add(total: dict[str, int], result) -> None:
    total["inserted"] += result.inserted
    total["updated"] += result.updated
    total["unchanged"] += result.unchanged


def run_sync(
    ds: Dataset,
    client: LabelStudio,
    settings: AnnotationSettings,
    roster: Roster,
    projects: Projects,
    document_root: Path,
    on_stage: Callable[[str], None] | None = None,
) -> SyncReport:
    """Run every step once; raises SyncInterrupted (with the partial report) if the server goes away."""
    report = SyncReport()
    stage = "start"

    def enter(name: str) -> float:
        nonlocal stage
        stage = name
        if on_stage:
            on_stage(name)
        return time.perf_counter()

    def done(name: str, t0: float) -> None:
        report.seconds[name] = report.seconds.get(name, 0.0) + time.perf_counter() - t0

    try:
        t0 = enter("media")
        clips = ds.read("clips", columns=["clip_id", "transcript", "singer"])
        report.clips = clips.num_rows
        known = set(clips.column("clip_id").to_pylist())
        media_dir = Path(document_root) / settings.media_subdir
        have = {p.stem for p in media_dir.glob("*.flac")} if media_dir.exists() else set()
        if known - have:
            audio = ds.read("clips", columns=["clip_id", "audio_flac"])
            mask = [cid not in have for cid in audio.column("clip_id").to_pylist()]
            report.media_written = write_media(audio.filter(pa.array(mask)), media_dir)
        by_id = {
            r["clip_id"]: ClipForTask(r["clip_id"], r["transcript"], r["singer"]) for r in clips.to_pylist()
        }
        done("media", t0)

        t0 = enter("export")
        users = user_ids(client)
        exported = {a: export_tasks(client, pid) for a, pid in projects.first.items()}
        done("export", t0)

        t0 = enter("pull")
        records, problems = [], []
        existing: dict[str, set[str]] = {}
        for a, tasks in exported.items():
            pid = projects.first[a]
            for cid in _index_tasks(tasks, pid, report):
                existing.setdefault(cid, set()).add(a)
            recs, probs, skipped = records_from_export(
                tasks, project_id=pid, round="first", expected_annotator=a, known_clips=known, users=users, labels=settings.labels
            )
            records += recs
            problems += probs
            report.skipped += skipped
        _save_annotations(ds, records, problems, report)
        done("pull", t0)

        t0 = enter("import")
        for a, cids in assign(sorted(known), roster, existing).items():
            if cids:
                enter(f"import:{a}")
                report.tasks_created[a] = _import(client, projects.first[a], [task_data(by_id[c], settings.media_subdir) for c in cids])
        done("import", t0)

        t0 = enter("adjudication-pull")
        adj_tasks = export_tasks(client, projects.adjudication)
        adj_by_clip = _index_tasks(adj_tasks, projects.adjudication, report)
        recs, probs, skipped = records_from_export(
            adj_tasks,
            project_id=projects.adjudication,
            round="adjudication",
            expected_annotator=roster.adjudicator,
            known_clips=known,
            users=users,
            labels=settings.labels,
        )
        report.skipped += skipped
        _save_annotations(ds, recs, probs, report)
        done("adjudication-pull", t0)

        t0 = enter("resolve")
        now = datetime.now(timezone.utc)
        res = resolve(ds.to_pandas("annotations"), now)
        report.incomplete = len(res.incomplete)
        report.pending_adjudication = len(res.pending)
        done("resolve", t0)

        t0 = enter("adjudication-push")
        new = []
        for p in res.to_adjudicate:
            data = {**task_data(by_id[p.clip_id], settings.media_subdir), "first_labels": p.first_labels_text()}
            task = adj_by_clip.get(p.clip_id)
            if task is None:
                new.append(data)
            elif (task.get("data") or {}).get("first_labels") != data["first_labels"]:
                client.tasks.update(id=task["id"], data=data)  # a first-round label changed since
                report.adjudication_updated += 1
        if new:
            report.adjudication_created = _import(client, projects.adjudication, new)
        done("adjudication-push", t0)

        t0 = enter("labels")
        _save_labels(ds, res.labels, report)
        done("labels", t0)
    except Exception as exc:  # noqa: BLE001 — only "server unavailable" is swallowed into SyncInterrupted
        if not is_unavailable(exc):
            raise
        report.interrupted = stage
        log.warning("annotation sync interrupted during %s: %s", stage, exc)
        raise SyncInterrupted(stage, exc, report) from exc
    return report


def _save_annotations(ds: Dataset, records, problems: list[Problem], report: SyncReport) -> None:
    report.problems += problems
    if records:
        _add(report.annotations, ds.upsert("annotations", [r.row() for r in records]))
    now = datetime.now(timezone.utc)
    if problems:
        ds.upsert(
            "rejects",
            [{"stage": REJECT_STAGE, "source": p.source, "reason": p.reason, "details": p.details, "at": now} for p in problems],
        )
    fixed = {(REJECT_STAGE, f"ls:{r.ls_project_id}:{r.ls_task_id}:{r.ls_annotation_id}") for r in records}
    stale = fixed & ds.keys("rejects") if fixed else set()
    if stale:
        ds.delete("rejects", stale)


def _save_labels(ds: Dataset, labels: list[dict], report: SyncReport) -> None:
    current = ds.to_pandas("labels", columns=["clip_id", "resolution"])
    imported = set(current.loc[current["resolution"] == "imported", "clip_id"])
    keep = [lab for lab in labels if lab["clip_id"] not in imported]
    report.kept_imported = len(labels) - len(keep)
    report.agreed = sum(lab["resolution"] == "agreed" for lab in keep)
    report.adjudicated = sum(lab["resolution"] == "adjudicated" for lab in keep)
    if keep:
        _add(report.labels, ds.upsert("labels", keep))
