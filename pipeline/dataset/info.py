"""What a dataset holds, in the numbers people ask for first."""

from __future__ import annotations

from collections import Counter

from pipeline.dataset.schemas import SCHEMAS
from pipeline.dataset.store import Dataset


def summarize(ds: Dataset) -> dict:
    counts = {name: ds.count(name) for name in SCHEMAS}
    takes = ds.read("takes", ["take_id", "singer", "seconds"]).to_pylist()
    clips = ds.read("clips", ["clip_id", "singer", "start_s", "end_s", "suspected_hallucination"]).to_pylist()
    labels = ds.read("labels", ["clip_id", "style", "emotion", "resolution"]).to_pylist()
    clip_seconds = sum((c["end_s"] or 0.0) - (c["start_s"] or 0.0) for c in clips)
    take_seconds = sum(t["seconds"] or 0.0 for t in takes)
    singers = sorted({r["singer"] for r in [*takes, *clips] if r["singer"]})
    crosstab = Counter((lab["style"] or "—", lab["emotion"] or "—") for lab in labels)
    return {
        "root": ds.root,
        "rows": counts,
        "hours_takes": take_seconds / 3600.0,
        "hours_clips": clip_seconds / 3600.0,
        "singers": singers,
        "style_x_emotion": {f"{s} × {e}": n for (s, e), n in sorted(crosstab.items())},
        "style": dict(Counter(lab["style"] or "—" for lab in labels)),
        "emotion": dict(Counter(lab["emotion"] or "—" for lab in labels)),
        "resolution": dict(Counter(lab["resolution"] or "—" for lab in labels)),
        "suspected_hallucinations": sum(bool(c["suspected_hallucination"]) for c in clips),
    }
