"""A real Label Studio for the tests: started once per test process from .venv-labelstudio on a free
loopback port with a temporary home, stopped by its PID at exit (also importable from tests/flows)."""

from __future__ import annotations

import atexit
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from annotation.server import DEFAULT_VENV, LocalServer, free_port

_SERVER: LocalServer | None = None


def real_server() -> LocalServer:
    global _SERVER
    if not (DEFAULT_VENV / "bin" / "label-studio").exists():
        pytest.skip("Label Studio's venv is missing: run `make setup` (scripts/setup.sh builds .venv-labelstudio)")
    if _SERVER is None:
        home = Path(tempfile.mkdtemp(prefix="cantolab-ls-"))
        srv = LocalServer(home=home, port=free_port())
        atexit.register(lambda: (srv.stop(), shutil.rmtree(home, ignore_errors=True)))
        srv.start(wait_s=300)
        _SERVER = srv
    elif not _SERVER.healthy():
        _SERVER.start(wait_s=300)  # a test killed it on purpose: restart on the same data dir
    return _SERVER


@pytest.fixture(scope="session")
def ls_server():
    srv = real_server()
    yield srv
    srv.stop()


@dataclass
class ClipSpec:
    clip_id: str
    singer: str
    transcript: str
    corpus_style: str
    corpus_emotion: str


def build_clip_dataset(ds, gtsinger, n: int, offset: int = 0) -> list[ClipSpec]:
    """Real clips: the reference recordings' audio as 48 kHz / 24-bit FLAC rows of `clips`."""
    from pipeline.audio import encode_flac, load_audio
    from pipeline.ids import clip_id

    rows, specs = [], []
    for _, r in gtsinger.iloc[offset : offset + n].iterrows():
        clip = load_audio(r["abs_path"])
        take = "take-" + clip.sha256[:16]
        cid = clip_id(take, 0.0, round(clip.seconds, 3))
        rows.append(
            {
                "clip_id": cid,
                "take_id": take,
                "session": "annotation-tests",
                "singer": r["singer"],
                "start_s": 0.0,
                "end_s": clip.seconds,
                "audio_flac": encode_flac(clip.samples, clip.sample_rate),
                "sample_rate": clip.sample_rate,
                "transcript": r["lyrics"],
                "language": r["language"].lower(),
            }
        )
        specs.append(ClipSpec(cid, r["singer"], r["lyrics"], r["style"], r["emotion"]))
    ds.upsert("clips", rows)
    return specs


@pytest.fixture(autouse=False)
def isolated_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("CANTOLAB_LS_SECRETS", str(tmp_path / "secrets.json"))
    return tmp_path / "secrets.json"


def signup(url: str, email: str, password: str, invite: str) -> requests.Session:
    """What a person does with `cantolab annotate invite`'s link: sign up with their own password."""
    s = requests.Session()
    s.get(invite, timeout=30).raise_for_status()
    r = s.post(
        invite,
        data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")},
        headers={"Referer": invite},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, f"sign-up of {email} failed: HTTP {r.status_code}"
    return s


@dataclass
class Workflow:
    server: LocalServer
    settings: object
    roster: object
    projects: object
    users: dict  # email → {"password", "token"} (chosen by the test as the person would)
    service: object  # SDK client with the server's own service token (first organization)
    dataset: object
    clips: list
    document_root: Path

    def client_for(self, email: str):
        from annotation.client import connect

        return connect(self.settings, self.users[email]["token"])

    def org(self, project_id: int):
        """The SDK client of the organization that holds this project (its service user)."""
        return self.projects.client_for(project_id, self.settings, self.service)


def make_workflow(
    server: LocalServer, root: Path, prefix: str, clips_from, n_clips: int, offset: int = 0, n_annotators: int = 3
) -> Workflow:
    from annotation.client import connect, invite_link, setup_projects
    from annotation.settings import AnnotationSettings, Roster
    from pipeline.dataset import Dataset

    token, _ = server.credentials()
    settings = AnnotationSettings(url=server.url, project_prefix=prefix)
    roster = Roster(
        annotators=tuple(f"{prefix.lower()}-ann{i}@example.org" for i in range(1, n_annotators + 1)),
        adjudicator=f"{prefix.lower()}-adj@example.org",
    )
    service = connect(settings, token)
    projects = setup_projects(server, settings, roster, server.document_root / settings.media_subdir)
    link = invite_link(settings, token)
    users = {}
    for email in roster.everyone:
        password = secrets.token_urlsafe(12)
        session = signup(settings.url, email, password, link)
        r = session.get(f"{settings.url}/api/current-user/token", timeout=30)
        r.raise_for_status()
        users[email] = {"password": password, "token": r.json()["token"]}
    ds = Dataset(root / "dataset")
    specs = build_clip_dataset(ds, clips_from, n_clips, offset)
    return Workflow(server, settings, roster, projects, users, service, ds, specs, server.document_root)


@pytest.fixture(scope="session")
def workflow(ls_server, gtsinger, tmp_path_factory):
    """Projects and clips shared by tests that only need synced tasks (browser, predictions)."""
    return make_workflow(ls_server, tmp_path_factory.mktemp("wf"), "Shared", gtsinger, 4, offset=30)
