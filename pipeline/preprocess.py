"""DC-offset removal, amplitude normalization and resampling — and nothing else.

No denoising, no compression, no EQ: breath noise and vibrato are what the model listens to, so the
processed signal is the input up to an offset and a gain (or a DC-blocking high-pass, when asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr

from pipeline.audio import TakeAudio
from pipeline.config import PreprocessConfig
from pipeline.errors import ConfigError, InputError
from pipeline.transcribe.types import WHISPER_RATE


def db(x: float) -> float:
    return float(20.0 * np.log10(x)) if x > 0 else float("-inf")


def remove_dc(x: np.ndarray, method: str = "mean", sample_rate: int = 48_000, highpass_hz: float = 5.0) -> tuple[np.ndarray, float]:
    """Return the signal without its DC component and the offset that was measured (its mean)."""
    x64 = np.asarray(x, dtype=np.float64)
    offset = float(x64.mean()) if x64.size else 0.0
    if method == "none":
        return x64, offset
    if method == "mean":
        return x64 - offset, offset
    if method == "highpass":
        from scipy.signal import butter, sosfiltfilt  # here, not at import: scipy.signal alone is ~70 MB and most runs never filter

        # Zero-phase 2nd-order Butterworth: removes DC and sub-audio drift without smearing transients.
        sos = butter(2, highpass_hz, btype="highpass", fs=sample_rate, output="sos")
        padlen = min(x64.size - 1, 3 * sample_rate // max(int(highpass_hz), 1))
        return sosfiltfilt(sos, x64, padlen=max(padlen, 0)), offset
    raise ConfigError(f"unknown DC method {method!r}")


def rms(x: np.ndarray) -> float:
    x64 = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x64 * x64))) if x64.size else 0.0


def normalize(
    x: np.ndarray, method: str = "peak", sample_rate: int = 48_000, cfg: PreprocessConfig = PreprocessConfig()
) -> tuple[np.ndarray, float]:
    """Scale to the configured target; returns the scaled signal and the gain applied in dB."""
    x64 = np.asarray(x, dtype=np.float64)
    if method == "none":
        return x64, 0.0
    peak = float(np.abs(x64).max()) if x64.size else 0.0
    if peak == 0.0:
        raise InputError("cannot normalize digital silence")
    if method == "peak":
        gain_db = cfg.target_peak_dbfs - db(peak)
    elif method == "rms":
        gain_db = cfg.target_rms_dbfs - db(rms(x64))
    elif method == "lufs":
        import pyloudnorm

        meter = pyloudnorm.Meter(sample_rate)
        loudness = meter.integrated_loudness(x64)
        if not np.isfinite(loudness):
            raise InputError("loudness is undefined (signal too short or too quiet for EBU R128 gating)")
        gain_db = cfg.target_lufs - loudness
    else:
        raise ConfigError(f"unknown normalization {method!r}")
    # RMS/LUFS targets must not clip: cap the gain so the peak stays under the ceiling.
    if method != "peak":
        gain_db = min(gain_db, cfg.peak_ceiling_dbfs - db(peak))
    return x64 * 10.0 ** (gain_db / 20.0), float(gain_db)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    return soxr.resample(np.asarray(x, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def to_whisper_input(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Whisper takes 16 kHz mono float32; no ffmpeg involved."""
    return resample(x, sample_rate, WHISPER_RATE)


@dataclass
class Processed:
    samples: np.ndarray  # float32
    sample_rate: int
    stats: dict = field(default_factory=dict)


def preprocess(audio: TakeAudio, cfg: PreprocessConfig = PreprocessConfig()) -> Processed:
    peak_in = float(np.abs(audio.samples).max()) if audio.frames else 0.0
    centred, offset = remove_dc(audio.samples, cfg.dc, audio.sample_rate, cfg.highpass_hz)
    scaled, gain_db = normalize(centred, cfg.normalize, audio.sample_rate, cfg)
    out = scaled.astype(np.float32)
    return Processed(
        samples=out,
        sample_rate=audio.sample_rate,
        stats={
            "dc_offset": offset,
            "gain_db": gain_db,
            "peak_dbfs_in": db(peak_in),
            "peak_dbfs_out": db(float(np.abs(out).max())),
            "rms_dbfs_out": db(rms(out)),
            "clipping_fraction": audio.clipping_fraction,
        },
    )
