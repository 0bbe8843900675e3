"""One way to read settings: a TOML file's table, validated into a frozen dataclass by pydantic.

The settings file (`--settings`, else $CANTOLAB_SETTINGS) holds one table per stage: `[labels]`
(the label vocabulary every stage reads), `[annotation]`, …. `validate(kind, data, where)` turns a
dict into the dataclass `kind`: nested tables become nested dataclasses, lists become tuples,
choices are `Literal`s, unknown keys are refused, and every message names the field
(`model.lr: Input should be a valid number`), raised as a ConfigError.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pipeline.errors import ConfigError

SETTINGS_ENV = "CANTOLAB_SETTINGS"


def settings_path(path: str | os.PathLike | None = None) -> Path | None:
    """The settings file: `path`, else $CANTOLAB_SETTINGS, else None (every default)."""
    chosen = path if path is not None else os.environ.get(SETTINGS_ENV) or None
    return Path(chosen).expanduser() if chosen is not None else None


def read_table(path: str | os.PathLike | None, table: str) -> dict:
    """The `[table]` of the settings file (an empty dict when there is no file or no such table)."""
    p = settings_path(path)
    if p is None:
        return {}
    if not p.is_file():
        raise ConfigError(f"{p}: settings file not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    value = data.get(table, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{p}: [{table}] must be a table, not {type(value).__name__}")
    return value
