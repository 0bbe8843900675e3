"""Clip features on disk, read per batch: training memory bounded by the batch, not the corpus.

At the paper's scale (28,628 clips) frozen Whisper-base states are ~4 GB in float16 even cropped to
256 frames, more than a worker should hold. A FrameStore keeps every clip's frames in one flat
float16 `.npy` with an offsets index, read by positioned reads; `fit()` reads it like the list of arrays it
otherwise gets (`len`, `store[i]`), so only the clips of the current batch are in memory. Global
standardization is applied on read with statistics computed in one streaming pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FRAMES, OFFSETS = "frames.npy", "offsets.npy"


class FrameStore(Sequence):
    def __init__(self, folder: str | Path, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.folder = Path(folder)
        self.offsets = np.load(self.folder / OFFSETS)
        with open(self.folder / FRAMES, "rb") as fh:  # the .npy header: where the frames start, their width
            version = np.lib.format.read_magic(fh)
            shape, _, dtype = np.lib.format._read_array_header(fh, version)
            self._data_at = fh.tell()
        self.dim, self._dtype = shape[1], np.dtype(dtype)
        self._fd = os.open(self.folder / FRAMES, os.O_RDONLY)
        self.mean, self.std = mean, std

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def _read(self, i: int) -> np.ndarray:
        """One clip's frames by a positioned read (no memory map: read pages are not kept as this
        process's memory, so its RSS stays that of a batch)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        row = self.dim * self._dtype.itemsize
        buf = os.pread(self._fd, (b - a) * row, self._data_at + a * row)
        return np.frombuffer(buf, dtype=self._dtype).reshape(b - a, self.dim)

    @classmethod
    def write(cls, folder: str | Path, clips: Iterable[np.ndarray], total_frames: int, dim: int) -> FrameStore:
        """Write clips (each (frames, dim)) in order; total_frames must be their sum (one preallocated file)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(folder / FRAMES, mode="w+", dtype=np.float16, shape=(total_frames, dim))
        offsets, pos = [0], 0
        for f in clips:
            out[pos : pos + len(f)] = f
            pos += len(f)
            offsets.append(pos)
        if pos != total_frames:
            raise ValueError(f"wrote {pos} frames, expected {total_frames}")
        out.flush()
        del out
        np.save(folder / OFFSETS, np.asarray(offsets, dtype=np.int64))
        return cls(folder)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        f = self._read(i).astype(np.float32)
        if self.mean is not None:
            f = (f - self.mean) / self.std
        return f

    def subset(self, indices: Sequence[int]) -> _Subset:
        return _Subset(self, list(indices))

    def statistics(self, indices: Sequence[int] | None = None, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Frame mean and std over the given clips (all by default), streamed in chunks of clips."""
        idx = range(len(self)) if indices is None else indices
        total = np.zeros(self.dim)
        sq = np.zeros(self.dim)
        n = 0
        idx = list(idx)
        for start in range(0, len(idx), chunk):
            for i in idx[start : start + chunk]:
                f = self._read(i).astype(np.float64)
                total += f.sum(0)
                sq += (f * f).sum(0)
                n += len(f)
        mean = total / max(n, 1)
        std = np.sqrt(np.maximum(sq / max(n, 1) - mean**2, 0)) + 1e-5
        return mean.astype(np.float32), std.astype(np.float32)

    def standardized(self, mean: np.ndarray, std: np.ndarray) -> FrameStore:
        return FrameStore(self.folder, mean, std)


class _Subset(Sequence):
    """Some clips of a store (a split), still read lazily."""

    def __init__(self, store: FrameStore, indices: list[int]):
        self.store, self.indices = store, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.store[self.indices[i]]
