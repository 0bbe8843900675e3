"""DC removal, normalization and resampling: invariants, and no denoising."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio import TakeAudio, load_audio
from pipeline.config import PreprocessConfig
from pipeline.preprocess import db, normalize, preprocess, remove_dc, resample, rms, to_whisper_input
from pipeline.synth import SungNote, sung_note

signals = st.builds(
    lambda f0, amp, dc, breath, seed: sung_note(SungNote(f0_hz=f0, seconds=0.25, amplitude=amp, dc_offset=dc, breath=breath), seed=seed),
    f0=st.floats(80, 1000),
    amp=st.floats(0.01, 0.9),
    dc=st.floats(-0.09, 0.09),
    breath=st.floats(0.0, 0.05),
    seed=st.integers(0, 1000),
)


@settings(max_examples=40, deadline=None)
@given(x=signals)
def test_mean_dc_removal_leaves_zero_mean_and_the_rest_untouched(x):
    y, offset = remove_dc(x, "mean")
    assert offset == pytest.approx(x.mean())
    assert abs(y.mean()) < 1e-12
    np.testing.assert_allclose(y + offset, x, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(x=signals, target=st.floats(-20.0, -0.5))
def test_peak_normalization_hits_the_target_and_is_a_pure_gain(x, target):
    y, gain_db = normalize(x, "peak", cfg=PreprocessConfig(target_peak_dbfs=target))
    assert db(np.abs(y).max()) == pytest.approx(target, abs=1e-9)
    np.testing.assert_allclose(y, x * 10 ** (gain_db / 20), rtol=1e-12)


def _check_rms(x, target):
    """On target unless that would clip; then held at the peak ceiling, below the target, never above."""
    cfg = PreprocessConfig(target_rms_dbfs=target)
    y, gain_db = normalize(x, "rms", cfg=cfg)
    np.testing.assert_allclose(y, x * 10 ** (gain_db / 20), rtol=1e-12)  # a pure gain
    peak_out = db(np.abs(y).max())
    assert peak_out <= cfg.peak_ceiling_dbfs + 1e-9
    if peak_out < cfg.peak_ceiling_dbfs - 1e-6:
        assert db(rms(y)) == pytest.approx(target, abs=1e-6)
        return "on target"
    assert db(rms(y)) < target
    return "held at the ceiling"


@settings(max_examples=30, deadline=None)
@given(x=signals, target=st.floats(-40.0, -18.0))
def test_rms_normalization_hits_the_target_unless_it_would_clip(x, target):
    _check_rms(x, target)


def test_rms_normalization_both_ways():
    """A quiet note is raised to the target, a loud one lowered to it, a spiky one stops at the ceiling."""
    quiet = sung_note(SungNote(seconds=1.0, amplitude=0.01))
    loud = sung_note(SungNote(seconds=1.0, amplitude=0.9))
    assert _check_rms(quiet, -20.0) == "on target" and normalize(quiet, "rms", cfg=PreprocessConfig(target_rms_dbfs=-20.0))[1] > 0
    assert _check_rms(loud, -20.0) == "on target" and normalize(loud, "rms", cfg=PreprocessConfig(target_rms_dbfs=-20.0))[1] < 0
    spiky = quiet.copy()
    spiky[100] = 0.5  # crest factor far above 20 dB: the target would clip
    assert _check_rms(spiky, -12.0) == "held at the ceiling"


def test_lufs_normalization_reaches_target_loudness():
    import pyloudnorm

    x = sung_note(SungNote(seconds=3.0, amplitude=0.05))
    y, _ = normalize(x, "lufs", cfg=PreprocessConfig(target_lufs=-23.0))
    assert pyloudnorm.Meter(48000).integrated_loudness(y) == pytest.approx(-23.0, abs=0.05)


def test_highpass_removes_dc_and_keeps_the_voice():
    clean = sung_note(SungNote(seconds=2.0, f0_hz=220))
    y, offset = remove_dc(clean + 0.05, "highpass", 48000, highpass_hz=5.0)
    assert offset == pytest.approx(clean.mean() + 0.05)
    core = slice(4800, -4800)
    assert abs(y[core].mean()) < 1e-4
    # a 5 Hz high-pass leaves a 220 Hz voice essentially unchanged
    assert np.max(np.abs(y[core] - (clean[core] - clean.mean()))) < 5e-3


def test_processed_real_clip_is_input_up_to_offset_and_gain(gtsinger):
    """No denoising: breath and vibrato survive — the residual after undoing offset and gain is ~1 LSB."""
    row = gtsinger[gtsinger["subtype"] == "PCM_24"].iloc[3]
    clip = load_audio(row["abs_path"])
    out = preprocess(clip)
    gain = 10 ** (out.stats["gain_db"] / 20)
    reconstructed = out.samples.astype(np.float64) / gain + out.stats["dc_offset"]
    residual = reconstructed - clip.samples.astype(np.float64)
    assert np.max(np.abs(residual)) < 2**-23 / min(gain, 1.0) * 4
    assert out.stats["peak_dbfs_out"] == pytest.approx(-1.0, abs=1e-3)
    # The residual carries no signal: its correlation with the input is nil.
    assert abs(np.corrcoef(residual, clip.samples)[0, 1]) < 0.05


def test_resample_to_whisper_rate_keeps_pitch_and_length():
    x = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    y = to_whisper_input(x, 48000)
    assert y.dtype == np.float32 and y.size == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)
    assert resample(x, 48000, 48000).size == 48000


def test_silence_cannot_be_normalized():
    clip = TakeAudio(np.zeros(100, np.float32), 48000, "PCM_24", 1, "x.wav", "0" * 64)
    with pytest.raises(ValueError, match="digital silence"):
        preprocess(clip)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="normalize must be"):
        PreprocessConfig(normalize="loud")  # type: ignore[arg-type]
