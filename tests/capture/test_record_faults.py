"""A full disk, a read-only recordings folder and unusable names: clear messages, no traceback, audio kept.

The full disk is a real one: a 2 MB tmpfs mounted for the test (needs root; without it the test is
skipped and `test_write_failure_ends_the_take_cleanly` still covers a failing write via RLIMIT_FSIZE).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import sha256_file
from tests.capture.conftest import capture_cli, only_take, record_args


@contextlib.contextmanager
def tmpfs(path, size: str, *options: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_mid_take_keeps_the_audio_and_says_why(tmp_path, null_device):
    with tmpfs(tmp_path / "small", "2m") as disk:
        recordings = disk / "REC"
        run = capture_cli(record_args(recordings, "--seconds", "20", "--min-free-minutes", "0"), null_device)
        out = run.stdout + run.stderr
        assert run.returncode == 1, out
        assert "Traceback" not in out
        assert "is full (No space left on device)" in " ".join(out.split()) and "stopped early" in out
        wav, js = only_take(recordings / "s01")
        m = json.loads(js.read_text())
        got, _ = sf.read(wav, dtype="int32")  # a valid WAV, header matching the bytes kept
        assert (m["status"], m["end_reason"], m["frames"]) == ("stopped", "disk full", got.size)
        assert got.size > 5 * 48_000  # nearly all of the 2 MB is audio
        assert np.array_equal(got, null_device.source.samples[: got.size])
        assert m["sha256"] == sha256_file(wav) and "No space left on device" in m["error"]
        assert not list((recordings / "s01").glob(".*"))  # the reserve and temp files are gone


def test_read_only_recordings_folder_is_a_clear_error(tmp_path, null_device):
    with tmpfs(tmp_path / "ro", "1m", "ro") as disk:
        run = capture_cli(record_args(disk / "REC", "--seconds", "1", "--min-free-minutes", "0"), null_device)
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, out
    assert "Traceback" not in out and "Read-only file system" in out and "--recordings" in out


@pytest.mark.parametrize(("session", "words"), [("bad\nname", "control character"), ("a/b", "path separator"), ("..", "cannot be used")])
def test_unusable_session_names_are_refused(tmp_path, null_device, session, words):
    run = capture_cli(record_args(tmp_path / "REC", "--seconds", "1", session=session), null_device)
    assert run.returncode == 2, run.stdout + run.stderr
    assert words in " ".join(run.stderr.split()) and "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "REC").exists()
