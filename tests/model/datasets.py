"""Small real datasets for the model tests: real clips through the real audio core into Parquet.

Labels come from each set's labels.csv (imported, as `make demo` does). GTSinger's reference lyrics
stand in for Whisper transcripts where a test needs text (only in these tests; ingest writes the
real transcripts).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.dataset import Dataset
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record


def pick(table: pd.DataFrame, singers: int, per_singer: int, by: str | None = None) -> pd.DataFrame:
    """The first `singers` singers (stratified by `by` when given), `per_singer` clips each."""
    names = sorted(table["singer"].unique())
    if by:
        groups = table.groupby("singer")[by].first()
        by_class: dict[str, list[str]] = {}
        for s in names:
            by_class.setdefault(groups[s], []).append(s)
        names, i = [], 0
        while len(names) < singers and any(by_class.values()):
            for cls in sorted(by_class):
                if by_class[cls] and len(names) < singers:
                    names.append(by_class[cls].pop(0))
            i += 1
    else:
        names = names[:singers]
    return pd.concat([table[table["singer"] == s].sort_values("path").head(per_singer) for s in names])


def build_dataset(root: Path, rows: pd.DataFrame, session: str, with_transcript: bool = False) -> Dataset:
    ds = Dataset(root)
    takes, clips, labels = [], [], []
    for row in rows.to_dict("records"):
        prepared = prepare_take(row["abs_path"])
        take_id = take_id_for_content(prepared.audio.sha256)
        takes.append(take_record(take_id, prepared, {"session": session, "singer": row["singer"], "language": row.get("language")}))
        clip = whole_clip_record(take_id, prepared, session, row["singer"])
        if with_transcript and isinstance(row.get("lyrics"), str):
            clip["transcript"] = row["lyrics"]
        clips.append(clip)
        style = row.get("style") if isinstance(row.get("style"), str) else None
        labels.append(
            {"clip_id": clip["clip_id"], "style": style, "emotion": row.get("emotion"), "resolution": "imported", "annotators": []}
        )
    ds.upsert("takes", takes)
    ds.upsert("clips", clips)
    ds.upsert("labels", labels)
    return ds
