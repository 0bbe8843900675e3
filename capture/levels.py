"""Level metering on 24-bit integer samples (held in int32, audio in the top 24 bits)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FULL_SCALE = float(2**31)  # int32 full scale; 24-bit audio sits in the top bits
CLIP_CODE = (2**23 - 1) << 8  # the largest 24-bit code: a sample at or beyond it is clipped


def dbfs(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else float("-inf")


def block_levels(block: np.ndarray) -> tuple[float, float, int]:
    """(peak, mean square, clipped samples) of one int32 block; peak and square relative to full scale."""
    if block.size == 0:
        return 0.0, 0.0, 0
    x = block.astype(np.float64) / FULL_SCALE
    clipped = int(np.count_nonzero((block >= CLIP_CODE) | (block <= -CLIP_CODE)))
    return float(np.abs(x).max()), float(np.mean(x * x)), clipped


@dataclass
class Meter:
    """Running figures for the live display and the manifest."""

    frames: int = 0
    peak: float = 0.0  # whole take
    clipped_samples: int = 0
    sum_square: float = 0.0
    recent_peak: float = 0.0  # since the display last read it
    recent_square: float = 0.0
    recent_frames: int = 0

    def update(self, block: np.ndarray) -> int:
        """Add a block; returns how many of its samples clipped."""
        peak, square, clipped = block_levels(block)
        n = int(block.size)
        self.frames += n
        self.peak = max(self.peak, peak)
        self.clipped_samples += clipped
        self.sum_square += square * n
        self.recent_peak = max(self.recent_peak, peak)
        self.recent_square += square * n
        self.recent_frames += n
        return clipped

    def take_recent(self) -> tuple[float, float]:
        """(peak dBFS, RMS dBFS) since the last call, for a meter that moves."""
        peak = dbfs(self.recent_peak)
        rms = dbfs(math.sqrt(self.recent_square / self.recent_frames)) if self.recent_frames else float("-inf")
        self.recent_peak, self.recent_square, self.recent_frames = 0.0, 0.0, 0
        return peak, rms

    @property
    def peak_dbfs(self) -> float:
        return dbfs(self.peak)

    @property
    def rms_dbfs(self) -> float:
        return dbfs(math.sqrt(self.sum_square / self.frames)) if self.frames else float("-inf")


@dataclass
class LevelReport:
    """What `capture check` reports before a session."""

    seconds: float
    peak_dbfs: float
    rms_dbfs: float
    noise_floor_dbfs: float  # the quietest 10 % of 50 ms windows
    dc_offset: float  # mean, as a fraction of full scale
    clipped_samples: int
    input_overflows: int

    def advice(self) -> list[str]:
        notes = []
        if self.clipped_samples:
            notes.append(f"{self.clipped_samples} clipped samples: lower the preamp gain")
        elif self.peak_dbfs > -3.0:
            notes.append(f"peak {self.peak_dbfs:.1f} dBFS leaves under 3 dB headroom: lower the gain a little")
        elif self.peak_dbfs < -30.0:
            notes.append(f"peak {self.peak_dbfs:.1f} dBFS is low: raise the gain (aim for peaks around -12 to -6 dBFS)")
        if abs(self.dc_offset) > 1e-3:
            notes.append(f"DC offset {self.dc_offset:+.4f} of full scale: check the interface / cabling")
        if self.noise_floor_dbfs > -60.0:
            notes.append(f"noise floor {self.noise_floor_dbfs:.1f} dBFS is high: check for hum, fans, gain staging")
        if self.input_overflows:
            notes.append(f"{self.input_overflows} input overflows: the computer could not keep up")
        return notes or ["levels look good"]


def analyse(samples: np.ndarray, sample_rate: int, overflows: int = 0) -> LevelReport:
    """Level figures of an int32 recording (24-bit audio in the top bits)."""
    x = samples.astype(np.float64) / FULL_SCALE
    window = max(1, sample_rate // 20)
    n = (x.size // window) * window
    if n:
        rms_windows = np.sqrt(np.mean((x[:n] - x.mean()).reshape(-1, window) ** 2, axis=1))
        floor = float(np.percentile(rms_windows, 10))
    else:
        floor = 0.0
    peak, square, clipped = block_levels(samples)
    return LevelReport(
        seconds=x.size / sample_rate,
        peak_dbfs=dbfs(peak),
        rms_dbfs=dbfs(math.sqrt(square)),
        noise_floor_dbfs=dbfs(floor),
        dc_offset=float(x.mean()) if x.size else 0.0,
        clipped_samples=clipped,
        input_overflows=overflows,
    )
