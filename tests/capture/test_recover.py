"""`recover` on takes left in the states a killed recorder leaves (no audio device needed)."""

from __future__ import annotations

import fcntl
import json
import os

import numpy as np
import soundfile as sf

from capture.manifest import TakeManifest, manifest_path, write_manifest
from capture.recover import recover_all
from capture.wavstream import WavStreamWriter
from pipeline.audio import sha256_file
from tests.capture.conftest import generated_signal


def _interrupted_take(folder, take_id, x, flushed):
    """A take as SIGKILL leaves it: manifest `recording`, header counting only the flushed part."""
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / f"{take_id}.wav"
    w = WavStreamWriter(wav, 48_000)
    w.write(x[:flushed])
    w.flush()
    w.write(x[flushed:])
    write_manifest(manifest_path(wav), TakeManifest(take_id=take_id, session=folder.name, singer="s", song="t", input_overflows=2))
    return wav, w


def test_recover_repairs_keeps_all_frames_and_is_idempotent(tmp_path):
    x = generated_signal(2.0)
    wav, w = _interrupted_take(tmp_path / "REC" / "s1", "take-a", x, 48_000)
    os.close(w._fd)  # the process is gone; its lock went with it
    assert sf.info(wav).frames == 48_000
    [outcome] = recover_all(tmp_path / "REC")
    assert outcome.recovered and outcome.frames == x.size and outcome.lost_header_frames == x.size - 48_000
    got, _ = sf.read(wav, dtype="int32")
    assert np.array_equal(got, x)
    m = json.loads(manifest_path(wav).read_text())
    assert (m["status"], m["recovered"], m["frames"], m["seconds"]) == ("recovered", True, x.size, 2.0)
    assert m["sha256"] == sha256_file(wav) and m["input_overflows"] == 2  # the last checkpoint's count
    assert recover_all(tmp_path / "REC")[0].action == "skipped: already recovered"


def test_a_take_still_being_recorded_is_left_alone(tmp_path):
    x = generated_signal(0.5)
    wav, w = _interrupted_take(tmp_path / "REC" / "s1", "take-live", x, 4_800)
    fcntl.flock(w._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the live recorder holds it
    try:
        before = wav.read_bytes()
        [outcome] = recover_all(tmp_path / "REC")
        assert outcome.action == "skipped: still being recorded by a running recorder"
        assert wav.read_bytes() == before
        assert json.loads(manifest_path(wav).read_text())["status"] == "recording"
    finally:
        w.close()


def test_a_wav_without_manifest_gets_one(tmp_path):
    x = generated_signal(0.5)
    folder = tmp_path / "REC" / "s2"
    folder.mkdir(parents=True)
    w = WavStreamWriter(folder / "orphan.wav", 48_000)
    w.write(x)
    os.close(w._fd)  # killed before the first flush: the header says 0 frames
    [outcome] = recover_all(tmp_path / "REC")
    assert outcome.recovered and outcome.frames == x.size
    m = json.loads((folder / "orphan.json").read_text())
    assert (m["take_id"], m["session"], m["status"], m["frames"]) == ("orphan", "s2", "recovered", x.size)
    assert "manifest was missing" in m["notes"]
