"""The pitch stream: F0 and voicing at 100 frames/s → singing-technique cues at the model's 25 frames/s.

Why: frozen Whisper states and log-mel frames carry timbre, and timbre identifies the singer (and in
GTSinger the singer's language decides the style). Vibrato, pitch stability and glides are about how
a phrase is sung, not who sings it, and are measured relative to the clip's own pitch, so the
singer's register (a "male classical voice") is not among them.

F0 comes from librosa's probabilistic YIN (pyin) for voicing and the voiced/unvoiced decision,
refined by plain YIN's continuous estimate where both agree: pyin's Viterbi grid is kept coarse
(a quarter semitone) because its default grid costs ~0.6 s per second of audio on one core, ten
times this. `torchcrepe`, which the design named, cannot be used here: it imports torchaudio at
module level and no torchaudio build exists for this project's CPU torch.

Per frame (PITCH_FEATURES, all relative to the clip, 0 where unvoiced):
voicing probability; semitones from the clip's median voiced pitch; vibrato extent (semitones, std
of the contour minus its 0.3-s trend over 0.64 s); vibrato rate (Hz, strongest 3-9 Hz component of
that detrended contour); vibrato strength (share of the detrended power in 4-8 Hz); stability (std of
the 0.3-s trend's frame-to-frame change: slow drift and wobble); glide (|slope| of the trend,
semitones/s); voiced share of the surrounding 0.64 s.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PITCH = "pitch-pyin@25fps"  # the feature key (cache folder) of the pitch stream
PITCH_SUFFIX = "+pitch"  # appended to an audio feature key: audio frames with the pitch stream's columns after them
PITCH_FEATURES = (
    "voicing_prob",
    "semitones_from_median",
    "vibrato_extent",
    "vibrato_rate",
    "vibrato_strength",
    "stability",
    "glide",
    "voiced_share",
)
PITCH_DIM = len(PITCH_FEATURES)
RATE = 16_000
HOP = 160  # 100 frames/s
FMIN, FMAX = 65.0, 1100.0  # C2 .. C#6: bass to soprano
WINDOW = 64  # 0.64 s: two to five vibrato cycles
TREND = 31  # 0.31 s moving average: the note's course without the vibrato


def track(audio16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz with NaN where unvoiced, voicing probability), both at 100 frames/s."""
    import librosa

    y = np.ascontiguousarray(audio16k, dtype=np.float32)
    if len(y) < 2048:
        y = np.pad(y, (0, 2048 - len(y)))
    kw = {"fmin": FMIN, "fmax": FMAX, "sr": RATE, "frame_length": 1024, "hop_length": HOP}
    f0, voiced, prob = librosa.pyin(y, **kw, resolution=0.25, n_thresholds=20)
    fine = librosa.yin(y, **kw)
    n = min(len(f0), len(fine))
    f0, voiced, prob, fine = f0[:n], voiced[:n], prob[:n], fine[:n]
    close = np.abs(12 * np.log2(np.maximum(fine, 1e-3) / np.where(np.isfinite(f0), f0, 1.0))) < 0.75
    f0 = np.where(voiced & close, fine, np.where(voiced, f0, np.nan))
    return f0.astype(np.float64), np.nan_to_num(prob).astype(np.float64)


def _moving_mean(x: np.ndarray, k: int) -> np.ndarray:
    pad = k // 2
    padded = np.pad(x, (pad, k - 1 - pad), mode="edge")
    return sliding_window_view(padded, k).mean(-1)


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    pad = k // 2
    return sliding_window_view(np.pad(x, (pad, k - 1 - pad), mode="edge"), k)


def frame_features(f0: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """(frames at 100/s, PITCH_DIM) float32 from a pitch track."""
    n = len(f0)
    voiced = np.isfinite(f0)
    out = np.zeros((n, PITCH_DIM), dtype=np.float64)
    out[:, 0] = prob
    if voiced.sum() < 2:
        return out.astype(np.float32)
    semi = 12 * np.log2(f0 / np.nanmedian(f0))
    # Unvoiced gaps bridged linearly, so windows over a breath do not see a jump to 0.
    idx = np.arange(n)
    filled = np.interp(idx, idx[voiced], semi[voiced])
    trend = _moving_mean(filled, TREND)
    detrended = filled - trend
    win = _windows(detrended, WINDOW) * np.hanning(WINDOW)
    power = np.abs(np.fft.rfft(win, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(WINDOW, d=HOP / RATE)
    band = (freqs >= 3) & (freqs <= 9)
    core = (freqs >= 4) & (freqs <= 8)
    total = power[:, 1:].sum(-1) + 1e-9
    share = _moving_mean(voiced.astype(np.float64), WINDOW)
    slope = np.gradient(trend) * (RATE / HOP)  # semitones per second
    out[:, 1] = semi
    out[:, 2] = _windows(detrended, WINDOW).std(-1)
    out[:, 3] = freqs[band][power[:, band].argmax(-1)]
    out[:, 4] = power[:, core].sum(-1) / total
    out[:, 5] = _windows(np.diff(trend, prepend=trend[0]) * (RATE / HOP), TREND).std(-1)
    out[:, 6] = np.abs(slope)
    out[:, 7] = share
    out[~voiced, 1:7] = 0.0
    return out.astype(np.float32)


def pitch_features(audio16k: np.ndarray) -> np.ndarray:
    """(frames at 25/s, PITCH_DIM): the 100-frames/s features averaged in fours, as the audio frames are."""
    x = frame_features(*track(audio16k))
    n = (len(x) // 4) * 4
    if n == 0:
        return x.mean(0, keepdims=True)
    return x[:n].reshape(n // 4, 4, PITCH_DIM).mean(1)


def with_pitch(audio: list[np.ndarray], pitch: list[np.ndarray]) -> list[np.ndarray]:
    """Audio frames with the pitch stream's columns appended (both 25 frames/s; the shorter decides)."""
    out = []
    for a, p in zip(audio, pitch):
        n = min(len(a), len(p))
        out.append(np.concatenate([a[:n], p[:n].astype(a.dtype)], axis=1))
    return out


def clip_summary(frames: np.ndarray) -> dict[str, float]:
    """Clip-level cues (voiced frames only): what a report or a reader can check by ear."""
    voiced = frames[:, 0] > 0.5
    if not voiced.any():
        return {name: 0.0 for name in PITCH_FEATURES}
    return {name: float(frames[voiced, i].mean()) for i, name in enumerate(PITCH_FEATURES)}
