"""Per-take leases, so that two ingests of one dataset never transcribe the same take twice.

A lease is an exclusive `flock` on `<folder>/<take_id>.lease`: the kernel drops it when its holder
exits, however it exits (a SIGKILLed ingest leaves nothing to clean up). While a take is held, a
second ingest skips it as "in progress"; when the holder has written the take it records that in
the file, so a run that started before then skips the take as "ingested by a concurrent run"
instead of transcribing it again. Leases need a local dataset folder (flock); for an `s3://`
dataset they are not taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Lease:
    """The outcome of asking for a take: held (with what an earlier holder recorded), or busy."""

    held: bool
    path: Path | None = None
    record: dict | None = None  # what the last holder wrote when it finished the take
    _fh: object = None

    def finished(self, **facts) -> None:
        """Record that the take is written (read by runs that wanted it at the same time)."""
        if self._fh is None:
            return
        fh = self._fh
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"done_at": time.time(), "pid": os.getpid(), **facts}))
        fh.flush()


class TakeLeases:
    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None

    @contextlib.contextmanager
    def hold(self, take_id: str) -> Iterator[Lease]:
        if self.folder is None:
            yield Lease(held=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / (_SAFE.sub("_", take_id) + ".lease")
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield Lease(held=False, path=path)
                return
            try:
                fh.seek(0)
                try:
                    record = json.loads(fh.read() or "null")
                except ValueError:
                    record = None
                yield Lease(held=True, path=path, record=record if isinstance(record, dict) else None, _fh=fh)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
