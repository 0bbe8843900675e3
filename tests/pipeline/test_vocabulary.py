"""The one label vocabulary and the settings file's [labels] table."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.vocabulary import EMOTIONS, LabelSets, load_label_sets


def test_defaults_have_the_papers_mixed_emotion(monkeypatch):
    monkeypatch.delenv("CANTOLAB_SETTINGS", raising=False)
    assert "mixed" in EMOTIONS and load_label_sets() == LabelSets()


def test_labels_table_from_the_file_or_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "cantolab.toml"
    f.write_text('[labels]\nemotions = ["Happy", "sad", "calm"]\n')
    assert load_label_sets(f).emotions == ("happy", "sad", "calm") and load_label_sets(f).styles == LabelSets().styles
    monkeypatch.setenv("CANTOLAB_SETTINGS", str(f))
    assert load_label_sets().emotions == ("happy", "sad", "calm")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[labels]\nemotion = ["happy", "sad"]\n', "emotion"),
        ('[labels]\nemotions = ["happy"]\n', "at least two"),
        ('[labels]\nemotions = ["happy", "Happy"]\n', "twice"),
        ('[labels]\nemotions = "happy"\n', "emotions"),
        ("[labels\n", "TOML"),
    ],
)
def test_bad_labels_table_is_a_config_error_naming_the_field(tmp_path, text, message):
    f = tmp_path / "cantolab.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_label_sets(f)


def test_missing_settings_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_label_sets(tmp_path / "nope.toml")
