"""Synthetic sung notes with known properties, for demos without reference data and for tests.

A harmonic voice with vibrato and a little breath noise: enough structure that DC removal,
normalization and resampling can be checked against a signal whose offset and gain are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import write_audio


@dataclass(frozen=True)
class SungNote:
    f0_hz: float = 220.0
    seconds: float = 3.0
    vibrato_hz: float = 5.5
    vibrato_cents: float = 50.0
    breath: float = 0.01
    amplitude: float = 0.5
    dc_offset: float = 0.0


def sung_note(note: SungNote = SungNote(), sample_rate: int = 48_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(note.seconds * sample_rate)) / sample_rate
    f = note.f0_hz * 2 ** (note.vibrato_cents / 1200 * np.sin(2 * np.pi * note.vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(f) / sample_rate
    voice = sum(np.sin(k * phase) / k**1.5 for k in range(1, 9))
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t + 1 / sample_rate) / 0.05)
    x = voice / np.abs(voice).max() * envelope + note.breath * rng.standard_normal(t.size)
    x = note.amplitude * x / np.abs(x).max()
    return (x + note.dc_offset).astype(np.float64)


def synth_session(folder: Path, singers: int = 3, notes_per_singer: int = 2, sample_rate: int = 48_000) -> list[dict]:
    """Write a small session of 24-bit WAV notes; returns one manifest-like row per file."""
    rows = []
    for s in range(singers):
        for n in range(notes_per_singer):
            note = SungNote(f0_hz=180.0 * 2 ** ((3 * s + 2 * n) / 12), seconds=2.0 + n, dc_offset=0.01 * (s + 1))
            path = Path(folder) / f"synth-singer{s + 1}-note{n + 1}.wav"
            write_audio(path, sung_note(note, sample_rate, seed=10 * s + n), sample_rate, "PCM_24")
            rows.append({"path": str(path), "singer": f"synth-{s + 1}", "song": f"note {n + 1}", "abs_path": str(path)})
    return rows


def long_take_wav(path: Path, seconds: float, sample_rate: int = 48_000, sung_seconds: float = 10.0) -> Path:
    """A 24-bit mono WAV of `seconds`: a sung note, then silence left as a sparse hole in the file.

    For checks of very long takes (hours) without writing gigabytes: the header and size are those
    of a real file of that length, and every frame decodes.
    """
    path = Path(path)
    frames = int(seconds * sample_rate)
    data_bytes = frames * 3
    head = int(min(sung_seconds, seconds) * sample_rate)
    pcm = np.round(sung_note(SungNote(seconds=head / sample_rate), sample_rate) * (2**23 - 1)).astype("<i4")
    sung = pcm.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # little-endian 24-bit
    fmt = (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
    fmt += sample_rate.to_bytes(4, "little") + (sample_rate * 3).to_bytes(4, "little")
    fmt += (3).to_bytes(2, "little") + (24).to_bytes(2, "little")
    header = b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVE" + b"fmt " + fmt
    header += b"data" + data_bytes.to_bytes(4, "little")
    with open(path, "wb") as fh:
        fh.write(header + sung)
        fh.truncate(len(header) + data_bytes)
    return path
