"""Session settings: set once, shown before the first take, stored in every take's manifest.

Interface (by name), input channel, microphone and sample format come from, highest first: a command
option, the environment (`CANTOLAB_CAPTURE_DEVICE`, `_CHANNEL`, `_MICROPHONE`, `_FORMAT`), a
settings file (TOML: `--settings FILE`, `$CANTOLAB_CAPTURE_SETTINGS`, or `<recordings>/capture.toml`),
and last the defaults. Nothing is filled in silently: each value remembers where it came from, and
an unset microphone stays empty (and is shown as such) instead of becoming a model name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pydantic

from pipeline.errors import ConfigError

SETTINGS_FILE = "capture.toml"
ENV = {
    "interface": "CANTOLAB_CAPTURE_DEVICE",
    "channel": "CANTOLAB_CAPTURE_CHANNEL",
    "microphone": "CANTOLAB_CAPTURE_MICROPHONE",
    "sample_format": "CANTOLAB_CAPTURE_FORMAT",
}
OPTIONS = {"interface": "--device", "channel": "--channel", "microphone": "--microphone", "sample_format": "--format"}
# The one format capture writes (it never converts); the aliases are what people type.
SAMPLE_FORMATS = {"pcm_24": "PCM_24", "24": "PCM_24", "24-bit": "PCM_24", "s24": "PCM_24", "int24": "PCM_24"}


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class _FileSettings:
    interface: str | None = None
    channel: pydantic.PositiveInt | None = None
    microphone: str | None = None
    sample_format: str | None = None
    language: str | None = None


@dataclass
class CaptureSettings:
    interface: str | None = None  # a name substring or index; None: the system default input
    channel: int = 1
    microphone: str = ""
    sample_format: str = "PCM_24"
    language: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # setting -> "--option" | "$VAR" | file name | "default"
    file: Path | None = None  # the settings file read, if any

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")


def settings_path(recordings: Path, explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ConfigError(f"capture settings file {explicit} does not exist")
        return Path(explicit)
    env = os.environ.get("CANTOLAB_CAPTURE_SETTINGS")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"capture settings file {env} ($CANTOLAB_CAPTURE_SETTINGS) does not exist")
        return Path(env)
    candidate = Path(recordings) / SETTINGS_FILE
    return candidate if candidate.is_file() else None


def _read_file(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"capture settings file {path}: {exc}") from None
    unknown = sorted(set(data) - set(_FileSettings.__dataclass_fields__))
    if unknown:
        known = ", ".join(_FileSettings.__dataclass_fields__)
        raise ConfigError(f"capture settings file {path}: unknown setting(s) {', '.join(unknown)} (known: {known})")
    try:
        parsed = _FileSettings(**data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"capture settings file {path}: {problems}") from None
    return {k: v for k, v in vars(parsed).items() if v is not None}


def normalize_format(value: str, where: str) -> str:
    fmt = SAMPLE_FORMATS.get(str(value).strip().lower())
    if fmt is None:
        raise ConfigError(f"{where}: sample format {value!r} is not recorded by capture; it writes 48 kHz 24-bit PCM only (PCM_24)")
    return fmt


def load_settings(recordings: Path, options: dict[str, object], explicit_file: Path | None = None) -> CaptureSettings:
    """Merge options > environment > settings file > defaults, remembering each value's origin."""
    merged: dict[str, object] = {}
    sources: dict[str, str] = {}
    path = settings_path(recordings, explicit_file)
    if path is not None:
        for key, value in _read_file(path).items():
            merged[key], sources[key] = value, path.name
    for key, var in ENV.items():
        value = os.environ.get(var, "").strip()
        if value:
            merged[key], sources[key] = value, f"${var}"
    for key, value in options.items():
        if value not in (None, ""):
            merged[key], sources[key] = value, OPTIONS.get(key, key)
    if "channel" in merged:
        try:
            merged["channel"] = int(merged["channel"])
        except (TypeError, ValueError):
            raise ConfigError(f"input channel {merged['channel']!r} ({sources['channel']}) is not a number") from None
        if merged["channel"] < 1:
            raise ConfigError(f"input channel {merged['channel']} ({sources['channel']}) counts from 1")
    if "sample_format" in merged:
        merged["sample_format"] = normalize_format(str(merged["sample_format"]), sources["sample_format"])
    return CaptureSettings(**merged, sources=sources, file=path)
