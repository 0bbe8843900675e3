"""A WAV file written while it is recorded, whose header can always be put right afterwards.

libsndfile only writes the final sizes when a file is closed, so a killed recorder leaves a header
that lies. Here the data chunk is appended with plain `os.write` calls, the header's sizes are
updated and the file fsync'ed at every `flush()`, and `repair_wav()` rewrites the header from the
bytes actually on disk. The layout is fixed (44-byte header, PCM, mono, 24-bit little-endian) so
that repair never has to guess.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_BYTES = 44
BYTES_PER_SAMPLE = 3  # PCM_24
_MAX_DATA = 0xFFFFFFFF - 36


def wav_header(data_bytes: int, sample_rate: int, channels: int = 1) -> bytes:
    block_align = channels * BYTES_PER_SAMPLE
    data_bytes = min(data_bytes, _MAX_DATA)
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 24),
            b"data",
            struct.pack("<I", data_bytes),
        ]
    )


def int32_to_pcm24(block: np.ndarray) -> bytes:
    """The top three bytes of each little-endian int32 sample: 24-bit audio, bit for bit."""
    samples = np.ascontiguousarray(block, dtype="<i4")
    return samples.view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()


class WavStreamWriter:
    """Append-only 24-bit mono WAV. Each `write` is a syscall, so a SIGKILL loses nothing written."""

    def __init__(self, path: str | os.PathLike, sample_rate: int, *, fd: int | None = None):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._fd = fd if fd is not None else os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.data_bytes = 0
        self.flushed_bytes = 0
        self._write_all(wav_header(0, sample_rate), count=False)

    @property
    def frames(self) -> int:
        return self.data_bytes // BYTES_PER_SAMPLE

    def _write_all(self, data: bytes, count: bool = True) -> None:
        """os.write until done; a full disk or RLIMIT_FSIZE surfaces as OSError after a short write."""
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        finally:
            if count:
                self.data_bytes += written

    def write(self, block: np.ndarray) -> None:
        """Append int32 samples (24-bit audio in the top bytes). A short write raises OSError."""
        self._write_all(int32_to_pcm24(block))

    def write_data(self, data: bytes) -> None:
        self._write_all(data)

    def flush(self) -> None:
        """Make everything written so far a valid, durable WAV (sizes in the header, fsync)."""
        whole = self.data_bytes - self.data_bytes % BYTES_PER_SAMPLE
        os.pwrite(self._fd, wav_header(whole, self.sample_rate), 0)
        os.fsync(self._fd)
        self.flushed_bytes = whole

    def close(self) -> None:
        """Drop a trailing partial sample (a short write), fix the header, fsync, close."""
        if self._fd < 0:
            return
        try:
            whole = self.data_bytes - self.data_bytes % BYTES_PER_SAMPLE
            if whole != self.data_bytes:
                os.ftruncate(self._fd, HEADER_BYTES + whole)
                self.data_bytes = whole
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


@dataclass
class WavRepair:
    path: Path
    frames: int
    header_frames: int  # what the header said before repair
    trimmed_bytes: int  # a partial trailing sample dropped

    @property
    def changed(self) -> bool:
        return self.frames != self.header_frames or self.trimmed_bytes > 0


class NotOurWav(ValueError):
    """A file that is not the recorder's 44-byte-header 24-bit PCM layout; repair won't touch it."""


def read_layout(path: Path) -> tuple[int, int, int]:
    """(sample_rate, channels, declared data bytes) of a recorder WAV, or NotOurWav."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or head[36:40] != b"data":
        raise NotOurWav(f"{path}: not a recorder WAV (no 44-byte RIFF/WAVE/fmt/data header)")
    fmt_size, tag, channels, rate, _, _, bits = struct.unpack("<IHHIIHH", head[16:36])
    if fmt_size != 16 or tag != 1 or bits != 24:
        raise NotOurWav(f"{path}: format tag {tag}, {bits} bits; the recorder writes PCM 24-bit")
    return rate, channels, struct.unpack("<I", head[40:44])[0]


def repair_wav(path: str | os.PathLike) -> WavRepair:
    """Rewrite the header from the bytes on disk, keeping every whole sample frame."""
    path = Path(path)
    rate, channels, declared = read_layout(path)
    block_align = channels * BYTES_PER_SAMPLE
    present = path.stat().st_size - HEADER_BYTES
    whole = present - present % block_align
    fd = os.open(path, os.O_RDWR)
    try:
        if whole != present:
            os.ftruncate(fd, HEADER_BYTES + whole)
        os.pwrite(fd, wav_header(whole, rate, channels), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    header_frames = declared // block_align if declared not in (0xFFFFFFFF,) else -1
    return WavRepair(path=path, frames=whole // block_align, header_frames=header_frames, trimmed_bytes=present - whole)
