"""One way to read settings: pydantic over the frozen dataclasses, errors that name the field."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.ingest import IngestSettings
from pipeline.settings import read_table, validate
from pipeline.vocabulary import LabelSets


def test_nested_tables_lists_and_round_trip():
    cfg = IngestSettings.from_dict(
        {"transcribe": {"temperature": [0.0, 0.5]}, "labels": {"emotions": ["happy", "sad"]}, "clips": {"max_seconds": 12}}
    )
    assert cfg.transcribe.temperature == (0.0, 0.5) and cfg.labels == LabelSets(emotions=("happy", "sad")) and cfg.clips.max_seconds == 12.0
    assert IngestSettings.from_dict(cfg.to_dict()) == cfg and IngestSettings.from_dict(cfg) is cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"backend": "whisper"}, "backend: Input should be 'auto', 'faster-whisper' or 'openai-whisper'"),
        ({"clips": {"min_seconds": "x"}}, "clips.min_seconds: Input should be a valid number"),
        ({"transcribe": {"beams": 2}}, "transcribe.beams: unknown setting"),
        ({"preprocess": {"normalize": "loud"}}, "preprocess.normalize: Input should be 'peak', 'rms', 'lufs' or 'none'"),
        ({"transcribe": {"beam_size": 0}}, "beam_size must be >= 1"),
        ({"labels": {"emotions": ["happy"]}}, "labels.emotions: need at least two classes"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        IngestSettings.from_dict(data)
    assert message in str(err.value)


def test_where_and_table_prefix_the_message(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[labels]\nstyles = ["a", 3]\n')
    with pytest.raises(ConfigError, match=r"s\.toml: labels\.styles\.1: Input should be a valid string"):
        validate(LabelSets, read_table(f, "labels"), where=str(f), table="labels")
    f.write_text("labels = 3\n")
    with pytest.raises(ConfigError, match=r"\[labels\] must be a table"):
        read_table(f, "labels")
