"""Repair takes left behind by a recorder that was killed (SIGKILL, power loss, crash).

A take whose manifest still says `recording` and whose WAV is not locked by a live recorder gets
its header rewritten from the bytes on disk (all whole frames kept), its figures measured from the
audio, and its manifest marked `recovered`. A WAV without a manifest (killed between the two
writes) gets one. Running it again changes nothing.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import soundfile as sf

from capture.levels import Meter
from capture.manifest import (
    TakeManifest,
    TakeStatus,
    manifest_path,
    read_manifest,
    utc_now_iso,
    write_manifest,
)
from capture.wavstream import NotOurWav, repair_wav
from pipeline.audio import sha256_file


@dataclass
class RecoveryOutcome:
    wav_path: Path
    action: str  # "recovered" | "skipped: <why>" | "failed: <why>"
    frames: int = 0
    seconds: float = 0.0
    lost_header_frames: int = 0  # frames on disk the old header did not count
    seconds_not_saved: float = 0.0  # time from the start to the last write not covered by audio on disk

    @property
    def recovered(self) -> bool:
        return self.action == "recovered"


def _is_locked(path: Path) -> bool:
    """True while a live recorder holds the take (its flock dies with the process)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _measure(wav: Path) -> Meter:
    meter = Meter()
    with sf.SoundFile(wav) as fh:
        for block in fh.blocks(blocksize=48_000 * 10, dtype="int32", always_2d=True):
            meter.update(block[:, 0])
    return meter


def recover_take(wav: Path) -> RecoveryOutcome:
    mpath = manifest_path(wav)
    manifest = None
    if mpath.exists():
        try:
            manifest = read_manifest(mpath)
        except (ValueError, TypeError) as exc:
            return RecoveryOutcome(wav, f"failed: manifest {mpath.name} unreadable ({exc}); WAV left untouched")
        if manifest.status != TakeStatus.RECORDING:
            return RecoveryOutcome(wav, f"skipped: already {manifest.status}", manifest.frames, manifest.seconds)
    if _is_locked(wav):
        return RecoveryOutcome(wav, "skipped: still being recorded by a running recorder")
    last_write = wav.stat().st_mtime  # before the repair touches the file: when the last audio was written
    try:
        repair = repair_wav(wav)
    except NotOurWav as exc:
        return RecoveryOutcome(wav, f"skipped: {exc}")
    if manifest is None:
        manifest = TakeManifest(
            take_id=wav.stem,
            session=wav.parent.name,
            singer="",
            song="",
            notes="manifest was missing; rebuilt by `cantolab capture recover`",
        )
    meter = _measure(wav) if repair.frames else Meter()
    manifest.frames = repair.frames
    manifest.seconds = repair.frames / manifest.sample_rate
    manifest.peak_dbfs = round(meter.peak_dbfs, 3) if meter.peak > 0 else None
    manifest.clipped_samples = meter.clipped_samples
    manifest.sha256 = sha256_file(wav)
    manifest.recovered = True
    manifest.status = TakeStatus.RECOVERED
    manifest.end_reason = "recorder interrupted; recovered"
    manifest.ended_at = utc_now_iso(datetime.fromtimestamp(last_write, UTC))
    write_manifest(mpath, manifest)
    lost = repair.frames - repair.header_frames if repair.header_frames >= 0 else 0
    not_saved = 0.0
    if manifest.started_at:
        started = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00")).timestamp()
        not_saved = max(0.0, last_write - started - manifest.seconds)
    return RecoveryOutcome(wav, "recovered", repair.frames, manifest.seconds, lost, round(not_saved, 2))


def recover_all(recordings: Path) -> list[RecoveryOutcome]:
    """Every take under `recordings` (any depth) that needs it, in name order."""
    recordings = Path(recordings)
    if not recordings.is_dir():
        raise FileNotFoundError(f"{recordings}: no such recordings folder")
    outcomes = []
    for wav in sorted(recordings.rglob("*.wav")):
        if wav.name.startswith("."):
            continue
        try:
            outcomes.append(recover_take(wav))
        except OSError as exc:
            outcomes.append(RecoveryOutcome(wav, f"failed: {exc}"))
    return outcomes
