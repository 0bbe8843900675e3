"""One way to read settings: a TOML file's table, validated into a frozen dataclass by pydantic.

The settings file (`--settings`, else $CANTOLAB_SETTINGS) holds one table per stage: `[labels]`
(the label vocabulary every stage reads), `[annotation]`, …. `validate(kind, data, where)` turns a
dict into the dataclass `kind`: nested tables become nested dataclasses, lists become tuples,
choices are `Literal`s, unknown keys are refused, and every message names the field
(`model.lr: Input should be a valid number`), raised as a ConfigError.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from pipeline.errors import ConfigError

T = TypeVar("T")

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


def _forbid_extra(kind: Any, seen: set) -> None:
    """Unknown keys are refused in `kind` and every dataclass nested in it (pydantic reads `__pydantic_config__`)."""
    if kind in seen or not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        return
    seen.add(kind)
    if "__pydantic_config__" not in kind.__dict__:
        kind.__pydantic_config__ = ConfigDict(extra="forbid")
    for hint in typing.get_type_hints(kind).values():
        for inner in (hint, *typing.get_args(hint)):
            _forbid_extra(inner, seen)


@functools.cache
def _adapter(kind: type) -> TypeAdapter:
    _forbid_extra(kind, set())
    return TypeAdapter(kind)


def _message(exc: ValidationError, where: str, table: str) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in (*([table] if table else []), *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "unexpected_keyword_argument":
            msg = "unknown setting"
        elif err["type"] == "missing_argument":
            msg = "required setting is missing"
        problems.append(msg if not err["loc"] and ": " in msg else f"{field}: {msg}")  # __post_init__ names its field
    return (f"{where}: " if where else "") + "; ".join(problems)


def validate(kind: type[T], data: Mapping | T | None, where: str = "", table: str = "") -> T:
    """`data` as the frozen dataclass `kind` (an instance passes through): nested dicts become nested
    dataclasses, lists tuples, choices are checked against `Literal`s, unknown keys are refused.
    A ConfigError names each bad field (`model.lr: Input should be a valid number`), under `table` (the
    settings file's table, e.g. "labels"), prefixed by `where` (the file)."""
    if isinstance(data, kind):
        return data
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where or kind.__name__}: settings must be a table, not {type(data).__name__}")
    try:
        return _adapter(kind).validate_python(dict(data or {}))
    except ValidationError as exc:
        raise ConfigError(_message(exc, where, table)) from None
