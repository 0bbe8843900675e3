"""Where the third-party reference recordings live (never copied into the repository)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from pipeline.errors import ConfigError
from pipeline.vocabulary import LabelSets

REPO_ROOT = Path(__file__).resolve().parent.parent
SETS = ("gtsinger", "ravdess_song")
# Each reference set's classes: GTSinger uses the default vocabulary; RAVDESS songs have six emotions.
LABEL_SETS = {
    "gtsinger": LabelSets(),
    "ravdess_song": LabelSets(emotions=("neutral", "calm", "happy", "sad", "angry", "fearful")),
}


def label_sets_for(names) -> LabelSets:
    """The vocabulary covering the given reference sets (the default one's classes first)."""
    styles = dict.fromkeys(LabelSets().styles)
    emotions = dict.fromkeys(LabelSets().emotions)
    for name in names:
        styles.update(dict.fromkeys(LABEL_SETS[name].styles))
        emotions.update(dict.fromkeys(LABEL_SETS[name].emotions))
    return LabelSets(tuple(styles), tuple(emotions))


def shared_data_dir() -> Path | None:
    """CANTOLAB_DATA, else ../shared/data beside the repository; None when neither exists."""
    env = os.environ.get("CANTOLAB_DATA")
    path = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"
    path = path if path.is_absolute() else (Path.cwd() / path)
    return path.resolve() if path.is_dir() else None


def read_labels(name: str, root: Path | None = None) -> pd.DataFrame:
    """One set's labels.csv, with `abs_path` resolved inside that set's folder."""
    if name not in SETS:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(SETS)}")
    root = root or shared_data_dir()
    if root is None:
        raise FileNotFoundError("no reference data: set CANTOLAB_DATA to the folder holding gtsinger/ and ravdess_song/")
    folder = root / name
    table = pd.read_csv(folder / "labels.csv", dtype={"singer": str})
    table["abs_path"] = [str(folder / p) for p in table["path"]]
    return table


def stage_session(rows: pd.DataFrame, session: Path, id_prefix: str, status: str | None = "complete") -> Path:
    """Copy reference clips into `session` as capture leaves takes: `take-NNN.flac` + a manifest each.

    For tests and benchmarks that need a recordings folder; the audio stays a copy in a temporary
    folder, never in the repository. `status=None` writes a manifest without one (another tool's).
    """
    session.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(rows.itertuples()):
        shutil.copyfile(r.abs_path, session / f"take-{i:03d}.flac")
        manifest = {"take_id": f"{id_prefix}-{i:03d}", "session": session.name, "singer": r.singer, "song": r.song, "language": "en"}
        if status is not None:
            manifest["status"] = status
        (session / f"take-{i:03d}.json").write_text(json.dumps(manifest))
    return session
