"""`capture check`'s two steps on the paced device: silence → noise floor, a known tone → peak and headroom."""

from __future__ import annotations

import numpy as np
import pytest

from capture import virtual_device as vd
from tests.capture.conftest import Device, _env, capture_cli

RATE = 48_000


def _device(tmp_path, jack48, tone_dbfs: float, noise_dbfs: float = -75.0) -> Device:
    rng = np.random.default_rng(3)
    noise = 10 ** (noise_dbfs / 20) * rng.standard_normal(int(1.5 * RATE))  # RMS = noise_dbfs
    t = np.arange(3 * RATE) / RATE
    tone = 10 ** (tone_dbfs / 20) * np.sin(2 * np.pi * 440 * t)
    x = np.concatenate([noise, tone, np.zeros(RATE)])
    samples = (np.round(x * 2**23).astype(np.int64).clip(-(2**23), 2**23 - 1) << 8).astype(np.int32)
    infile = vd.write_f32_infile(tmp_path / "check.f32", samples)
    config = vd.write_alsa_config(tmp_path, infile, paced=True)
    return Device(_env(config, jack48.env), config, None)


@pytest.mark.timeout(60)
def test_silence_then_a_tone_at_minus_12(tmp_path, jack48):
    run = capture_cli(["check", "--device", "virtual", "--seconds", "1", "--no-wait"], _device(tmp_path, jack48, -12.0))
    text = " ".join(run.stdout.split())
    assert run.returncode == 0, run.stdout + run.stderr
    floor = float(text.split("noise floor ")[1].split(" dBFS")[0])
    peak = float(text.split("2 singing 1.0 s: peak ")[1].split(" dBFS")[0])
    assert abs(floor - -75.0) < 1.0 and abs(peak - -12.0) < 0.1, text
    assert "ready to record" in text and "12.0 dB headroom" in text


@pytest.mark.timeout(60)
def test_a_hot_tone_and_a_noisy_room_are_judged_bad(tmp_path, jack48):
    run = capture_cli(["check", "--device", "virtual", "--seconds", "1", "--no-wait"], _device(tmp_path, jack48, -1.0, noise_dbfs=-45.0))
    text = " ".join(run.stdout.split())
    assert run.returncode == 1, run.stdout + run.stderr
    assert "fix before recording" in text and "lower the gain" in text and "too noisy" in text
