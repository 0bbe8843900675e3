"""Everything a command or flow needs to talk to the annotation workflow, resolved in one place.

Lookup order (first hit wins): explicit argument → environment → secrets file / local server.
  URL            CANTOLAB_LS_URL, else `url` in the secrets file, else the settings file/default
  token          CANTOLAB_LS_TOKEN, else `service_token` in the secrets file
  roster         CANTOLAB_ROSTER, else ~/.config/cantolab/roster.toml
  document root  CANTOLAB_LS_DOCUMENT_ROOT, else `document_root` in the secrets file
  projects       `workspaces[<url>]` in the secrets file: the project ids `setup` made and the
                 token of each project's organization (recorded by id, never found by title)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from label_studio_sdk import LabelStudio

from annotation.client import Projects, check_projects, connect
from annotation.settings import AnnotationSettings, Roster, SettingsError, load_roster, read_secrets, service_token, write_secrets

DEFAULT_ROSTER = Path.home() / ".config" / "cantolab" / "roster.toml"


@dataclass
class Workspace:
    settings: AnnotationSettings
    roster: Roster
    client: LabelStudio
    token: str
    document_root: Path

    def recorded(self) -> Projects | None:
        return recorded_projects(self.settings.url)

    def projects(self) -> Projects:
        return check_projects(self.settings, self.roster, self.recorded())

    def record(self, projects: Projects) -> Path:
        return record_projects(self.settings.url, projects)

    def local_server(self, home: str | os.PathLike | None = None):
        """The local server run from `home` (default CANTOLAB_LS_HOME) when it is this workspace's
        server and is running: its database can then be read in bulk (tasks, locks); else None."""
        from annotation.server import DEFAULT_HOME, LocalServer

        srv = LocalServer(home=Path(home) if home else DEFAULT_HOME)
        return srv if srv.url == self.settings.url.rstrip("/") and srv.pid() is not None and srv.database.exists() else None


def recorded_projects(url: str) -> Projects | None:
    state = read_secrets().get("workspaces", {}).get(url.rstrip("/"))
    return Projects.from_state(state) if state else None


def record_projects(url: str, projects: Projects) -> Path:
    """Kept in the secrets file (mode 0600): the state holds each organization's service token."""
    return write_secrets({"workspaces": {url.rstrip("/"): projects.as_state()}})


def roster_path(path: str | os.PathLike | None) -> Path:
    return Path(path or os.environ.get("CANTOLAB_ROSTER") or DEFAULT_ROSTER)


def open_workspace(settings_path: str | None = None, roster: str | None = None, document_root: str | None = None) -> Workspace:
    settings = AnnotationSettings.load(settings_path)
    secrets = read_secrets()
    if not os.environ.get("CANTOLAB_LS_URL") and secrets.get("url"):
        settings = replace(settings, url=secrets["url"].rstrip("/"))
    root = document_root or os.environ.get("CANTOLAB_LS_DOCUMENT_ROOT") or secrets.get("document_root")
    if not root:
        raise SettingsError(
            "no document root for clip audio: set CANTOLAB_LS_DOCUMENT_ROOT to the server's LOCAL_FILES_DOCUMENT_ROOT "
            "(`cantolab annotate server start` records it for a local server)"
        )
    token = service_token()
    return Workspace(settings, load_roster(roster_path(roster)), connect(settings, token), token, Path(root))
