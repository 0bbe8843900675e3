"""Level figures and the two-step check's verdicts on known signals."""

from __future__ import annotations

import numpy as np
import pytest

from capture.levels import CLIP_CODE, Meter, analyse_noise, analyse_singing, dbfs


def _int24(x: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(x) * 2**23).astype(np.int64).clip(-(2**23), 2**23 - 1) << 8).astype(np.int32)


def _tone(amplitude: float, seconds: float = 1.0, dc: float = 0.0) -> np.ndarray:
    t = np.arange(int(48_000 * seconds)) / 48_000
    return amplitude * np.sin(2 * np.pi * 440 * t) + dc


def test_noise_floor_is_the_rms_of_the_silence_without_dc():
    report = analyse_noise(_int24(_tone(1e-4, dc=0.01)), 48_000)
    assert report.noise_floor_dbfs == pytest.approx(dbfs(1e-4 / np.sqrt(2)), abs=0.5)
    assert report.dc_offset == pytest.approx(0.01, abs=1e-5)
    levels = [v.level for v in report.verdicts()]
    assert levels[0] == "good" and "warn" in levels  # quiet, but the DC offset is flagged
    assert not analyse_noise(_int24(_tone(0.01)), 48_000).ok  # -43 dBFS of hum: fix before recording


@pytest.mark.parametrize(
    ("amplitude", "level"),
    [
        (10 ** (-12 / 20), "good"),
        (10 ** (-4.5 / 20), "warn"),
        (10 ** (-2 / 20), "bad"),
        (10 ** (-24 / 20), "warn"),
        (10 ** (-40 / 20), "bad"),
    ],
)
def test_singing_peak_judged_against_headroom(amplitude, level):
    report = analyse_singing(_int24(_tone(amplitude)), 48_000)
    assert report.peak_dbfs == pytest.approx(dbfs(amplitude), abs=0.01)
    assert report.verdicts()[0].level == level and report.ok == (level != "bad")


def test_clipping_is_counted_at_the_largest_24_bit_code():
    x = _int24(np.array([0.1, 1.0, -1.0, 0.999, 1.5, -0.2]))
    meter = Meter()
    assert meter.update(x) == 3  # +full scale, -full scale, beyond (clamped)
    assert CLIP_CODE == (2**23 - 1) << 8
    report = analyse_singing(x, 48_000)
    assert report.clipped_samples == 3 and report.verdicts()[0].text.startswith("3 clipped samples")
