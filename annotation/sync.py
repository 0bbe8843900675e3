"""One annotation sync: clips → tasks, annotations → dataset, disagreements → adjudication, → labels.

Every step reads the server's state before it writes (tasks are keyed by the clip_id in their
data), and the dataset is written after each step, so a run that loses the server halfway leaves
nothing half-done: the next run starts from what the server and the dataset say and finishes the
job, without duplicate tasks or lost labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from label_studio_sdk import LabelStudio

from annotation.client import Projects, ServerUnavailable, is_unavailable, user_ids
from annotation.export import Problem, records_from_export, user_of
from annotation.resolve import FIELDS, lone_labels_text, resolve
from annotation.settings import AnnotationSettings, Roster
from annotation.tasks import ClipForTask, assign, task_data, write_media
from pipeline.dataset import Dataset
from pipeline.fsio import atomic_write_text

log = logging.getLogger(__name__)
REJECT_STAGE = "annotation"
IMPORT_BATCH = 500
STATE_DIR = ".cantolab-sync"  # under the document root: what the last sync saw, to skip one with nothing new


class SyncInterrupted(ServerUnavailable):
    """The server went away mid-sync. `report` says how far the run got; the next run resumes."""

    def __init__(self, stage: str, cause: BaseException, report: SyncReport):
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
    per_annotator: dict[str, dict[str, int]] = field(default_factory=dict)  # done, skipped, waiting
    reassigned: int = 0  # tasks created for a third annotator after a skip
    exhausted: dict[str, str] = field(default_factory=dict)  # clip → why it went to the adjudicator alone
    notes: list[str] = field(default_factory=list)
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
    nothing_new: bool = False  # the server and the dataset were as the last sync left them: nothing was read or written

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
            report.problems.append(
                Problem(f"ls:{project_id}:{t['id']}", "duplicate task for a clip", f"clip {cid}; task {by_clip[cid]['id']} is used")
            )
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


def _progress(by_clip: dict[str, dict], labeled: set[str], skipped: set[str]) -> dict[str, int]:
    """One person's queue: done (a valid label), skipped, waiting (nothing yet, or only a bad label).
    Label Studio's task locks are not reported: with one organization per person only the owner
    can hold a lock on their own tasks."""
    done = sum(1 for c in by_clip if c in labeled)
    skip = sum(1 for c in by_clip if c in skipped and c not in labeled)
    return {"tasks": len(by_clip), "done": done, "skipped": skip, "waiting": len(by_clip) - done - skip}


def queue_progress(
    client: LabelStudio,
    settings: AnnotationSettings,
    roster: Roster,
    projects: Projects,
    read_tasks: Callable[[list[int]], dict[int, list[dict]]] | None = None,
) -> dict[str, dict[str, int]]:
    """Each person's queue as the server has it now (for `annotate status`; writes nothing)."""
    out = {}
    people = [*projects.first.items(), (roster.adjudicator, projects.adjudication)]
    bulk = read_tasks([pid for _, pid in people]) if read_tasks else None
    for who, pid in people:
        c = projects.client_for(pid, settings, client)
        tasks = bulk[pid] if bulk is not None else export_tasks(c, pid)
        by_clip = {(t.get("data") or {}).get("clip_id"): t for t in tasks}
        users = user_ids(c)
        labeled, skipped = set(), set()
        for cid, t in by_clip.items():
            for ann in t.get("annotations") or []:
                if user_of(ann.get("completed_by"), users) != who:
                    continue
                (skipped if ann.get("was_cancelled") else labeled).add(cid)
        out[who] = _progress(by_clip, labeled, skipped)
    return out


# ---------- a repeat sync with nothing new
# Label Studio stamps a task's `updated_at` whenever the task or one of its annotations is created,
# changed, skipped or deleted, and its data manager orders by that stamp. So (tasks, annotations,
# newest stamp) per project, with the dataset tables' versions, says whether anything changed since
# the last sync, in one small request per project instead of exporting every task.


def _newest(client: LabelStudio, project_id: int, since: str | None = None) -> tuple[int, int, str | None]:
    """(tasks, annotations, newest task stamp) of a project, or of its tasks stamped after `since`."""
    query: dict = {"ordering": ["-tasks:updated_at"]}
    if since:
        since = datetime.fromisoformat(since).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the only format its filter reads
        query["filters"] = {
            "conjunction": "and",
            "items": [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}],
        }
    pager = client.tasks.list(project=project_id, page=1, page_size=1, fields="task_only", query=json.dumps(query))
    newest = pager.items[0].updated_at if pager.items else None
    stamp = newest.isoformat() if hasattr(newest, "isoformat") else (str(newest) if newest else None)
    return pager.response.total, pager.response.total_annotations, stamp


