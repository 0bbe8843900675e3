"""Level figures on known signals."""

from __future__ import annotations

import numpy as np
import pytest

from capture.levels import CLIP_CODE, Meter, analyse, dbfs


def _int24(x: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(x) * 2**23).astype(np.int64).clip(-(2**23), 2**23 - 1) << 8).astype(np.int32)


def test_sine_peak_rms_dc_and_noise_floor():
    t = np.arange(48_000 * 2) / 48_000
    signal = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01
    signal[:48_000 // 2] = 0.01 + 1e-4 * np.sin(2 * np.pi * 50 * t[: 48_000 // 2])  # quiet first half: the floor
    report = analyse(_int24(signal), 48_000)
    assert report.peak_dbfs == pytest.approx(dbfs(0.51), abs=0.01)
    assert report.dc_offset == pytest.approx(0.01 * 0.25 + 0.01 * 0.75, abs=1e-3)
    assert report.noise_floor_dbfs == pytest.approx(dbfs(1e-4 / np.sqrt(2)), abs=1.0)
    assert report.clipped_samples == 0
    assert any("DC offset" in a for a in report.advice())


def test_clipping_is_counted_at_the_largest_24_bit_code():
    x = _int24(np.array([0.1, 1.0, -1.0, 0.999, 1.5, -0.2]))
    meter = Meter()
    assert meter.update(x) == 3  # +full scale, -full scale, beyond (clamped)
    assert CLIP_CODE == (2**23 - 1) << 8
    assert analyse(x, 48_000).advice()[0].startswith("3 clipped samples")
