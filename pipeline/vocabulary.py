"""The label vocabulary, defined once: ingest, annotation and the model all read it from here.

Values are lowercase (a "Pop" from Label Studio and a "pop" from an import must never become two
classes). The paper's Table 2 has happy, sad and a rare mixed emotion. A team that labels other
classes sets `[labels]` in its settings file; everything downstream reads the same `LabelSets`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.settings import read_table, settings_path, validate

STYLES: tuple[str, ...] = ("pop", "bel canto")
EMOTIONS: tuple[str, ...] = ("happy", "sad", "mixed")
LABEL_FIELDS: tuple[str, ...] = ("style", "emotion")


def normalize_label(value: str) -> str:
    return str(value).strip().lower()


@dataclass(frozen=True)
class LabelSets:
    """The classes of each task; the order is the model's class order."""

    styles: tuple[str, ...] = STYLES
    emotions: tuple[str, ...] = EMOTIONS

    def __post_init__(self) -> None:
        for name in ("styles", "emotions"):
            values = tuple(normalize_label(v) for v in getattr(self, name))
            if len(values) < 2:
                raise ConfigError(f"labels.{name}: need at least two classes, got {list(values)}")
            if len(set(values)) != len(values):
                raise ConfigError(f"labels.{name}: a class is listed twice: {list(values)}")
            object.__setattr__(self, name, values)

    def field_values(self) -> dict[str, tuple[str, ...]]:
        return {"style": self.styles, "emotion": self.emotions}


def load_label_sets(path: str | os.PathLike | None = None) -> LabelSets:
    """The `[labels]` table of the settings file (`path`, else $CANTOLAB_SETTINGS); the defaults without one."""
    p = settings_path(path)
    return validate(LabelSets, read_table(p, "labels"), where=str(p or ""), table="labels")
