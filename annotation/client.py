"""Talking to Label Studio: the SDK client, users from the roster and the workflow's projects.

Open-source Label Studio has no per-project membership, no task routing to exactly N people and no
review step, so the workflow is built from plain projects (README, "For annotators"): one
first-round project per annotator, plus one adjudication project. Projects are found by title, so
`setup` is idempotent and needs no local state.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import requests
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotation.labeling import adjudication_config, annotator_config
from annotation.settings import AnnotationSettings, Roster

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


@dataclass(frozen=True)
class Projects:
    """Label Studio project ids of the workflow."""

    first: dict[str, int]  # annotator e-mail → that annotator's project
    adjudication: int

    def owner_of(self, project_id: int) -> str | None:
        for email, pid in self.first.items():
            if pid == project_id:
                return email
        return None


def first_title(settings: AnnotationSettings, email: str) -> str:
    """Label Studio titles hold 50 characters: the local part of the e-mail plus a hash keeps them unique."""
    h = hashlib.sha256(email.encode()).hexdigest()[:6]
    return f"{settings.project_prefix[:20]} · {email.split('@')[0][:16]} · {h}"


def adjudication_title(settings: AnnotationSettings) -> str:
    return f"{settings.project_prefix[:20]} · adjudication"


def _projects_by_title(client: LabelStudio) -> dict[str, int]:
    return {p.title: p.id for p in client.projects.list(page_size=1000)}


def _ensure_project(client, existing: dict[str, int], title: str, config: str, description: str, media: Path) -> int:
    if title in existing:
        pid = existing[title]
        client.projects.update(pid, label_config=config)
    else:
        pid = client.projects.create(
            title=title,
            label_config=config,
            description=description,
            show_skip_button=True,
            enable_empty_annotation=False,
            show_annotation_history=False,
            maximum_annotations=1,
        ).id
    storages = client.import_storage.local.list(project=pid)
    if not any(Path(s.path) == media for s in storages):
        # Audio is served from this folder under LOCAL_FILES_DOCUMENT_ROOT; tasks are created by the
        # sync (keyed by clip_id), so the storage is never synced itself.
        client.import_storage.local.create(project=pid, path=str(media), use_blob_urls=False, title="cantolab clips")
    return pid


def find_projects(client: LabelStudio, settings: AnnotationSettings, roster: Roster) -> Projects:
    existing = _projects_by_title(client)
    missing = [t for t in [*(first_title(settings, a) for a in roster.annotators), adjudication_title(settings)] if t not in existing]
    if missing:
        raise LookupError(f"Label Studio has no project {missing[0]!r}: run `cantolab annotate setup` first")
    return Projects(
        first={a: existing[first_title(settings, a)] for a in roster.annotators},
        adjudication=existing[adjudication_title(settings)],
    )


def setup_projects(client: LabelStudio, settings: AnnotationSettings, roster: Roster, media_dir: Path) -> Projects:
    """Create (or update) one first-round project per annotator and the adjudication project."""
    media_dir = Path(media_dir).resolve()
    media_dir.mkdir(parents=True, exist_ok=True)
    existing = _projects_by_title(client)
    first = {
        a: _ensure_project(
            client,
            existing,
            first_title(settings, a),
            annotator_config(settings.labels),
            f"First-round labels by {a} only. Label each clip on your own; the other label is in another project.",
            media_dir,
        )
        for a in roster.annotators
    }
    adj = _ensure_project(
        client,
        existing,
        adjudication_title(settings),
        adjudication_config(settings.labels),
        f"Disagreements between the two first-round labels; decided by {roster.adjudicator}.",
        media_dir,
    )
    return Projects(first=first, adjudication=adj)


def user_ids(client: LabelStudio) -> dict[int, str]:
    return {u.id: (u.email or "").lower() for u in client.users.list()}


def _signup_or_login(url: str, invite_token: str, email: str, password: str) -> requests.Session:
    s = requests.Session()
    s.get(f"{url}/user/signup/", params={"token": invite_token}, timeout=30).raise_for_status()
    r = s.post(
        f"{url}/user/signup/?token={invite_token}",
        data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")},
        headers={"Referer": f"{url}/user/signup/"},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 302:  # already signed up: log in instead
        s.get(f"{url}/user/login/", timeout=30)
        r = s.post(
            f"{url}/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")},
            headers={"Referer": f"{url}/user/login/"},
            allow_redirects=False,
            timeout=30,
        )
        if r.status_code != 302:
            raise PermissionError(f"{email}: could not sign up or log in to {url} (HTTP {r.status_code})")
    return s


def ensure_users(
    client: LabelStudio, settings: AnnotationSettings, roster: Roster, service_token: str, known: dict[str, dict]
) -> dict[str, dict]:
    """Make every roster member a user of the organization through its invite link.

    Returns {email: {"password", "token"}} for the users this call created or could log in with
    (`known` holds earlier passwords); users who signed up themselves keep their own secrets and are
    left alone.
    """
    members = set(user_ids(client).values())
    out: dict[str, dict] = {}
    invite = None
    for email in roster.everyone:
        entry = dict(known.get(email, {}))
        if email in members and not entry.get("password"):
            continue  # signed up on their own: their secrets are theirs
        if invite is None:
            r = requests.get(f"{settings.url}/api/invite", headers={"Authorization": f"Token {service_token}"}, timeout=30)
            r.raise_for_status()
            invite = r.json()["token"]
        entry.setdefault("password", secrets.token_urlsafe(16))
        session = _signup_or_login(settings.url, invite, email, entry["password"])
        r = session.get(f"{settings.url}/api/current-user/token", timeout=30)
        r.raise_for_status()
        entry["token"] = r.json()["token"]
        out[email] = entry
    if invite is not None:
        # The invite link's token shows up in the server's access log; retire it once used.
        requests.post(f"{settings.url}/api/invite/reset-token", headers={"Authorization": f"Token {service_token}"}, timeout=30)
    return out


