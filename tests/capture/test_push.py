"""`cantolab capture push` against a real S3 server (SeaweedFS): only finished takes, verified by
sha256 read back, idempotent, and a push killed mid-way resumes without duplicates."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from capture.push import push_recordings
from pipeline.manifest import TakeManifest, TakeStatus, write_manifest
from pipeline.objectstore import arrow_s3_filesystem

BUCKET = "cantolab-test"


def _take(root: Path, session: str, take_id: str, seconds: float, seed: int, **fields) -> Path:
    folder = root / session
    folder.mkdir(parents=True, exist_ok=True)
    audio = folder / f"{take_id}.wav"
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, int(48_000 * seconds))
    sf.write(audio, noise, 48_000, subtype="PCM_24")
    sha = hashlib.sha256(audio.read_bytes()).hexdigest()
    manifest = TakeManifest(take_id, session, "alto", "song", seconds=seconds, sha256=sha, status=TakeStatus.COMPLETE)
    for key, value in fields.items():
        setattr(manifest, key, value)
    write_manifest(audio.with_suffix(".json"), manifest)
    return audio


@pytest.fixture
def recordings(tmp_path) -> Path:
    root = tmp_path / "recordings"
    for i in range(6):
        _take(root, "s1" if i < 3 else "s2", f"take-{i}", 8.0, i, status=TakeStatus.RECOVERED if i == 5 else TakeStatus.COMPLETE)
    _take(root, "s2", "take-stopped", 2.0, 10, status=TakeStatus.STOPPED, error="disk full")
    _take(root, "s2", "take-recording", 2.0, 11, status=TakeStatus.RECORDING)
    _take(root, "s2", "take-discarded", 2.0, 12, discarded=True)
    bad = _take(root, "s2", "take-damaged", 2.0, 13)
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # damaged after recording: no longer its manifest's sha256
    bad.write_bytes(bytes(data))
    return root


PUSHABLE = [f"s1/take-{i}" for i in range(3)] + [f"s2/take-{i}" for i in range(3, 6)] + ["s2/take-stopped"]


def _store(env: dict, prefix: str) -> dict[str, str]:
    """Every object under the prefix → its sha256 (read back from the server)."""
    from pyarrow import fs

    filesystem = arrow_s3_filesystem(env)
    out = {}
    for info in filesystem.get_file_info(fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True)):
        if info.type == fs.FileType.File:
            with filesystem.open_input_stream(info.path) as f:
                out[info.path.removeprefix(f"{BUCKET}/{prefix}/")] = hashlib.sha256(f.read()).hexdigest()
    return out


def _expected(root: Path) -> dict[str, str]:
    return {
        f"{take}{ext}": hashlib.sha256((root / f"{take}{ext}").read_bytes()).hexdigest() for take in PUSHABLE for ext in (".wav", ".json")
    }


def test_only_finished_takes_verified_and_idempotent(s3_env, recordings, tmp_path):
    dest = f"s3://{BUCKET}/{tmp_path.name}"
    report = push_recordings(recordings, dest)
    assert sorted(report.pushed) == sorted(PUSHABLE) and report.already == []
    skipped = {s["take"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"s2/take-recording", "s2/take-discarded", "s2/take-damaged"}
    assert "recording" in skipped["s2/take-recording"] and "discarded" in skipped["s2/take-discarded"]
    assert "differs from its manifest" in skipped["s2/take-damaged"]
    assert _store(s3_env, tmp_path.name) == _expected(recordings)

    again = push_recordings(recordings, dest)
    assert again.pushed == [] and sorted(again.already) == sorted(PUSHABLE) and again.bytes_sent == 0
    verified = push_recordings(recordings, dest, verify=True)  # re-hashes what is there: still nothing to send
    assert verified.bytes_sent == 0 and sorted(verified.already) == sorted(PUSHABLE)

    # a later verdict on a pushed take (a rating) sends its manifest only, not its audio again
    manifest = recordings / "s1" / "take-0.json"
    manifest.write_text(manifest.read_text().replace('"rating": null', '"rating": 4'))
    later = push_recordings(recordings, dest)
    assert later.pushed == ["s1/take-0"] and later.bytes_sent == manifest.stat().st_size
    assert _store(s3_env, tmp_path.name) == _expected(recordings)


def test_push_killed_midway_resumes_without_duplicates(s3_env, recordings, tmp_path):
    dest = f"s3://{BUCKET}/{tmp_path.name}"
    env = os.environ | s3_env | {"COLUMNS": "200"}
    cmd = [sys.executable, "-m", "flows.cli", "capture", "push", str(recordings), dest]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # SIGKILL once the first take is in: the next upload is under way
        if line.startswith("pushed "):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "the push finished before it could be killed"
    partial = _store(s3_env, tmp_path.name)
    assert 0 < len(partial) < len(_expected(recordings))
    assert all(partial[k] == v for k, v in _expected(recordings).items() if k in partial and k.endswith(".json"))

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "already" in rerun.stdout  # what the killed run finished is not sent again
    assert _store(s3_env, tmp_path.name) == _expected(recordings)  # every take once, every byte verified
