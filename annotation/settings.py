"""Annotation settings, the roster and where secrets come from.

Label sets and the roster live in small TOML files the team edits; tokens never do. A token is read
from the environment (CANTOLAB_LS_TOKEN for the sync's service account) or from the secrets file
(CANTOLAB_LS_SECRETS, default ~/.config/cantolab/labelstudio.json, written with mode 0600).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text
from pipeline.settings import read_table, settings_path, validate
from pipeline.vocabulary import LabelSets, load_label_sets

DEFAULT_URL = "http://127.0.0.1:8080"


class SettingsError(ConfigError):
    """A settings, roster or secrets file is missing something; the message says what and where."""


@dataclass(frozen=True)
class Roster:
    """Who labels: at least two annotators (each clip goes to two of them) and one adjudicator."""

    annotators: tuple[str, ...]
    adjudicator: str

    def __post_init__(self) -> None:
        if len(set(self.annotators)) < 2:
            raise SettingsError(f"roster: need at least two different annotators, got {list(self.annotators)}")
        if len(set(self.annotators)) != len(self.annotators):
            raise SettingsError(f"roster: an annotator is listed twice: {list(self.annotators)}")
        if self.adjudicator in self.annotators:
            raise SettingsError(f"roster: the adjudicator {self.adjudicator!r} must not also be a first-round annotator")
        for email in (*self.annotators, self.adjudicator):
            if "@" not in email:
                raise SettingsError(f"roster: {email!r} is not an e-mail address (Label Studio users are e-mails)")

    @property
    def everyone(self) -> tuple[str, ...]:
        return (*self.annotators, self.adjudicator)


@dataclass(frozen=True)
class AnnotationSettings:
    """Where the server is and what the projects are called; the label sets are the settings file's `[labels]`."""

    url: str = DEFAULT_URL
    labels: LabelSets = field(default_factory=LabelSets)
    project_prefix: str = "Cantolab"
    media_subdir: str = "cantolab-clips"  # under LOCAL_FILES_DOCUMENT_ROOT

    @staticmethod
    def load(path: str | os.PathLike | None = None) -> AnnotationSettings:
        """Defaults, then the [annotation] and [labels] tables of the settings file (`path`, else
        $CANTOLAB_SETTINGS), then CANTOLAB_LS_URL."""
        p = settings_path(path)
        data = read_table(p, "annotation")
        moved = {"styles", "emotions", "labels"} & set(data)
        if moved:
            raise SettingsError(f"{p}: {', '.join(sorted(moved))} belong in the [labels] table (styles, emotions), which every stage reads")
        if os.environ.get("CANTOLAB_LS_URL"):
            data["url"] = os.environ["CANTOLAB_LS_URL"]
        settings = validate(AnnotationSettings, {**data, "labels": load_label_sets(p)}, where=str(p or ""), table="annotation")
        return replace(settings, url=settings.url.rstrip("/"))


def load_roster(path: str | os.PathLike) -> Roster:
    """roster.toml: `annotators = ["a@x.org", "b@x.org"]`, `adjudicator = "c@x.org"`."""
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f'{p}: roster file not found (annotators = [...], adjudicator = "...")')
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML: {exc}") from exc
    if "annotators" not in data or "adjudicator" not in data:
        raise SettingsError(f"{p}: needs both `annotators` (a list) and `adjudicator`")
    return Roster(
        annotators=tuple(str(a).strip().lower() for a in data["annotators"]), adjudicator=str(data["adjudicator"]).strip().lower()
    )


def secrets_path() -> Path:
    return Path(os.environ.get("CANTOLAB_LS_SECRETS") or Path.home() / ".config" / "cantolab" / "labelstudio.json")


def read_secrets(path: Path | None = None) -> dict:
    p = path or secrets_path()
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{p}: secrets file is not valid JSON: {exc}") from exc


def write_secrets(update: dict, path: Path | None = None) -> Path:
    """Merge `update` into the secrets file, readable by its owner only."""
    p = path or secrets_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    data = read_secrets(p)
    for key, value in update.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    atomic_write_text(p, json.dumps(data, indent=2), perms=0o600)
    return p


def service_token(path: Path | None = None) -> str:
    """The sync's token: CANTOLAB_LS_TOKEN, else `service_token` in the secrets file."""
    token = os.environ.get("CANTOLAB_LS_TOKEN") or read_secrets(path).get("service_token")
    if not token:
        raise SettingsError(
            f"no Label Studio token: set CANTOLAB_LS_TOKEN or put `service_token` in {path or secrets_path()} "
            "(`cantolab annotate server start` writes it for a local server)"
        )
    return token
