"""Everything a command or flow needs to talk to the annotation workflow, resolved in one place.

Lookup order (first hit wins): explicit argument → environment → secrets file / local server.
  URL            CANTOLAB_LS_URL, else `url` in the secrets file, else the settings file/default
  token          CANTOLAB_LS_TOKEN, else `service_token` in the secrets file
  roster         CANTOLAB_ROSTER, else ~/.config/cantolab/roster.toml
  document root  CANTOLAB_LS_DOCUMENT_ROOT, else `document_root` in the secrets file
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from label_studio_sdk import LabelStudio

from annotation.client import Projects, connect, find_projects
from annotation.settings import AnnotationSettings, Roster, SettingsError, load_roster, read_secrets, service_token

DEFAULT_ROSTER = Path.home() / ".config" / "cantolab" / "roster.toml"


@dataclass
class Workspace:
    settings: AnnotationSettings
    roster: Roster
    client: LabelStudio
    token: str
    document_root: Path

    def projects(self) -> Projects:
        return find_projects(self.client, self.settings, self.roster)


def roster_path(path: str | os.PathLike | None) -> Path:
    return Path(path or os.environ.get("CANTOLAB_ROSTER") or DEFAULT_ROSTER)


def open_workspace(
    settings_path: str | None = None, roster: str | None = None, document_root: str | None = None
) -> Workspace:
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
