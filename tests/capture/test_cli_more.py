"""Settings from capture.toml, the default input refused, play-back, and the virtual-device command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from capture import virtual_device as vd
from tests.capture.conftest import REPO, Device, capture_cli, only_take, record_args


def _without_device(device: Device) -> Device:
    env = {k: v for k, v in device.env.items() if not k.startswith("CANTOLAB_CAPTURE_")}
    return Device(env, device.config, device.source)


def test_the_system_default_alias_is_not_taken_silently(tmp_path, null_device):
    args = record_args(tmp_path / "REC", "--seconds", "1")
    i = args.index("--device")
    del args[i : i + 2]
    run = capture_cli(args, _without_device(null_device))
    text = " ".join(run.stdout.split())
    assert run.returncode == 2, run.stdout + run.stderr
    assert "does not say which interface records" in text and "cantolab_virtual_interface (ALSA)" in text
    assert not list(tmp_path.rglob("*.wav"))


def test_session_file_settings_are_shown_and_stored(tmp_path, null_device):
    recordings = tmp_path / "REC"
    recordings.mkdir()
    (recordings / "capture.toml").write_text('interface = "virtual"\nmicrophone = "Neumann U87 Ai"\nlanguage = "zh"\n')
    args = record_args(recordings, "--seconds", "1")
    i = args.index("--device")
    del args[i : i + 2]
    run = capture_cli(args, _without_device(null_device))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Neumann U87 Ai" in run.stdout and "capture.toml" in run.stdout
    _, js = only_take(recordings / "s01")
    m = json.loads(js.read_text())
    assert (m["device_name"], m["microphone"], m["language"]) == ("cantolab_virtual_interface", "Neumann U87 Ai", "zh")


def test_play_sends_the_take_bit_exactly_to_the_default_output(tmp_path, null_device):
    run = capture_cli(record_args(tmp_path / "REC", "--seconds", "1"), null_device)
    assert run.returncode == 0, run.stdout + run.stderr
    wav, _ = only_take(tmp_path / "REC" / "s01")
    out = tmp_path / "speakers.raw"
    config = tmp_path / "out.conf"  # the default output is an ALSA file PCM: what is played lands in `out`
    config.write_text(
        "pcm.null { type null }\n"
        f'pcm.cantolab_out {{ type file; slave.pcm "null"; file "{out}"; format "raw" }}\n'
        'pcm.speakers { type plug; slave { pcm "cantolab_out"; format S32_LE; rate 48000; channels 1 } }\n'
        'pcm.!default "speakers"\n'
    )
    device = Device({**null_device.env, "ALSA_CONFIG_PATH": str(config)}, config, null_device.source)
    run = capture_cli(["play", wav.stem[:20], "--recordings", str(tmp_path / "REC")], device)
    assert run.returncode == 0, run.stdout + run.stderr
    take, _ = sf.read(wav, dtype="int32")
    played = np.fromfile(out, dtype="<i4")
    start = int(np.flatnonzero(played)[0]) - int(np.flatnonzero(take)[0])  # PortAudio primes with silence
    assert np.array_equal(played[start : start + take.size], take)
    assert not np.any(played[start + take.size :])
    missing = capture_cli(["play", "nosuchtake", "--recordings", str(tmp_path / "REC")], device)
    assert missing.returncode == 2 and "no take 'nosuchtake'" in missing.stdout


@pytest.mark.timeout(90)
def test_virtual_device_command_starts_a_paced_input_and_stops_it(tmp_path):
    if not vd.jackd_available():
        pytest.skip("jackd or the ALSA JACK plugin (Debian jackd2, libasound2-plugins) is not installed")
    t = np.arange(44_100 * 3) / 44_100
    sf.write(tmp_path / "a440.wav", 0.25 * np.sin(2 * np.pi * 440 * t), 44_100, subtype="PCM_16")  # not 48 kHz: resampled
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JACK_", "ALSA_", "CANTOLAB_CAPTURE_"))}
    base.update(PYTHONPATH=str(REPO), COLUMNS="120")
    cli = [sys.executable, "-m", "flows.cli", "capture", "virtual-device"]
    folder = tmp_path / "vd"
    started = subprocess.run(
        [*cli, "start", str(tmp_path / "a440.wav"), "--folder", str(folder)], cwd=REPO, env=base, capture_output=True, text=True, timeout=60
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pid = json.loads((folder / "virtual-device.json").read_text())["pid"]
        env = dict(base)
        for line in started.stdout.splitlines():
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value
        assert env["CANTOLAB_CAPTURE_DEVICE"] == "virtual" and env["ALSA_CONFIG_PATH"].endswith("asound-paced.conf")
        args = record_args(tmp_path / "REC", "--seconds", "1")
        i = args.index("--device")
        del args[i : i + 2]  # the device comes from $CANTOLAB_CAPTURE_DEVICE
        t0 = time.monotonic()
        run = capture_cli(args, Device(env, folder, None))
        assert run.returncode == 0, run.stdout + run.stderr
        assert time.monotonic() - t0 >= 1.0  # paced
        wav, _ = only_take(tmp_path / "REC" / "s01")
        got, _ = sf.read(wav, dtype="float64")
        assert got.size == 48_000 and abs(np.abs(got).max() - 0.25) < 0.01
    finally:
        stopped = subprocess.run([*cli, "stop", "--folder", str(folder)], cwd=REPO, env=base, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"jackd {pid} ended" in stopped.stderr and stopped.stdout.startswith("unset "), (
        stopped.stdout + stopped.stderr
    )
    assert not (folder / "virtual-device.json").exists()
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX"  # gone (or a zombie for init to reap)
