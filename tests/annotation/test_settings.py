"""Annotation settings: [annotation] validated by pipeline.settings; the labels come from [labels]."""

from __future__ import annotations

import pytest

from annotation.settings import AnnotationSettings
from pipeline.errors import ConfigError
from pipeline.vocabulary import LabelSets


def test_annotation_and_labels_tables(tmp_path, monkeypatch):
    monkeypatch.delenv("CANTOLAB_LS_URL", raising=False)
    f = tmp_path / "cantolab.toml"
    f.write_text('[annotation]\nproject_prefix = "Studio"\nurl = "http://127.0.0.1:9/"\n[labels]\nemotions = ["happy", "sad", "calm"]\n')
    s = AnnotationSettings.load(f)
    assert (s.project_prefix, s.url) == ("Studio", "http://127.0.0.1:9")
    assert s.labels == LabelSets(emotions=("happy", "sad", "calm"))
    monkeypatch.setenv("CANTOLAB_SETTINGS", str(f))
    assert AnnotationSettings.load() == s


@pytest.mark.parametrize(
    "text, message",
    [
        ('[annotation]\nprefix = "X"\n', "annotation.prefix: unknown setting"),
        ('[annotation]\nemotions = ["a", "b"]\n', "[labels] table"),
    ],
)
def test_bad_annotation_settings(tmp_path, text, message):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        AnnotationSettings.load(f)
    assert message in str(err.value)
