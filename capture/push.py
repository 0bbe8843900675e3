"""Hand finished takes from the studio machine to the object store: `cantolab capture push RECORDINGS s3://…`.

Which takes: a manifest whose status is complete, stopped or recovered and that the engineer did
not discard; a take still `recording` (or left so by a killed
recorder: `capture recover` first) is never pushed.

How, so that a push cut short at any point resumes without duplicates or half takes:
- keys are fixed by the take's place under RECORDINGS (`<prefix>/<session>/<take_id>.wav|.json`), so
  a re-run overwrites rather than adds, and an S3 PUT is all or nothing (an unfinished multipart
  upload leaves no object);
- the audio goes first and is read back and hashed (sha256) before the manifest follows it; the
  manifest is the take's commit marker: a reader that lists manifests sees only verified audio;
- a take whose remote manifest equals the local one and whose remote audio has the local size is
  already pushed and is skipped (`verify=True` re-hashes it anyway);
- the audio must match the sha256 its manifest recorded, else it changed or was damaged after
  recording and is reported, not pushed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import ConfigError, InputError
from pipeline.manifest import TakeManifest, TakeStatus, manifest_path, read_manifest
from pipeline.objectstore import arrow_s3_filesystem

CHUNK = 1 << 20


class PushError(InputError):
    """A take whose upload could not be verified (the store kept different bytes)."""


@dataclass
class PushReport:
    pushed: list[str] = field(default_factory=list)  # take ids uploaded (audio and/or manifest) this run
    already: list[str] = field(default_factory=list)  # already in the store, unchanged
    skipped: list[dict] = field(default_factory=list)  # {take, reason}: not ingestible, mismatched, unreadable
    bytes_sent: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → ("bucket", "prefix") (prefix without slashes at either end)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.strip("/")


def _sha256_stream(read: Callable[[int], bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_stream(f.read)


def find_takes(recordings: Path) -> Iterator[tuple[Path, Path]]:
    """(audio, manifest) pairs under RECORDINGS, in a stable order."""
    for manifest in sorted(recordings.rglob("*.json")):
        for audio in (manifest.with_suffix(".wav"), manifest.with_suffix(".flac")):  # capture writes WAV; imports may be FLAC
            if audio.exists() and manifest_path(audio) == manifest:
                yield audio, manifest
                break


class TakePusher:
    """Pushes takes to one `s3://bucket/prefix` through pyarrow's S3 filesystem (the S3 settings of
    pipeline.objectstore: AWS_* variables and CANTOLAB_S3_ENDPOINT)."""

    def __init__(self, dest: str, env: dict[str, str] | None = None):
        self.bucket, self.prefix = split_s3_url(dest)
        self.fs = arrow_s3_filesystem(env)
        from pyarrow import fs

        info = self.fs.get_file_info(self.bucket)
        if info.type == fs.FileType.NotFound:
            raise ConfigError(f"bucket {self.bucket!r} does not exist at the S3 endpoint (create it first)")

    def key(self, relative: Path) -> str:
        return "/".join(p for p in (self.bucket, self.prefix, relative.as_posix()) if p)

    def _size(self, key: str) -> int | None:
        from pyarrow import fs

        info = self.fs.get_file_info(key)
        return info.size if info.type == fs.FileType.File else None

    def _read(self, key: str) -> bytes | None:
        if self._size(key) is None:
            return None
        with self.fs.open_input_stream(key) as f:
            return f.read()

    def remote_sha256(self, key: str) -> str | None:
        if self._size(key) is None:
            return None
        with self.fs.open_input_stream(key) as f:
            return _sha256_stream(f.read)

    def _upload(self, path: Path, key: str, content_type: str) -> int:
        with open(path, "rb") as src, self.fs.open_output_stream(key, metadata={"Content-Type": content_type}) as out:
            sent = 0
            while chunk := src.read(CHUNK):
                out.write(chunk)
                sent += len(chunk)
        return sent

    def push_take(self, audio: Path, manifest_file: Path, relative: Path, verify: bool = False) -> tuple[str, int]:
        """Push one take; returns ("pushed" | "already", bytes sent). Raises InputError for a take
        that must not or cannot be pushed."""
        manifest: TakeManifest = read_manifest(manifest_file)
        if manifest.status == TakeStatus.RECORDING or manifest.discarded:  # what ingest would skip too
            why = (
                "discarded by the engineer"
                if manifest.discarded
                else f"status {manifest.status} (still recording, or `capture recover` it)"
            )
            raise InputError(why)
        local_manifest = manifest_file.read_bytes()
        audio_key, manifest_key = self.key(relative), self.key(relative.with_suffix(".json"))
        size = audio.stat().st_size
        if not verify and self._read(manifest_key) == local_manifest and self._size(audio_key) == size:
            return "already", 0
        local_sha = file_sha256(audio)
        if manifest.sha256 and manifest.sha256 != local_sha:
            raise InputError(
                f"audio sha256 {local_sha[:12]}… differs from its manifest's {manifest.sha256[:12]}… (changed or damaged since recording)"
            )
        sent = 0
        if self._size(audio_key) != size or self.remote_sha256(audio_key) != local_sha:
            sent += self._upload(audio, audio_key, "audio/flac" if audio.suffix == ".flac" else "audio/wav")
            remote = self.remote_sha256(audio_key)
            if remote != local_sha:
                raise PushError(f"the store holds sha256 {remote} for {audio_key} after upload, not {local_sha}")
        if self._read(manifest_key) != local_manifest:
            sent += self._upload(manifest_file, manifest_key, "application/json")
            if self._read(manifest_key) != local_manifest:
                raise PushError(f"the store's copy of {manifest_key} differs from {manifest_file} after upload")
        return ("pushed" if sent else "already"), sent


def push_recordings(
    recordings: str | Path,
    dest: str,
    *,
    verify: bool = False,
    env: dict[str, str] | None = None,
    on_take: Callable[[str, str, str], None] = lambda _take, _outcome, _detail: None,
) -> PushReport:
    """Push every finished take under RECORDINGS to `dest`; a take that cannot be pushed is reported
    and the rest carry on (re-run to retry it)."""
    root = Path(recordings)
    if not root.is_dir():
        raise ConfigError(f"recordings folder {root} does not exist")
    pusher = TakePusher(dest, env)
    report = PushReport()
    for audio, manifest_file in find_takes(root):
        relative = audio.relative_to(root)
        take = relative.with_suffix("").as_posix()
        try:
            outcome, sent = pusher.push_take(audio, manifest_file, relative, verify)
        except InputError as exc:
            report.skipped.append({"take": take, "reason": str(exc)})
            on_take(take, "skipped", str(exc))
            continue
        report.bytes_sent += sent
        (report.pushed if outcome == "pushed" else report.already).append(take)
        on_take(take, outcome, f"{sent} bytes" if sent else "")
    return report
