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


# Studio thresholds for the two-step check (24-bit, a condenser vocal mic through a clean preamp).
NOISE_GOOD_DBFS = -60.0  # at or below: inaudible under singing
NOISE_BAD_DBFS = -50.0  # above: hiss/hum audible in quiet passages
PEAK_TARGET = (-18.0, -6.0)  # loudest singing peaks in this range leave 6–18 dB headroom
PEAK_TIGHT_DBFS = -3.0  # above: under 3 dB headroom, a louder take will clip
PEAK_LOW_DBFS = -30.0  # below: far too quiet (or the wrong input channel)


@dataclass
class Verdict:
    level: str  # "good" | "warn" | "bad"
    text: str


def _overflow_verdicts(overflows: int) -> list[Verdict]:
    return [Verdict("warn", f"{overflows} input overflows: the computer could not keep up")] if overflows else []


class _Judged:
    """A step of the level check: good when none of its verdicts is bad."""

    def verdicts(self) -> list[Verdict]:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return all(v.level != "bad" for v in self.verdicts())


@dataclass
class NoiseReport(_Judged):
    """Step 1: nobody sings. The noise floor is the RMS of this silence (DC removed)."""

    seconds: float
    noise_floor_dbfs: float
    peak_dbfs: float
    dc_offset: float
    input_overflows: int

    def verdicts(self) -> list[Verdict]:
        out = []
        if self.noise_floor_dbfs <= NOISE_GOOD_DBFS:
            out.append(Verdict("good", f"noise floor {self.noise_floor_dbfs:.1f} dBFS (≤ {NOISE_GOOD_DBFS:g}): quiet"))
        elif self.noise_floor_dbfs <= NOISE_BAD_DBFS:
            out.append(
                Verdict(
                    "warn",
                    f"noise floor {self.noise_floor_dbfs:.1f} dBFS: audible in quiet passages (aim ≤ {NOISE_GOOD_DBFS:g}); check fans, hum, gain staging",
                )
            )
        else:
            out.append(
                Verdict(
                    "bad",
                    f"noise floor {self.noise_floor_dbfs:.1f} dBFS (> {NOISE_BAD_DBFS:g}): too noisy, or someone made a sound; find the source and repeat",
                )
            )
        if self.peak_dbfs > -30.0 and self.peak_dbfs - self.noise_floor_dbfs > 30.0:
            out.append(Verdict("warn", f"a sound peaking at {self.peak_dbfs:.1f} dBFS during the silence (a bump or click?)"))
        if abs(self.dc_offset) > 1e-3:
            out.append(Verdict("warn", f"DC offset {self.dc_offset:+.4f} of full scale: check the interface / cabling"))
        return out + _overflow_verdicts(self.input_overflows)


@dataclass
class SingingReport(_Judged):
    """Step 2: the loudest passage. Judged on its peak (headroom) and clipping."""

    seconds: float
    peak_dbfs: float
    rms_dbfs: float
    clipped_samples: int
    input_overflows: int

    @property
    def headroom_db(self) -> float:
        return -self.peak_dbfs

    def verdicts(self) -> list[Verdict]:
        p = self.peak_dbfs
        if self.clipped_samples:
            v = Verdict(
                "bad",
                f"{self.clipped_samples} clipped samples: lower the preamp gain (aim for peaks of {PEAK_TARGET[0]:g} to {PEAK_TARGET[1]:g} dBFS)",
            )
        elif p > PEAK_TIGHT_DBFS:
            v = Verdict("bad", f"peak {p:.1f} dBFS leaves {self.headroom_db:.1f} dB headroom (< 3): lower the gain")
        elif p > PEAK_TARGET[1]:
            v = Verdict("warn", f"peak {p:.1f} dBFS: {self.headroom_db:.1f} dB headroom is tight; lower the gain a little")
        elif p >= PEAK_TARGET[0]:
            v = Verdict("good", f"peak {p:.1f} dBFS: {self.headroom_db:.1f} dB headroom")
        elif p >= PEAK_LOW_DBFS:
            v = Verdict("warn", f"peak {p:.1f} dBFS is low: raise the gain (aim for {PEAK_TARGET[0]:g} to {PEAK_TARGET[1]:g} dBFS)")
        else:
            v = Verdict("bad", f"peak {p:.1f} dBFS: far too low: raise the gain, or is it the wrong input channel?")
        out = [v]
        return out + _overflow_verdicts(self.input_overflows)


def analyse_noise(samples: np.ndarray, sample_rate: int, overflows: int = 0) -> NoiseReport:
    x = samples.astype(np.float64) / FULL_SCALE
    dc = float(x.mean()) if x.size else 0.0
    rms = math.sqrt(float(np.mean((x - dc) ** 2))) if x.size else 0.0
    peak, _, _ = block_levels(samples)
    return NoiseReport(x.size / sample_rate, dbfs(rms), dbfs(peak), dc, overflows)


def analyse_singing(samples: np.ndarray, sample_rate: int, overflows: int = 0) -> SingingReport:
    peak, square, clipped = block_levels(samples)
    return SingingReport(samples.size / sample_rate, dbfs(peak), dbfs(math.sqrt(square)), clipped, overflows)
