"""Load, validate and write audio.

Every problem raises `AudioError` naming the file and what is wrong with it, so a flow can put the
file in `rejects` with a reason a person can act on and carry on with the rest.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.config import AudioConfig
from pipeline.errors import ConfigError, InputError
from pipeline.fsio import atomic_writer

_INT_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


class AudioError(InputError):
    """A file that cannot be used, with where (path) and why (problem)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class TakeAudio:
    """A whole take (or any recording) loaded as a validated mono signal, and where it came from.

    Not a dataset clip: clips are the segments of a take that ingest cuts (pipeline.segment).
    """

    samples: np.ndarray  # float32, shape (n,), full scale ±1
    sample_rate: int
    subtype: str  # the source's sample format, e.g. PCM_24
    channels: int  # the source's channel count, before the channel policy
    source_path: str
    sha256: str
    clipping_fraction: float = 0.0
    resampled_from: int | None = None

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def full_scale_threshold(subtype: str) -> float:
    """The magnitude at which a sample of this format counts as clipped (its largest code)."""
    bits = _INT_BITS.get(subtype)
    if bits is None:
        return 1.0
    return (2 ** (bits - 1) - 1) / 2 ** (bits - 1)


def clipping_fraction(samples: np.ndarray, subtype: str) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(samples) >= full_scale_threshold(subtype))) / samples.size


