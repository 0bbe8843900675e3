"""A real PortAudio capture device for the capture tests (no sound card needed).

The recorder runs in a subprocess through the real CLI, with ALSA_CONFIG_PATH pointing at a config
whose `pcm.!default` is an ALSA `file` PCM reading a real GTSinger clip (24-bit) followed by
generated signals: slaved to `null` (unpaced, bit-exact) or to a `jackd -d dummy` server (paced).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from capture import virtual_device as vd

REPO = Path(__file__).resolve().parents[2]
RATE = 48_000


def generated_signal(seconds: float, seed: int = 7) -> np.ndarray:
    """A log sweep with noise and a DC step, quantized to 24 bits, as int32 (audio in the top bits)."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0, f1 = 80.0, 12_000.0
    phase = 2 * np.pi * f0 * seconds / np.log(f1 / f0) * (np.exp(t / seconds * np.log(f1 / f0)) - 1)
    x = 0.4 * np.sin(phase) + 0.01 * np.random.default_rng(seed).standard_normal(n) + 0.002
    return (np.round(x * 2**23).astype(np.int64).clip(-(2**23), 2**23 - 1) << 8).astype(np.int32)


@dataclass
class Source:
    samples: np.ndarray  # int32, 24-bit audio in the top bits
    clip_path: Path | None  # the real clip at its start
    clip_frames: int

    def pcm24(self) -> np.ndarray:
        return self.samples >> 8


@pytest.fixture(scope="session")
def studio_source(gtsinger) -> Source:
    """A real 24-bit 48 kHz GTSinger clip (≥ 12 s), then 4 s of generated sweep."""
    rows = gtsinger[(gtsinger.subtype == "PCM_24") & (gtsinger.sample_rate == 48_000) & (gtsinger.seconds >= 12)]
    if rows.empty:
        pytest.skip("no 24-bit 48 kHz GTSinger clip of 12 s or more in CANTOLAB_DATA")
    path = Path(sorted(rows.abs_path)[0])
    clip, rate = sf.read(path, dtype="int32", always_2d=True)
    assert rate == RATE
    real = clip[:, 0]
    assert np.all(real & 0xFF == 0), "expected 24-bit audio"
    return Source(np.concatenate([real, generated_signal(4.0)]), path, real.size)


@dataclass
class Device:
    env: dict[str, str]
    config: Path
    source: Source


def _env(config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACK_")}
    env.update(ALSA_CONFIG_PATH=str(config), PYTHONPATH=str(REPO), COLUMNS="120", **(extra or {}))
    return env


@pytest.fixture
def null_device(tmp_path, studio_source) -> Device:
    """Unpaced, bit-exact: S32_LE infile slaved to the null PCM."""
    infile = vd.write_s32_infile(tmp_path / "source.s32", studio_source.samples)
    config = vd.write_alsa_config(tmp_path, infile, paced=False)
    return Device(_env(config), config, studio_source)


@pytest.fixture(scope="session")
def jack48():
    if not vd.jackd_available():
        pytest.skip("jackd or the ALSA JACK plugin (Debian jackd2, libasound2-plugins) is not installed")
    server = vd.start_jackd("cantolab-capture-test48", 48_000)
    yield server
    server.stop()


@pytest.fixture
def jack_device(tmp_path, studio_source, jack48) -> Device:
    """Paced in real time by JACK's dummy driver: float32 infile through the ALSA JACK plugin."""
    infile = vd.write_f32_infile(tmp_path / "source.f32", studio_source.samples)
    config = vd.write_alsa_config(tmp_path, infile, paced=True)
    return Device(_env(config, jack48.env), config, studio_source)


def capture_cli(args: list[str], device: Device, **kwargs) -> subprocess.CompletedProcess:
    """`cantolab capture …` in a fresh process, so PortAudio reads this device's ALSA config."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "capture", *args],
        cwd=REPO,
        env=device.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **kwargs,
    )


def record_args(recordings: Path, *extra: str, session: str = "s01") -> list[str]:
    return [
        "record", "--session", session, "--singer", "ZH-Alto-1", "--song", "test song",
        "--device", "virtual", "--recordings", str(recordings), "--min-free-minutes", "1", *extra,
    ]  # fmt: skip


def only_take(folder: Path) -> tuple[Path, Path]:
    wavs = sorted(folder.glob("*.wav"))
    assert len(wavs) == 1, wavs
    return wavs[0], wavs[0].with_suffix(".json")


def multichannel_device(folder: Path, source: Source, n: int) -> Device:
    """An n-channel interface (unpaced, bit-exact): channel k carries the source scaled by 2^-(k-1)
    and shifted by k·1000 frames, so each channel is distinguishable sample for sample."""
    frames = source.samples.size - n * 1000
    channels = np.stack([(source.samples[k * 1000 : k * 1000 + frames] >> (8 + k - 1)) << 8 for k in range(1, n + 1)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    infile = vd.write_s32_infile(folder / f"ch{n}.s32", channels)
    config = vd.write_alsa_config(folder, infile, paced=False, channels=n)
    return Device(_env(config), config, Source(channels.astype(np.int32), source.clip_path, source.clip_frames))
