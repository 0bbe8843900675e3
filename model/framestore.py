"""Clip features on disk, read per batch: training memory bounded by the batch, not the corpus.

At the paper's scale (28,628 clips) frozen Whisper-base states are ~4 GB in float16 even cropped to
256 frames, more than a worker should hold. A FrameStore keeps every clip's frames in one flat
float16 `.npy` with an offsets index, read by positioned reads; `fit()` reads it like the list of
arrays it otherwise gets (`len`, `store[i]`), and `make_batch` asks it for a batch at once
(`window` reads only a training crop's frames). Standardization (global, per singer, per clip) is
applied on read, its statistics computed in one streaming pass. Writing streams too: the file is
appended clip by clip and its header written last, so the writer holds one clip, not the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.fsio import atomic_writer

FRAMES, OFFSETS = "frames.npy", "offsets.npy"
_HEADER = 128  # bytes: a fixed-size .npy header, rewritten with the final shape once every clip is written
_CHUNK = 512  # clips per streaming pass step


def _npy_header(n: int, dim: int) -> bytes:
    """A version-1.0 .npy header for a C-order (n, dim) little-endian float16 array, padded to _HEADER bytes."""
    text = f"{{'descr': '<f2', 'fortran_order': False, 'shape': ({n}, {dim}), }}"
    body = _HEADER - 10
    return b"\x93NUMPY\x01\x00" + body.to_bytes(2, "little") + (text.ljust(body - 1) + "\n").encode("latin1")


class FrameStore(Sequence):
    """All clips' frames (float16 on disk, float32 when read). `shift`/`scale` standardize on read:
    one row (global), or one row per group with `group` giving each clip's row (per singer);
    `per_clip` standardizes each clip by its own moments."""

    def __init__(
        self,
        folder: str | Path,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        *,
        group: np.ndarray | None = None,
        per_clip: bool = False,
    ):
        self.folder = Path(folder)
        self.offsets = np.load(self.folder / OFFSETS)
        with open(self.folder / FRAMES, "rb") as fh:  # the .npy header: where the frames start, their width
            version = np.lib.format.read_magic(fh)
            shape, _, dtype = np.lib.format._read_array_header(fh, version)
            self._data_at = fh.tell()
        self.dim, self._dtype = shape[1], np.dtype(dtype)
        self._fd = os.open(self.folder / FRAMES, os.O_RDONLY)  # kept open: the folder may be replaced meanwhile
        self.mean, self.std = mean, std
        self.group, self.per_clip = group, per_clip

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def _view(self, **kw) -> FrameStore:
        args = {"mean": self.mean, "std": self.std, "group": self.group, "per_clip": self.per_clip} | kw
        return FrameStore(self.folder, args.pop("mean"), args.pop("std"), **args)

    def _raw(self, i: int, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames [start, start + count) of clip i, float16, by one positioned read (no memory map:
        read pages are not kept as this process's memory, so its RSS stays that of a batch)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        a += start
        if count is not None:
            b = min(b, a + count)
        row = self.dim * self._dtype.itemsize
        buf = os.pread(self._fd, (b - a) * row, self._data_at + a * row)
        return np.frombuffer(buf, dtype=self._dtype).reshape(b - a, self.dim)

    def _normalize(self, f: np.ndarray, i: int) -> np.ndarray:
        """float32 frames of clip i, standardized as this view says (f may be a crop of it)."""
        f = f.astype(np.float32)
        if self.per_clip:
            whole = self._raw(i).astype(np.float32) if len(f) != self.length(i) else f
            return (f - whole.mean(0)) / (whole.std(0) + 1e-5)
        if self.mean is None:
            return f
        if self.group is None:
            return (f - self.mean) / self.std
        g = self.group[i]
        return (f - self.mean[g]) / self.std[g]

    @classmethod
    def write(cls, folder: str | Path, clips: Iterable[np.ndarray], total_frames: int | None = None, dim: int | None = None) -> FrameStore:
        """Write clips (each (frames, dim)) in order, streaming; total_frames, when given, is checked."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        offsets, pos = [0], 0
        with atomic_writer(folder / FRAMES, "wb") as fh:
            fh.write(_npy_header(0, dim or 0))
            for f in clips:
                f = np.asarray(f)
                if f.ndim != 2 or (dim is not None and f.shape[1] != dim):
                    raise ValueError(f"clip {len(offsets) - 1}: frames of shape {f.shape}, expected (n, {dim})")
                dim = f.shape[1]
                fh.write(np.ascontiguousarray(f, dtype="<f2").tobytes())
                pos += len(f)
                offsets.append(pos)
            if total_frames is not None and pos != total_frames:
                raise ValueError(f"wrote {pos} frames, expected {total_frames}")
            fh.seek(0)
            fh.write(_npy_header(pos, dim or 0))
        with atomic_writer(folder / OFFSETS, "wb") as fh:
            np.save(fh, np.asarray(offsets, dtype=np.int64))
        return cls(folder)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._normalize(self._raw(i), i)

    def window(self, i: int, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of clip i, standardized: a training crop reads only its frames."""
        return self._normalize(self._raw(i, start, count), i)

    def subset(self, indices: Sequence[int]) -> _Subset:
        return _Subset(self, list(indices))

    def statistics(self, indices: Sequence[int] | None = None, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw frame mean and std over the given clips (all by default), streamed clip by clip; with
        `groups` (a group number per clip), one row per group."""
        idx = list(range(len(self)) if indices is None else indices)
        n_groups = 1 if groups is None else int(np.max(groups)) + 1
        total, sq = np.zeros((n_groups, self.dim)), np.zeros((n_groups, self.dim))
        count = np.zeros(n_groups)
        for i in idx:
            g = 0 if groups is None else groups[i]
            f = self._raw(i).astype(np.float64)
            total[g] += f.sum(0)
            sq[g] += (f * f).sum(0)
            count[g] += len(f)
        n = np.maximum(count, 1)[:, None]
        mean = total / n
        std = np.sqrt(np.maximum(sq / n - mean**2, 0)) + 1e-5
        mean, std = mean.astype(np.float32), std.astype(np.float32)
        return (mean[0], std[0]) if groups is None else (mean, std)

    def standardized(self, mean: np.ndarray, std: np.ndarray) -> FrameStore:
        return self._view(mean=mean, std=std, group=None, per_clip=False)

    def normalized(self, mode: str, groups: Sequence[str], reference: tuple[np.ndarray, np.ndarray] | None) -> FrameStore:
        """model.features.normalize_features' modes, applied on read: global (reference statistics),
        singer (each group's own moments, computed here in one pass), clip, none."""
        if mode == "none":
            return self._view(mean=None, std=None, group=None, per_clip=False)
        if mode == "global":
            return self.standardized(*reference)
        if mode == "clip":
            return self._view(mean=None, std=None, group=None, per_clip=True)
        if mode == "singer":
            names = sorted(set(groups))
            number = {g: k for k, g in enumerate(names)}
            group = np.asarray([number[g] for g in groups], dtype=np.int64)
            mean, std = self.statistics(groups=group)
            return self._view(mean=mean, std=std, group=group, per_clip=False)
        raise ValueError(f"unknown feature normalization {mode!r}")

    def clip_means(self, indices: Sequence[int] | None = None, max_frames: int | None = None) -> np.ndarray:
        """Each clip's mean frame as this view reads it (centre crop of max_frames), streamed."""
        idx = list(range(len(self)) if indices is None else indices)
        out = np.empty((len(idx), self.dim), dtype=np.float32)
        for k, i in enumerate(idx):
            n = self.length(i)
            start = (n - max_frames) // 2 if max_frames and n > max_frames else 0
            out[k] = self.window(i, start, max_frames or n).mean(0)
        return out


class _Subset(Sequence):
    """Some clips of a store (a split, or the store in another order), still read lazily."""

    def __init__(self, store: FrameStore, indices: list[int]):
        self.store, self.indices = store, indices
        self.dim = store.dim

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.store[self.indices[i]]

    def length(self, i: int) -> int:
        return self.store.length(self.indices[i])

    def window(self, i: int, start: int, count: int) -> np.ndarray:
        return self.store.window(self.indices[i], start, count)

    def subset(self, indices: Sequence[int]) -> _Subset:
        return _Subset(self.store, [self.indices[i] for i in indices])

    def clip_means(self, indices: Sequence[int] | None = None, max_frames: int | None = None) -> np.ndarray:
        idx = range(len(self)) if indices is None else indices
        return self.store.clip_means([self.indices[i] for i in idx], max_frames)