def _wav_data_shortfall(path: Path, block_align: int) -> tuple[int, int] | None:
    """(declared, present) frames when a RIFF/WAVE data chunk claims more bytes than the file holds.

    libsndfile quietly trims such a chunk to the file's length; a take cut short by a crash or a
    failed copy must be reported instead, so the header is checked here.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streaming writers leave these; nothing declared
                    return None
                present = size - (pos + 8)
                if present < chunk_size:
                    return chunk_size // block_align, present // block_align
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


# Frames decoded at a time: memory stays bounded by the length limit, never by the file's size.
BLOCK_FRAMES = 1 << 16


def _header(path: Path, cfg: AudioConfig) -> tuple[sf._SoundFileInfo, int]:
    """The file's format and the frames its header declares, checked before any sample is decoded.

    A file longer than `cfg.max_seconds` is refused here, from its header alone, so a 2-hour take
    costs a few kilobytes of reading rather than gigabytes of decoded samples.
    """
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's own words say which problem it met
        raise AudioError(path, f"unreadable or not audio ({exc})") from None
    if info.frames <= 0:
        raise AudioError(path, "zero-length audio (no frames)")
    seconds = info.frames / info.samplerate
    if seconds > cfg.max_seconds:
        raise AudioError(path, f"too long: {seconds:.1f} s exceeds the configured maximum of {cfg.max_seconds:.1f} s")
    declared = info.frames
    if info.format == "WAV":
        width = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}.get(info.subtype)
        shortfall = _wav_data_shortfall(path, width * info.channels) if width else None
        if shortfall:
            declared = shortfall[0]
    return info, declared


@dataclass
class _Scan:
    """What one pass over the decoded blocks learns besides the samples themselves."""

    mono: np.ndarray
    frames: int = 0
    nonfinite: int = 0
    peak: float = 0.0
    clipped: int = 0


def _pick_channel(data: np.ndarray, policy, path: Path) -> np.ndarray:
    channels = data.shape[1]
    if channels == 1:
        return data[:, 0]
    if policy == "downmix":
        return data.mean(axis=1, dtype=np.float64).astype(np.float32)
    index = 0 if policy == "first" else int(policy)
    if index >= channels:
        raise AudioError(path, f"channel {index} requested but the file has {channels} channels")
    return np.ascontiguousarray(data[:, index])


def _decode(path: Path, info: sf._SoundFileInfo, cfg: AudioConfig) -> _Scan:
    """Decode in blocks of BLOCK_FRAMES into one mono buffer, counting as it goes."""
    scan = _Scan(mono=np.empty(info.frames, dtype=np.float32))
    threshold = full_scale_threshold(info.subtype)
    try:
        with sf.SoundFile(str(path)) as fh:
            for block in fh.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                magnitude = np.abs(block)
                finite = np.isfinite(magnitude)
                scan.nonfinite += int(block.size - np.count_nonzero(finite))
                if block.size:
                    scan.peak = max(scan.peak, float(magnitude[finite].max(initial=0.0)))
                scan.clipped += int(np.count_nonzero(magnitude >= threshold))
                mono = _pick_channel(block, cfg.channels, path)
                end = scan.frames + mono.shape[0]
                if end > scan.mono.shape[0]:  # more than the header said: grow (rare, bounded by the check below)
                    if end / info.samplerate > cfg.max_seconds:
                        raise AudioError(path, f"too long: more than the configured maximum of {cfg.max_seconds:.1f} s")
                    scan.mono = np.concatenate([scan.mono[: scan.frames], np.empty(end - scan.frames, np.float32)])
                scan.mono[scan.frames : end] = mono
                scan.frames = end
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"truncated or corrupt audio data ({exc})") from None
    scan.mono = scan.mono[: scan.frames]
    return scan


def load_audio(path: str | os.PathLike, cfg: AudioConfig = AudioConfig()) -> TakeAudio:
    """Read WAV/FLAC (any rate, depth, channel count) into a validated mono clip.

    The header is checked first (length limit, declared frames); the samples are then decoded in
    bounded blocks straight into the mono signal, so peak memory is about one mono copy of a file
    within the limit, whatever the file's channel count or size.
    """
    path = Path(path)
    info, declared = _header(path, cfg)
    if cfg.channels not in ("downmix", "first") and int(cfg.channels) >= info.channels and info.channels > 1:
        raise AudioError(path, f"channel {int(cfg.channels)} requested but the file has {info.channels} channels")
    scan = _decode(path, info, cfg)
    if scan.frames == 0:
        raise AudioError(path, "zero-length audio (no frames could be decoded)")
    if scan.frames < declared:
        raise AudioError(path, f"truncated: header declares {declared} frames, only {scan.frames} present")
    if scan.nonfinite:
        raise AudioError(path, f"{scan.nonfinite} NaN/inf samples")
    peak = scan.peak
    if peak == 0.0 or 20 * np.log10(peak) < cfg.silence_dbfs:
        level = "-inf" if peak == 0.0 else f"{20 * np.log10(peak):.1f}"
        raise AudioError(path, f"digital silence: peak {level} dBFS is below {cfg.silence_dbfs} dBFS")
    clipped = scan.clipped / (scan.frames * info.channels)
    if clipped > cfg.max_clipping_fraction:
        raise AudioError(
            path,
            f"clipped: {clipped:.2%} of samples at full scale exceeds the limit of {cfg.max_clipping_fraction:.2%}",
        )
    mono = scan.mono
    rate = info.samplerate
    resampled_from = None
    if rate != cfg.expected_rate:
        if cfg.on_rate_mismatch == "refuse":
            raise AudioError(path, f"sample rate {rate} Hz, expected {cfg.expected_rate} Hz")
        from pipeline.preprocess import resample

        mono = resample(mono, rate, cfg.expected_rate)
        resampled_from, rate = rate, cfg.expected_rate
    return TakeAudio(
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=rate,
        subtype=info.subtype,
        channels=info.channels,
        source_path=str(path),
        sha256=sha256_file(path),
        clipping_fraction=clipped,
        resampled_from=resampled_from,
    )


def _format_for(path: Path, format: str | None) -> str:
    if format:
        return format.upper()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("wav", "flac"):
        raise ConfigError(f"{path}: write WAV or FLAC (.wav/.flac), not {path.suffix!r}")
    return suffix.upper()


def write_audio(
    path: str | os.PathLike,
    samples: np.ndarray,
    sample_rate: int = 48_000,
    subtype: str = "PCM_24",
    format: str | None = None,
) -> Path:
    """Write atomically (pipeline.fsio): a crash never leaves half a file behind."""
    path = Path(path)
    fmt = _format_for(path, format)
    with atomic_writer(path, "wb") as fh:
        sf.write(fh, np.asarray(samples, dtype=np.float32), sample_rate, subtype=subtype, format=fmt)
    return path


def encode_flac(samples: np.ndarray, sample_rate: int = 48_000, subtype: str = "PCM_24", compression_level: float = 0.0) -> bytes:
    """FLAC bytes for the dataset. Level 0 is the fastest; FLAC is lossless at any level."""
    buf = io.BytesIO()
    sf.write(
        buf,
        np.asarray(samples, dtype=np.float32),
        sample_rate,
        subtype=subtype,
        format="FLAC",
        compression_level=compression_level,
    )
    return buf.getvalue()


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode FLAC/WAV bytes (as stored in the `clips` table) to mono float32 and its rate."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)), rate
