"""Bad input to training gets a clear error naming the problem."""

import pytest

from model.data import DataError, label_maps, load_examples
from pipeline.dataset import Dataset


def test_empty_dataset(tmp_dataset):
    with pytest.raises(DataError, match="clips table is empty"):
        load_examples(tmp_dataset)


def _copy(src: Dataset, dst: Dataset, clip_filter=lambda r: True, label_edit=lambda r: r):
    clips = [r for r in src.read("clips").to_pylist() if clip_filter(r)]
    dst.upsert("clips", clips)
    keep = {c["clip_id"] for c in clips}
    dst.upsert("labels", [label_edit(r) for r in src.read("labels").to_pylist() if r["clip_id"] in keep])
    return clips


def test_clips_without_labels(gt_small, tmp_dataset):
    tmp_dataset.upsert("clips", gt_small.read("clips").to_pylist())
    with pytest.raises(DataError, match="labels table is empty"):
        load_examples(tmp_dataset)


def test_clip_without_audio_is_named(gt_small, tmp_dataset):
    clips = _copy(gt_small, tmp_dataset)
    broken = dict(clips[0], audio_flac=None)
    tmp_dataset.upsert("clips", [broken])
    with pytest.raises(DataError, match=rf"no audio, e\.g\. {broken['clip_id']}"):
        load_examples(tmp_dataset)


def test_a_task_with_one_class(gt_small, tmp_dataset):
    _copy(gt_small, tmp_dataset, label_edit=lambda r: dict(r, style="pop"))
    examples = load_examples(tmp_dataset)
    with pytest.raises(DataError, match=r"task 'style' has a single class \(pop\)"):
        label_maps(examples, ("style", "emotion"))
    assert label_maps(examples, ("emotion",))["emotion"] == ["happy", "sad"]


def test_missing_style_is_kept_as_missing(mixed_small):
    examples = load_examples(mixed_small)
    rav = [e for e in examples if e.singer.startswith("actor")]
    assert rav and all(e.labels["style"] is None and e.labels["emotion"] in ("happy", "sad") for e in rav)
    assert all(e.language for e in examples if not e.singer.startswith("actor"))  # from the takes' manifests
