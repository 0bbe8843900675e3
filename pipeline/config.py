"""Configuration records for loading and preprocessing audio.

Defaults follow the studio contract: 48 kHz mono, peak-normalized to -1 dBFS, no denoising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.errors import ConfigError

ChannelPolicy = Literal["downmix", "first"] | int


@dataclass(frozen=True)
class AudioConfig:
    """What `load_audio` accepts and how it conforms what it loads."""

    expected_rate: int = 48_000
    on_rate_mismatch: Literal["resample", "refuse"] = "resample"
    channels: ChannelPolicy = "downmix"
    max_clipping_fraction: float = 0.01
    max_seconds: float = 900.0
    silence_dbfs: float = -90.0

    def __post_init__(self) -> None:
        if self.on_rate_mismatch not in ("resample", "refuse"):
            raise ConfigError(f"on_rate_mismatch must be 'resample' or 'refuse', not {self.on_rate_mismatch!r}")
        if not (self.channels in ("downmix", "first") or (isinstance(self.channels, int) and self.channels >= 0)):
            raise ConfigError(f"channels must be 'downmix', 'first' or a channel index >= 0, not {self.channels!r}")
        if not 0.0 <= self.max_clipping_fraction <= 1.0:
            raise ConfigError("max_clipping_fraction must lie in [0, 1]")
        if self.expected_rate <= 0 or self.max_seconds <= 0:
            raise ConfigError("expected_rate and max_seconds must be positive")


@dataclass(frozen=True)
class PreprocessConfig:
    """DC removal and amplitude normalization. There is deliberately no denoising option."""

    dc: Literal["mean", "highpass", "none"] = "mean"
    highpass_hz: float = 5.0
    normalize: Literal["peak", "rms", "lufs", "none"] = "peak"
    target_peak_dbfs: float = -1.0
    target_rms_dbfs: float = -20.0
    target_lufs: float = -23.0
    # Never let RMS/LUFS gain push peaks past this ceiling (a clipped take is worse than a quiet one).
    peak_ceiling_dbfs: float = -0.1

    def __post_init__(self) -> None:
        if self.dc not in ("mean", "highpass", "none"):
            raise ConfigError(f"dc must be 'mean', 'highpass' or 'none', not {self.dc!r}")
        if self.normalize not in ("peak", "rms", "lufs", "none"):
            raise ConfigError(f"normalize must be 'peak', 'rms', 'lufs' or 'none', not {self.normalize!r}")
        if self.highpass_hz <= 0:
            raise ConfigError("highpass_hz must be positive")
