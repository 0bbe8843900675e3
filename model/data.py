"""Training examples from the Parquet dataset: clips ⋈ labels (plus language from takes).

The training stage reads nothing but the dataset folder; every problem that would make training
meaningless (no labelled clips, clips without audio, a task with one class) is a DataError that
says what and where.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from model.config import TASKS
from pipeline.dataset import Dataset
from pipeline.errors import InputError
from pipeline.vocabulary import EMOTIONS, STYLES, LabelSets, normalize_label

VOCABULARY = {"style": STYLES, "emotion": EMOTIONS}


class DataError(InputError):
    """The dataset cannot train this model; the message says why and where."""


@dataclass
class Example:
    clip_id: str
    singer: str
    audio_flac: bytes | None  # None: not held in memory (load_examples(lazy_audio=True)); audio() reads it
    transcript: str = ""
    language: str | None = None
    labels: dict[str, str | None] = field(default_factory=dict)  # task → class name or None (missing)
    key: str | None = field(default=None, repr=False)  # content_key, when known without the audio at hand
    dataset: Dataset | None = field(default=None, repr=False, compare=False)  # where audio() reads lazy audio

    @property
    def content_key(self) -> str:
        """Identity of the clip's audio, so cached features follow content, not ids."""
        return self.key or hashlib.sha256(self.audio()).hexdigest()[:24]

    def audio(self) -> bytes:
        """The clip's FLAC: held, or read from the dataset (this clip's row only)."""
        if self.audio_flac is not None:
            return self.audio_flac
        if self.dataset is None:
            raise DataError(f"clip {self.clip_id}: its audio is not loaded and no dataset was given to read it from")
        for batch in self.dataset.scan("clips", ["audio_flac"], {"clip_id": [self.clip_id]}, 1):
            return bytes(batch.column("audio_flac")[0].as_py())
        raise DataError(f"clip {self.clip_id}: not in the clips table of {self.dataset.root}")


def content_key_of(audio_flac: bytes) -> str:
    return hashlib.sha256(audio_flac).hexdigest()[:24]


