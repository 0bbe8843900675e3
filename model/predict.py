"""Style and emotion probabilities per clip, from a saved run: dataset clips, or WAV/FLAC files.

The model stack (torch, the feature extractors, scikit-learn through model.train) is imported where
a model is loaded or run, not with this module: `cantolab predict` checks its files first, so a file
it refuses (a 2-hour take, from its header) costs the audio core's imports only (issue 14.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.audio import AudioError
from pipeline.errors import InputError

if TYPE_CHECKING:
    from model.checkpoint import LoadedModel
    from model.data import Example
    from pipeline.dataset import Dataset

AUDIO_SUFFIXES = (".wav", ".flac")


def audio_files(target: str | Path) -> list[Path]:
    p = Path(target)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{p}: no .wav or .flac files in this folder")
        return files
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return [p]


@dataclass
class Rejected:
    path: str
    reason: str


def examples_from_files(
    paths: list[Path], singer: str = "session", transcript: str = "", rejected: list[Rejected] | None = None
) -> list[Example]:
    """A take in the capture format (or any WAV/FLAC) through the same audio core as ingest.

    With `rejected` given, a file that cannot be read is recorded there (path and reason) and the rest
    carry on; without it the first bad file raises."""
    from model.data import Example
    from pipeline.records import prepare_take

    out = []
    for path in paths:
        try:
            prepared = prepare_take(path)
        except (AudioError, InputError, OSError) as exc:
            if rejected is None:
                raise
            rejected.append(Rejected(str(path), str(exc)))
            continue
        out.append(Example(clip_id=str(path), singer=singer, audio_flac=prepared.flac, transcript=transcript))
    return out


def predict_examples(model: LoadedModel, examples: list[Example], dataset=None) -> list[dict]:
    """One row per clip: clip_id, then per task the predicted class and each class's probability.

    With per-singer feature normalization the clips given together are standardized per singer (a
    session's clips by the same singer), as in training.
    """
    from model.features import clip_features, normalize_features
    from model.train import pick_device, predict_proba

    cfg = model.config
    device = pick_device(cfg.device)
    model.net.to(device)
    feats = None
    if model.feature:
        # at the precision training read them: its feature store keeps float16, as ingest's `features` table does
        raw = [f.astype(np.float16).astype(np.float32) for f in clip_features(examples, model.feature, dataset, device=str(device))]
        feats, _ = normalize_features(raw, [e.singer for e in examples], cfg.feature_norm, model.norm_ref)
    probs = predict_proba(model.net, feats, [e.transcript for e in examples], cfg.eval_max_frames, device)
    rows = []
    for i, e in enumerate(examples):
        row = {"clip_id": e.clip_id}
        for task, classes in model.maps.items():
            p = probs[task][i]
            row[task] = classes[int(np.argmax(p))]
            row[f"{task}_confidence"] = float(np.max(p))
            row.update({f"p_{task}_{c}": float(v) for c, v in zip(classes, p)})
        rows.append(row)
    return rows


def predict_paths(run: str | Path, target: str | Path, transcript: str = "", rejected: list[Rejected] | None = None) -> list[dict]:
    """Rows for every readable file under `target`; unreadable ones go to `rejected` when it is given
    (a folder with one bad take still gets predictions for the others).

    The files are read before the model is loaded: when none can be read (a take over the length
    limit is refused from its header) the model stack is never imported.
    """
    examples = examples_from_files(audio_files(target), transcript=transcript, rejected=rejected)
    if not examples:
        return []
    from model.checkpoint import load_run

    return predict_examples(load_run(run), examples)


def predict_clips(run: str | Path, dataset: Dataset | str, clip_ids: list[str] | None = None) -> list[dict]:
    """Per dataset clip (all, or those named): clip_id and `<task>_probs` {class: probability}.

    The shape a pre-annotation push or any other consumer needs, independent of training labels.
    """
    from model.checkpoint import load_run
    from model.data import Example
    from pipeline.dataset import Dataset

    model = load_run(run)
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    wanted = set(clip_ids) if clip_ids is not None else None
    examples = [
        Example(clip_id=r["clip_id"], singer=r["singer"] or "unknown", audio_flac=r["audio_flac"],
                transcript=r["transcript"] or "", language=r["language"])
        for r in ds.read("clips", ["clip_id", "singer", "audio_flac", "transcript", "language"]).to_pylist()
        if wanted is None or r["clip_id"] in wanted
    ]  # fmt: skip
    if not examples:
        return []
    rows = predict_examples(model, examples, ds)
    return [
        {"clip_id": r["clip_id"], **{f"{t}_probs": {c: r[f"p_{t}_{c}"] for c in classes} for t, classes in model.maps.items()}}
        for r in rows
    ]
