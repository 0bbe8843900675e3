"""Talking to Label Studio: the SDK client, one organization per person, the workflow's projects.

Open-source Label Studio has no per-project membership, no task routing to exactly N people and no
review step. What it does enforce is the organization: every project, task, annotation and user
query is filtered by the caller's organization. So each person on the roster gets an organization
of their own (annotation/labelstudio_admin.py) holding only their project — an annotator's
first-round project, or the adjudicator's adjudication project — and that organization's service
user, whose token the sync uses. Projects are recorded by id in the workspace (the secrets file,
under the server's URL), never looked up by title: a renamed project keeps working, a deleted one is
reported and never silently recreated empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import requests
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotation.labeling import adjudication_config, annotator_config
from annotation.settings import AnnotationSettings, Roster, SettingsError

# What "the server went away" looks like from either HTTP stack.
UNAVAILABLE = (httpx.TransportError, requests.ConnectionError, requests.Timeout, ConnectionError)


class ServerUnavailable(RuntimeError):
    """Label Studio could not be reached; nothing was lost, the next run resumes."""


def connect(settings: AnnotationSettings, token: str, timeout: float = 120.0) -> LabelStudio:
    return LabelStudio(base_url=settings.url, api_key=token, timeout=timeout)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    return isinstance(exc, ApiError) and exc.status_code in (502, 503, 504)


class ProjectMissing(LookupError):
    """A recorded project is gone (deleted in Label Studio) or the workspace has none yet."""


@dataclass(frozen=True)
class Projects:
    """Label Studio project ids of the workflow, and the token that reaches each one."""

    first: dict[str, int]  # annotator e-mail → that annotator's project
    adjudication: int
    tokens: dict[int, str] = field(default_factory=dict, repr=False)  # project id → its organization's service token
    notes: tuple[str, ...] = ()  # e.g. a project renamed in Label Studio (harmless: found by id)

    def owner_of(self, project_id: int) -> str | None:
        for email, pid in self.first.items():
            if pid == project_id:
                return email
        return None

    def client_for(self, project_id: int, settings: AnnotationSettings, default: LabelStudio) -> LabelStudio:
        token = self.tokens.get(project_id)
        return connect(settings, token) if token else default

    def as_state(self) -> dict:
        return {"first": self.first, "adjudication": self.adjudication, "tokens": {str(k): v for k, v in self.tokens.items()}}

    @staticmethod
    def from_state(state: dict) -> Projects:
        return Projects(
            first=dict(state["first"]),
            adjudication=int(state["adjudication"]),
            tokens={int(k): v for k, v in state.get("tokens", {}).items()},
        )


def person_key(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()[:10]


def service_email(email: str) -> str:
    """The service user that owns a person's organization (no name in it: colleagues never see it anyway)."""
    return f"cantolab-sync+{person_key(email)}@cantolab.local"


def first_title(settings: AnnotationSettings, email: str) -> str:
    """Label Studio titles hold 50 characters; the hash keeps them unique without showing a name."""
    return f"{settings.project_prefix[:24]} · labels · {person_key(email)[:6]}"


def adjudication_title(settings: AnnotationSettings) -> str:
    return f"{settings.project_prefix[:24]} · adjudication"


def _create_project(client, title: str, config: str, description: str, media: Path) -> int:
    pid = client.projects.create(
        title=title,
        label_config=config,
        description=description,
        show_skip_button=True,
        enable_empty_annotation=False,
        show_annotation_history=False,
        maximum_annotations=1,
    ).id
    # Audio is served from this folder under LOCAL_FILES_DOCUMENT_ROOT; tasks are created by the
    # sync (keyed by clip_id), so the storage is never synced itself.
    client.import_storage.local.create(project=pid, path=str(media), use_blob_urls=False, title="cantolab clips")
    return pid


def _get_project(client, pid: int):
    try:
        return client.projects.get(id=pid)
    except ApiError as exc:
        if exc.status_code == 404:
            return None
        raise


def _missing_message(who: str, pid: int) -> str:
    return (
        f"Label Studio project {pid} ({who}) is gone: it was deleted in Label Studio or the server's data "
        "dir changed. Labels already synced are safe in the dataset's `annotations` table. Restore the "
        "server's data dir from a backup, or run `cantolab annotate setup --replace-missing` to give "
        f"{who} a new, empty project (the next sync sends it the clips that still need labels)."
    )


