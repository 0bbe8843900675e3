"""From a recording on disk to dataset rows: the steps every ingest path shares.

`prepare_take` is the whole audio core in order (load + checks, DC removal, normalization,
16 kHz for Whisper, FLAC for the dataset); the `*_record` helpers shape rows for the tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from pipeline import __version__
from pipeline.audio import TakeAudio, encode_flac, load_audio
from pipeline.config import AudioConfig, PreprocessConfig
from pipeline.dataset.schemas import TAKES
from pipeline.ids import clip_id
from pipeline.preprocess import Processed, preprocess, to_whisper_input


@dataclass
class PreparedTake:
    audio: TakeAudio  # the whole take as loaded and checked
    processed: Processed
    whisper_input: np.ndarray  # 16 kHz float32 of the processed signal
    flac: bytes  # processed 48 kHz / 24-bit audio

    @property
    def seconds(self) -> float:
        return self.audio.seconds


def prepare_take(path, audio_cfg: AudioConfig = AudioConfig(), pre_cfg: PreprocessConfig = PreprocessConfig()) -> PreparedTake:
    audio = load_audio(path, audio_cfg)
    processed = preprocess(audio, pre_cfg)
    return PreparedTake(
        audio=audio,
        processed=processed,
        whisper_input=to_whisper_input(processed.samples, processed.sample_rate),
        flac=encode_flac(processed.samples, processed.sample_rate, "PCM_24"),
    )


def parse_time(value):
    """Manifests carry ISO 8601 text ('…Z'); the table stores UTC timestamps."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _utcnow() -> datetime:
    return datetime.now(UTC)


def take_record(take_id: str, prepared: PreparedTake, manifest: dict) -> dict:
    """A `takes` row: the manifest's fields, then what the audio core measured."""
    audio, stats = prepared.audio, prepared.processed.stats
    row = {
        "take_id": take_id,
        "sample_rate": audio.resampled_from or audio.sample_rate,
        "subtype": audio.subtype,
        "channels": audio.channels,
        "frames": int(round(audio.seconds * (audio.resampled_from or audio.sample_rate))),
        "seconds": audio.seconds,
        "peak_dbfs": stats["peak_dbfs_in"],
        "clipped_samples": int(round(audio.clipping_fraction * audio.frames * audio.channels)),
        "sha256": audio.sha256,
        "tool_version": __version__,
        "recovered": False,
        "source_path": audio.source_path,
    }
    measured = {"frames", "seconds", "sha256", "subtype", "channels", "sample_rate"}
    for key, value in manifest.items():
        # Capture's own bookkeeping (status, end_reason…) stays in the manifest file, not the table.
        if value is not None and key in TAKES.names and key not in measured:
            row[key] = parse_time(value) if key == "started_at" else value
    row.update(
        dc_offset=stats["dc_offset"],
        gain_db=stats["gain_db"],
        clipping_fraction=audio.clipping_fraction,
        processed_at=_utcnow(),
    )
    return row


def whole_clip_record(take_id: str, prepared: PreparedTake, session: str | None, singer: str | None) -> dict:
    """A `clips` row for a take kept whole (before transcription has split it)."""
    seconds = round(prepared.seconds, 3)
    return {
        "clip_id": clip_id(take_id, 0.0, seconds),
        "take_id": take_id,
        "session": session,
        "singer": singer,
        "start_s": 0.0,
        "end_s": seconds,
        "audio_flac": prepared.flac,
        "sample_rate": prepared.processed.sample_rate,
        "processed_sha256": hashlib.sha256(prepared.flac).hexdigest(),
        "created_at": _utcnow(),
    }