def _state_path(ds: Dataset, settings: AnnotationSettings, roster: Roster, projects: Projects, document_root: Path) -> tuple[Path, str]:
    """The state file for this dataset and workflow, and a digest of what the sync's result depends on."""
    setup = json.dumps(
        [
            ds.root,
            settings.url,
            settings.media_subdir,
            settings.labels.field_values(),
            roster.annotators,
            roster.adjudicator,
            projects.first,
            projects.adjudication,
        ],
        sort_keys=True,
        default=list,
    )
    digest = hashlib.sha256(setup.encode()).hexdigest()
    return Path(document_root) / STATE_DIR / f"{digest[:20]}.json", digest


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _unchanged_report(state: dict) -> SyncReport:
    kept = state["report"]
    report = SyncReport(
        clips=kept["clips"],
        per_annotator=kept["per_annotator"],
        exhausted=kept["exhausted"],
        pending_adjudication=kept["pending_adjudication"],
        incomplete=kept["incomplete"],
        kept_imported=kept["kept_imported"],
        problems=[Problem(**p) for p in kept["problems"]],
        nothing_new=True,
    )
    report.notes.append(f"nothing new since the sync of {state['at']}: no task, label or clip changed, so nothing was read or written")
    return report


def _save_state(path: Path, digest: str, fingerprint: dict, report: SyncReport) -> None:
    kept = {k: getattr(report, k) for k in ("clips", "per_annotator", "exhausted", "pending_adjudication", "incomplete", "kept_imported")}
    kept["problems"] = [p.__dict__ for p in report.problems]
    state = {"setup": digest, "at": datetime.now(UTC).isoformat(timespec="seconds"), "fingerprint": fingerprint, "report": kept}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, default=str))


