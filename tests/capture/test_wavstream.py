"""The streaming WAV writer, its repair, and take ids (no audio device needed)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import numpy as np
import pytest
import soundfile as sf

from capture import manifest as manifest_mod
from capture.manifest import TakeManifest, claim_take, read_manifest, write_manifest
from capture.wavstream import HEADER_BYTES, NotOurWav, WavStreamWriter, repair_wav
from pipeline.audio import load_audio
from tests.capture.conftest import generated_signal


def test_written_wav_is_bit_exact_24_bit(tmp_path):
    x = generated_signal(1.5)
    w = WavStreamWriter(tmp_path / "a.wav", 48_000)
    for block in np.array_split(x, 37):
        w.write(block)
    w.close()
    info = sf.info(tmp_path / "a.wav")
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (48_000, 1, "PCM_24", x.size)
    back, _ = sf.read(tmp_path / "a.wav", dtype="int32")
    assert np.array_equal(back, x)
    assert load_audio(tmp_path / "a.wav").frames == x.size  # the audio core accepts it as is


def test_header_counts_everything_flushed(tmp_path):
    x = generated_signal(1.0)
    w = WavStreamWriter(tmp_path / "a.wav", 48_000)
    w.write(x[:1000])
    w.flush()
    w.write(x[1000:3000])  # written but not yet flushed: the header still says 1000
    assert sf.info(tmp_path / "a.wav").frames == 1000
    w.flush()
    assert sf.info(tmp_path / "a.wav").frames == 3000


def test_repair_keeps_every_whole_frame_after_a_torn_write(tmp_path):
    x = generated_signal(0.5)
    path = tmp_path / "torn.wav"
    w = WavStreamWriter(path, 48_000)
    w.write(x[:4800])
    w.flush()
    w.write(x[4800:])
    os.close(w._fd)  # die without closing: header says 4800 frames
    with open(path, "ab") as fh:  # and a torn last sample
        fh.write(b"\x01\x02")
    rep = repair_wav(path)
    assert (rep.header_frames, rep.frames, rep.trimmed_bytes) == (4800, x.size, 2)
    back, _ = sf.read(path, dtype="int32")
    assert np.array_equal(back, x)
    assert path.stat().st_size == HEADER_BYTES + 3 * x.size
    assert repair_wav(path).changed is False  # idempotent


def test_repair_refuses_foreign_files(tmp_path):
    path = tmp_path / "f.wav"
    sf.write(path, np.zeros(100, np.float32), 48_000, subtype="FLOAT")
    with pytest.raises(NotOurWav, match="not a recorder WAV"):
        repair_wav(path)


def test_take_ids_are_unique_and_nothing_is_overwritten(tmp_path, monkeypatch):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ids = set()
    for _ in range(20):
        take_id, wav, fd = claim_take(tmp_path, "Singer A/1", when)
        os.close(fd)
        ids.add(take_id)
        assert take_id.startswith("20260102T030405Z-Singer_A_1-")
    assert len(ids) == 20
    # Force every candidate id to collide: claim must give up rather than reuse a file.
    existing = next(iter(ids))
    monkeypatch.setattr(manifest_mod.secrets, "token_hex", lambda n: existing.rsplit("-", 1)[1])
    before = (tmp_path / f"{existing}.wav").read_bytes()
    with pytest.raises(RuntimeError, match="free take id"):
        claim_take(tmp_path, "Singer A/1", when)
    assert (tmp_path / f"{existing}.wav").read_bytes() == before


def test_manifest_round_trip_and_unsafe_session(tmp_path):
    m = TakeManifest(take_id="t1", session="s", singer="x", song="y", peak_dbfs=-3.5)
    write_manifest(tmp_path / "t1.json", m)
    assert read_manifest(tmp_path / "t1.json") == m
    assert json.loads((tmp_path / "t1.json").read_text())["status"] == "recording"
    with pytest.raises(ValueError, match="path separator"):
        manifest_mod.safe_component("../etc", "session")