def setup_projects(
    organizer,
    settings: AnnotationSettings,
    roster: Roster,
    media_dir: Path,
    recorded: Projects | None = None,
    replace_missing: bool = False,
) -> Projects:
    """One organization per person, each annotator's project in theirs, the adjudication project in
    the adjudicator's. `organizer` is the LocalServer (it runs annotation/labelstudio_admin.py).
    Recorded projects are reused by id (a renamed one keeps its new title); one recorded but gone is
    an error unless `replace_missing`."""
    media_dir = Path(media_dir).resolve()
    media_dir.mkdir(parents=True, exist_ok=True)
    people = [
        {"email": e, "title": f"{settings.project_prefix[:24]} · {person_key(e)[:6]}", "service_email": service_email(e)}
        for e in roster.everyone
    ]
    orgs = organizer.organize(people)
    tokens: dict[int, str] = {}
    recorded_first = recorded.first if recorded else {}

    def ensure(email: str, pid: int | None, title: str, config: str, description: str) -> int:
        client = connect(settings, orgs[email]["service_token"])
        if pid is not None:
            if _get_project(client, pid) is not None:
                client.projects.update(id=pid, label_config=config)
                tokens[pid] = orgs[email]["service_token"]
                return pid
            if not replace_missing:
                raise ProjectMissing(_missing_message(email, pid))
        pid = _create_project(client, title, config, description, media_dir)
        tokens[pid] = orgs[email]["service_token"]
        return pid

    first = {
        a: ensure(
            a,
            recorded_first.get(a),
            first_title(settings, a),
            annotator_config(settings.labels),
            "Your own queue: label each clip on your own. Nobody else can see or open this project.",
        )
        for a in roster.annotators
    }
    adj = ensure(
        roster.adjudicator,
        recorded.adjudication if recorded else None,
        adjudication_title(settings),
        adjudication_config(settings.labels),
        "Clips whose two labels differ (or that annotators skipped): decide the final label.",
    )
    return Projects(first=first, adjudication=adj, tokens=tokens)


def check_projects(settings: AnnotationSettings, roster: Roster, recorded: Projects | None) -> Projects:
    """The recorded projects, each checked to exist; renamed ones are noted, deleted ones raise."""
    if recorded is None:
        requests.get(f"{settings.url}/health", timeout=30)  # a server that is not answering says so first
        raise ProjectMissing(f"no Label Studio projects recorded for {settings.url}: run `cantolab annotate setup` first")
    missing = [a for a in roster.annotators if a not in recorded.first]
    if missing:
        raise ProjectMissing(f"{missing[0]} is on the roster but has no project yet: run `cantolab annotate setup` (it adds theirs)")
    notes = []
    for who, pid, title in [
        *((a, recorded.first[a], first_title(settings, a)) for a in roster.annotators),
        (f"adjudication, {roster.adjudicator}", recorded.adjudication, adjudication_title(settings)),
    ]:
        client = connect(settings, recorded.tokens.get(pid, ""))
        project = _get_project(client, pid)
        if project is None:
            raise ProjectMissing(_missing_message(who, pid))
        if project.title != title:
            notes.append(f"project {pid} ({who}) was renamed to {project.title!r}; it is still used (projects are found by id)")
    first = {a: recorded.first[a] for a in roster.annotators}
    return Projects(first=first, adjudication=recorded.adjudication, tokens=recorded.tokens, notes=tuple(notes))


def user_ids(client: LabelStudio) -> dict[int, str]:
    return {u.id: (u.email or "").lower() for u in client.users.list()}


def invite_link(settings: AnnotationSettings, service_token: str) -> str:
    """The server's sign-up link. A person who signs up through it chooses their own password (the
    admin never sees it) and is moved at once into their own organization (placement file)."""
    r = requests.get(f"{settings.url}/api/invite", headers={"Authorization": f"Token {service_token}"}, timeout=30)
    r.raise_for_status()
    return f"{settings.url}/user/signup/?token={r.json()['token']}"


def reset_invite(settings: AnnotationSettings, service_token: str) -> None:
    """Retire the sign-up link (its token also shows in the server's access log once used)."""
    r = requests.post(f"{settings.url}/api/invite/reset-token", headers={"Authorization": f"Token {service_token}"}, timeout=30)
    r.raise_for_status()


def require_roster_member(roster: Roster, email: str) -> str:
    email = email.strip().lower()
    if email not in roster.everyone:
        raise SettingsError(
            f"{email} is not on the roster ({', '.join(roster.everyone)}): add them first, then run `cantolab annotate setup`"
        )
    return email