def _fingerprint_after(clients: dict[int, LabelStudio], seen: dict[str, list], touched: dict[int, int]) -> dict[str, list] | None:
    """Each project's fingerprint once this run's own writes are in, or None when someone else
    changed a project the run wrote to while it ran (the next sync then reads everything again).
    A project the run did not write keeps the fingerprint read before it was exported."""
    out = {}
    for pid, c in clients.items():
        before = seen[str(pid)]
        if not touched.get(pid):
            out[str(pid)] = before
            continue
        now = list(_newest(c, pid))
        since = _newest(c, pid, since=before[2])[0] if before[2] else now[0]
        if since != touched[pid] or now[1] != before[1]:
            return None
        out[str(pid)] = now
    return out


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
    read_tasks: Callable[[list[int]], dict[int, list[dict]]] | None = None,
) -> SyncReport:
    """Run every step once; raises SyncInterrupted (with the partial report) if the server goes away.

    `read_tasks`: a bulk read of projects' tasks with annotations in the export format (a local
    server's `LocalServer.read_tasks`); without it each project goes through the export API."""
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
        t0 = enter("check")
        clients = {pid: projects.client_for(pid, settings, client) for pid in [*projects.first.values(), projects.adjudication]}
        state_path, digest = _state_path(ds, settings, roster, projects, document_root)
        seen = {str(pid): list(_newest(c, pid)) for pid, c in clients.items()}
        versions = ds.versions()
        fingerprint = {"projects": seen, **{t: versions.get(t) for t in ("clips", "annotations", "labels")}}
        state = _read_state(state_path)
        done("check", t0)
        if state.get("setup") == digest and state.get("fingerprint") == fingerprint:
            skipped = _unchanged_report(state)
            skipped.notes += list(projects.notes)
            skipped.seconds = report.seconds
            return skipped
        state_path.unlink(missing_ok=True)  # from here on the server or the dataset may differ from it
        touched: dict[int, int] = {}  # project → tasks this run created or changed

        t0 = enter("media")
        clips = ds.read("clips", columns=["clip_id", "transcript", "singer", "suspected_hallucination"])
        report.clips = clips.num_rows
        known = set(clips.column("clip_id").to_pylist())
        media_dir = Path(document_root) / settings.media_subdir
        have = {p.stem for p in media_dir.glob("*.flac")} if media_dir.exists() else set()
        if known - have:
            audio = ds.read("clips", columns=["clip_id", "audio_flac"])
            mask = [cid not in have for cid in audio.column("clip_id").to_pylist()]
            report.media_written = write_media(audio.filter(pa.array(mask)), media_dir)
        by_id = {
            r["clip_id"]: ClipForTask(r["clip_id"], r["transcript"], r["singer"], bool(r["suspected_hallucination"]))
            for r in clips.to_pylist()
        }
        done("media", t0)

        t0 = enter("export")
        report.notes += list(projects.notes)
        bulk = read_tasks(list(clients)) if read_tasks else {pid: export_tasks(c, pid) for pid, c in clients.items()}
        exported = {a: bulk[pid] for a, pid in projects.first.items()}
        done("export", t0)

        t0 = enter("pull")
        records, problems = [], []
        existing: dict[str, set[str]] = {}
        skipped_by: dict[str, set[str]] = {}
        for a, tasks in exported.items():
            pid = projects.first[a]
            users = user_ids(clients[pid])
            by_clip = _index_tasks(tasks, pid, report)
            for cid in by_clip:
                existing.setdefault(cid, set()).add(a)
            recs, probs, skips = records_from_export(
                tasks, project_id=pid, round="first", expected_annotator=a, known_clips=known, users=users, labels=settings.labels
            )
            for cid, _ in skips:
                skipped_by.setdefault(cid, set()).add(a)
            report.per_annotator[a] = _progress(by_clip, {r.clip_id for r in recs}, {c for c, _ in skips})
            records += recs
            problems += probs
            report.skipped += len(skips)
        _save_annotations(ds, records, problems, report)
        done("pull", t0)

        t0 = enter("import")
        # A label already in the dataset counts as a task had, even if its project is gone (a project
        # replaced with `setup --replace-missing`): only clips that still need a label are sent again.
        first = ds.to_pandas("annotations", columns=["clip_id", "annotator", "round"])
        first = first[first["round"] == "first"]
        for cid, who in zip(first["clip_id"], first["annotator"]):
            existing.setdefault(cid, set()).add(who)
        plan = assign(sorted(known), roster, existing, skipped_by)
        report.exhausted = plan.exhausted
        for a, cids in plan.todo.items():
            if cids:
                enter(f"import:{a}")
                pid = projects.first[a]
                report.tasks_created[a] = _import(clients[pid], pid, [task_data(by_id[c], settings.media_subdir) for c in cids])
                touched[pid] = touched.get(pid, 0) + report.tasks_created[a]
                report.reassigned += sum(1 for c in cids if c in skipped_by)
        done("import", t0)

        t0 = enter("adjudication-pull")
        adj_client = clients[projects.adjudication]
        adj_tasks = bulk[projects.adjudication]
        adj_by_clip = _index_tasks(adj_tasks, projects.adjudication, report)
        recs, probs, skips = records_from_export(
            adj_tasks,
            project_id=projects.adjudication,
            round="adjudication",
            expected_annotator=roster.adjudicator,
            known_clips=known,
            users=user_ids(adj_client),
            labels=settings.labels,
        )
        report.skipped += len(skips)
        report.per_annotator[roster.adjudicator] = _progress(adj_by_clip, {r.clip_id for r in recs}, {c for c, _ in skips})
        _save_annotations(ds, recs, probs, report)
        done("adjudication-pull", t0)

        t0 = enter("resolve")
        now = datetime.now(UTC)
        annotations = ds.to_pandas("annotations")
        res = resolve(annotations, now, plan.exhausted)
        report.incomplete = len(res.incomplete)
        report.pending_adjudication = len(res.pending)
        done("resolve", t0)

        t0 = enter("adjudication-push")
        wanted = {p.clip_id: p.first_labels_text() for p in res.to_adjudicate}
        if plan.exhausted:
            first = annotations[annotations["round"] == "first"] if not annotations.empty else annotations
            for cid, why in plan.exhausted.items():
                if cid not in wanted:
                    rows = first[first["clip_id"] == cid] if not first.empty else first
                    wanted[cid] = lone_labels_text([{f: r[f] for f in FIELDS} for _, r in rows.iterrows()], why)
        new = []
        for cid, text in sorted(wanted.items()):
            data = {**task_data(by_id[cid], settings.media_subdir), "first_labels": text}
            task = adj_by_clip.get(cid)
            if task is None:
                new.append(data)
            elif (task.get("data") or {}).get("first_labels") != text:
                adj_client.tasks.update(id=task["id"], data=data)  # a first-round label changed since
                report.adjudication_updated += 1
        if new:
            report.adjudication_created = _import(adj_client, projects.adjudication, new)
        touched[projects.adjudication] = report.adjudication_created + report.adjudication_updated
        done("adjudication-push", t0)

        t0 = enter("labels")
        _save_labels(ds, res.labels, report)
        done("labels", t0)

        t0 = enter("record")
        after = _fingerprint_after(clients, seen, touched)
        if after is not None:
            versions = ds.versions()
            fingerprint = {"projects": after, "clips": fingerprint["clips"], **{t: versions.get(t) for t in ("annotations", "labels")}}
            _save_state(state_path, digest, fingerprint, report)
        done("record", t0)
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
    now = datetime.now(UTC)
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