def stream_audio(dataset: Dataset, clip_ids, batch_rows: int = 64):
    """(clip_id, FLAC bytes) of those clips, a record batch at a time (the table's order): what
    training holds is one batch of audio, not the clips table."""
    for batch in dataset.scan("clips", ["clip_id", "audio_flac"], {"clip_id": list(clip_ids)}, batch_rows):
        yield from zip(batch.column("clip_id").to_pylist(), batch.column("audio_flac").to_pylist())


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def load_examples(
    dataset: Dataset | str,
    tasks: tuple[str, ...] = TASKS,
    vocabulary: dict[str, tuple[str, ...]] | None = None,
    lazy_audio: bool = False,
) -> list[Example]:
    """Every labelled clip with audio, in clip_id order (deterministic).

    Labels are normalized (pipeline.vocabulary) and must be in `vocabulary` (default: the project's
    one label set): a stray class such as "furious" would otherwise become a class of its own and
    change the head the model is trained with. With `lazy_audio` the examples do not hold their FLAC:
    it is read a batch at a time to key each clip by content, and again where features must be
    computed (training at scale: 28.6k clips of audio would be GBs)."""
    vocabulary = {t: tuple(map(normalize_label, v)) for t, v in (vocabulary or VOCABULARY).items()}
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    columns = ["clip_id", "take_id", "singer", "transcript", "language"] + ([] if lazy_audio else ["audio_flac"])
    clips = ds.to_pandas("clips", columns=columns)
    labels = ds.to_pandas("labels", columns=["clip_id", "style", "emotion"])
    where = f"dataset {ds.root}"
    if clips.empty:
        raise DataError(f"{where}: the clips table is empty; ingest recordings first (cantolab ingest)")
    if labels.empty:
        raise DataError(f"{where}: the labels table is empty; annotate or import labels first")
    takes = ds.to_pandas("takes", columns=["take_id", "language"]) if ds.exists("takes") else None
    take_lang = {} if takes is None or takes.empty else dict(zip(takes["take_id"], takes["language"]))
    merged = clips.merge(labels, on="clip_id", how="inner").sort_values("clip_id")
    if merged.empty:
        raise DataError(f"{where}: no clip has a label ({len(clips)} clips, {len(labels)} labels share no clip_id)")
    keys: dict[str, str] = {}
    if lazy_audio:
        for cid, audio in stream_audio(ds, merged["clip_id"]):
            if audio:
                keys[cid] = content_key_of(audio)
        no_audio = [cid for cid in merged["clip_id"] if cid not in keys]
    else:
        no_audio = [cid for cid, audio in zip(merged["clip_id"], merged["audio_flac"]) if audio is None or len(audio) == 0]
    if no_audio:
        raise DataError(f"{where}: {len(no_audio)} labelled clip(s) have no audio, e.g. {', '.join(no_audio[:3])}")
    no_singer = [cid for cid, s in zip(merged["clip_id"], merged["singer"]) if _clean(s) is None]
    if no_singer:
        raise DataError(
            f"{where}: {len(no_singer)} labelled clip(s) have no singer (needed for singer-wise splits), e.g. {', '.join(no_singer[:3])}"
        )
    examples, outside = [], {}
    for row in merged.itertuples(index=False):
        lang = _clean(row.language) or _clean(take_lang.get(row.take_id))
        labs = {t: (normalize_label(v) if (v := _clean(getattr(row, t))) else None) for t in tasks}
        for t, v in labs.items():
            if v is not None and t in vocabulary and v not in vocabulary[t]:
                outside.setdefault((t, v), []).append(row.clip_id)
        if all(v is None for v in labs.values()):
            continue
        audio = None if lazy_audio else bytes(row.audio_flac)
        lazy = {"key": keys[row.clip_id], "dataset": ds} if lazy_audio else {}
        examples.append(Example(row.clip_id, str(row.singer), audio, _clean(row.transcript) or "", lang, labs, **lazy))
    if outside:
        detail = "; ".join(f"{t} {v!r} on {len(ids)} clip(s), e.g. {', '.join(ids[:2])}" for (t, v), ids in sorted(outside.items()))
        allowed = "; ".join(f"{t}: {', '.join(vocabulary[t])}" for t in sorted({t for t, _ in outside}))
        raise DataError(
            f"{where}: label(s) outside the vocabulary ({allowed}): {detail}. Fix the labels, or set the classes in the training config (styles, emotions)"
        )
    if not examples:
        raise DataError(f"{where}: no clip has a {' or '.join(tasks)} label")
    return examples


def label_maps(examples: list[Example], tasks: tuple[str, ...], vocabulary: LabelSets | None = None) -> dict[str, list[str]]:
    """Sorted class names per task; a task with fewer than two classes cannot be learned.

    With `vocabulary` (the settings file's `[labels]`), a class outside it is a DataError: the dataset
    and the label set the team agreed on disagree, and the model must not learn a stray class.
    """
    maps = {}
    allowed = vocabulary.field_values() if vocabulary is not None else {}
    for task in tasks:
        classes = sorted({e.labels.get(task) for e in examples} - {None})
        stray = [c for c in classes if task in allowed and c not in allowed[task]]
        if stray:
            raise DataError(
                f"{task} label(s) {stray} are not in the label vocabulary {list(allowed[task])}; "
                "add them to the [labels] table of the settings file ($CANTOLAB_SETTINGS) or fix the labels"
            )
        if len(classes) < 2:
            seen = classes[0] if classes else "no labels at all"
            raise DataError(
                f"task {task!r} has a single class ({seen}) in this dataset; a classifier needs at least two. "
                f"Label more clips, or train the other task alone (tasks={[t for t in tasks if t != task]})"
            )
        maps[task] = classes
    return maps


def encode_labels(examples: list[Example], maps: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Class indices per task; -1 marks a missing label (its loss is masked)."""
    out = {}
    for task, classes in maps.items():
        index = {c: i for i, c in enumerate(classes)}
        ys = []
        for e in examples:
            value = e.labels.get(task)
            if value is not None and value not in index:
                raise DataError(f"clip {e.clip_id}: {task} label {value!r} is not one of {classes}")
            ys.append(index[value] if value is not None else -1)
        out[task] = np.asarray(ys, dtype=np.int64)
    return out
