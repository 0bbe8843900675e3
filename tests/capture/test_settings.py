"""Session settings: option > environment > capture.toml > default, each value's origin kept."""

from __future__ import annotations

import pytest

from capture.settings import load_settings
from pipeline.errors import ConfigError


def test_precedence_and_origins(tmp_path, monkeypatch):
    for var in (
        "CANTOLAB_CAPTURE_DEVICE",
        "CANTOLAB_CAPTURE_CHANNEL",
        "CANTOLAB_CAPTURE_MICROPHONE",
        "CANTOLAB_CAPTURE_FORMAT",
        "CANTOLAB_CAPTURE_SETTINGS",
    ):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "capture.toml").write_text('interface = "Scarlett"\nchannel = 3\nmicrophone = "U87"\nsample_format = "24-bit"\n')
    s = load_settings(tmp_path, {})
    assert (s.interface, s.channel, s.microphone, s.sample_format) == ("Scarlett", 3, "U87", "PCM_24")
    assert s.source("channel") == "capture.toml" and s.file == tmp_path / "capture.toml"
    monkeypatch.setenv("CANTOLAB_CAPTURE_MICROPHONE", "TLM 103")
    s = load_settings(tmp_path, {"channel": 2})
    assert (s.channel, s.microphone) == (2, "TLM 103")
    assert (s.source("channel"), s.source("microphone"), s.source("interface")) == (
        "--channel",
        "$CANTOLAB_CAPTURE_MICROPHONE",
        "capture.toml",
    )


def test_nothing_set_means_no_microphone(tmp_path, monkeypatch):
    monkeypatch.delenv("CANTOLAB_CAPTURE_MICROPHONE", raising=False)
    monkeypatch.delenv("CANTOLAB_CAPTURE_SETTINGS", raising=False)
    s = load_settings(tmp_path, {})
    assert s.microphone == "" and s.source("microphone") == "default"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('channel = "two"', "channel"),
        ('sample_format = "PCM_16"', "PCM_24"),
        ('mic = "U87"', "unknown setting.*mic.*known: interface"),
        ("channel = ", "capture.toml"),
    ],
)
def test_bad_settings_files_name_the_problem(tmp_path, monkeypatch, text, words):
    monkeypatch.delenv("CANTOLAB_CAPTURE_SETTINGS", raising=False)
    monkeypatch.delenv("CANTOLAB_CAPTURE_FORMAT", raising=False)
    (tmp_path / "capture.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=words):
        load_settings(tmp_path, {})
