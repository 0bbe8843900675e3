"""Per-take leases, so that two ingests of one dataset never transcribe the same take twice.

A lease is an exclusive `flock` on `<folder>/<take_id>.lease`: the kernel drops it when its holder
exits, however it exits (a SIGKILLed ingest leaves nothing to clean up). While a take is held, a
second ingest skips it as "in progress"; when the holder has written the take it records that in
the file, so a run that started before then skips the take as "ingested by another ingest"
instead of transcribing it again. Leases need a local dataset folder (flock); for an `s3://`
dataset none are taken. The lease files stay (a few bytes per take); only the lock comes and goes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Lease:
    """A take asked for: held (with what its last holder recorded) or busy (another holder has it)."""

    held: bool
    record: dict | None = None  # what the last holder wrote when it finished the take
    _fh: IO[str] | None = None

    def finished(self, **facts) -> None:
        """Record that the take is written, for runs that wanted it at the same time."""
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps({"done_at": time.time(), "pid": os.getpid(), **facts}))
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class TakeLeases:
    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None

    def acquire(self, take_id: str) -> Lease:
        """Take the lease without waiting; `held` is False when another process (or thread) has it."""
        if self.folder is None:
            return Lease(held=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.folder / (_SAFE.sub("_", take_id) + ".lease"), "a+")  # noqa: SIM115 — held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return Lease(held=False)
        fh.seek(0)
        try:
            record = json.loads(fh.read() or "null")
        except ValueError:
            record = None
        return Lease(held=True, record=record if isinstance(record, dict) else None, _fh=fh)
