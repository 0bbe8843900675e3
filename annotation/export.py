"""Exported Label Studio tasks → validated annotation records, and the problems left out.

A bad annotation never stops the sync: it becomes a Problem (reported and written to `rejects`)
and the rest goes on. Skipped tasks (`was_cancelled`) are neither labels nor problems: they are
returned as (clip, annotator) so the sync can send the clip to someone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.vocabulary import LabelSets

FIELDS = ("style", "emotion")


@dataclass(frozen=True)
class Problem:
    source: str  # ls:<project>:<task>[:<annotation>]
    reason: str
    details: str = ""


@dataclass(frozen=True)
class Record:
    clip_id: str
    annotator: str
    round: str
    style: str
    emotion: str
    created_at: datetime | None
    updated_at: datetime | None
    ls_project_id: int
    ls_task_id: int
    ls_annotation_id: int

    def row(self) -> dict:
        return dict(self.__dict__)


def _ts(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def user_of(completed_by, users: dict[int, str]) -> str | None:
    if isinstance(completed_by, dict):
        return (completed_by.get("email") or users.get(completed_by.get("id"), "")).lower() or None
    return users.get(completed_by)


def parse_choices(result: list, labels: LabelSets) -> tuple[dict[str, str], str | None]:
    """{field: value} from a result list, or the reason it is not a valid pair of single choices."""
    allowed = labels.field_values()
    found: dict[str, list[str]] = {f: [] for f in FIELDS}
    for item in result or []:
        name = item.get("from_name")
        if name in found and item.get("type") == "choices":
            found[name].extend(item.get("value", {}).get("choices", []))
    values = {}
    for f in FIELDS:
        if not found[f]:
            return {}, f"field missing: {f}"
        if len(found[f]) > 1:
            return {}, f"{f}: {len(found[f])} choices where one is allowed ({found[f]})"
        if found[f][0] not in allowed[f]:
            return {}, f"{f}: {found[f][0]!r} is not one of {list(allowed[f])}"
        values[f] = found[f][0]
    return values, None


def records_from_export(
    tasks: list[dict],
    *,
    project_id: int,
    round: str,
    expected_annotator: str,
    known_clips: set[str],
    users: dict[int, str],
    labels: LabelSets,
) -> tuple[list[Record], list[Problem], list[tuple[str, str]]]:
    """Validated records (the newest per task and annotator), problems, and (clip, annotator) skips."""
    best: dict[tuple[str, str], Record] = {}
    problems: list[Problem] = []
    skipped: list[tuple[str, str]] = []
    for task in tasks:
        tid = task.get("id")
        clip_id = (task.get("data") or {}).get("clip_id")
        anns = [a for a in task.get("annotations") or []]
        if not anns:
            continue
        if not clip_id or clip_id not in known_clips:
            problems.append(Problem(f"ls:{project_id}:{tid}", "task for an unknown clip", f"clip_id={clip_id!r}"))
            continue
        for ann in anns:
            source = f"ls:{project_id}:{tid}:{ann.get('id')}"
            user = user_of(ann.get("completed_by"), users)
            if ann.get("was_cancelled"):
                if user == expected_annotator:
                    skipped.append((clip_id, user))
                continue
            if user != expected_annotator:
                problems.append(
                    Problem(
                        source,
                        "annotator not on the roster for this project",
                        f"by {user!r}, expected {expected_annotator!r}; clip {clip_id}",
                    )
                )
                continue
            values, why = parse_choices(ann.get("result"), labels)
            if why:
                problems.append(Problem(source, why, f"clip {clip_id}, by {user}"))
                continue
            rec = Record(
                clip_id=clip_id,
                annotator=user,
                round=round,
                style=values["style"],
                emotion=values["emotion"],
                created_at=_ts(ann.get("created_at")),
                updated_at=_ts(ann.get("updated_at")),
                ls_project_id=project_id,
                ls_task_id=tid,
                ls_annotation_id=ann.get("id"),
            )
            key = (clip_id, user)
            old = best.get(key)
            if old is None or (rec.updated_at or rec.created_at or datetime.min.replace(tzinfo=UTC)) >= (
                old.updated_at or old.created_at or datetime.min.replace(tzinfo=UTC)
            ):
                best[key] = rec
    return list(best.values()), problems, skipped
