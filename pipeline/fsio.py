"""One way to write a file or replace a folder so that a reader never sees it half-written.

A file: a uniquely named temporary file in the same folder, fsync, rename over the target, fsync
the folder. A crash at any point leaves the old file or the new one, never a partial one, and two
writers never share a temporary name. A folder (a saved model): the new folder is built beside the
old one and the two are exchanged in one `renameat2(RENAME_EXCHANGE)` where the filesystem has it,
so there is never a moment with no folder at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None, perms: int | None = None) -> Iterator[IO]:
    """Yield a file to write; on success it replaces `path` atomically and durably, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if perms is not None:
            os.fchmod(fd, perms)
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, perms: int | None = None) -> None:
    with atomic_writer(path, "wb", perms=perms) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, perms: int | None = None) -> None:
    with atomic_writer(path, "w", encoding="utf-8", perms=perms) as fh:
        fh.write(text)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the kernel or filesystem cannot."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    rc = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def staging_dir(dest: str | os.PathLike) -> Path:
    """A fresh folder beside `dest` to build its replacement in (same filesystem, so the swap is a rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".new"))


def replace_dir(new: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put folder `new` at `dest`; `dest` always exists as the old or the new folder, never neither."""
    new, dest = Path(new), Path(dest)
    for root, _dirs, files in os.walk(new):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                os.fsync(fh.fileno())
    if not dest.exists():
        os.rename(new, dest)
    elif _exchange(new, dest):
        shutil.rmtree(new)  # `new` now holds the old folder
    else:  # no exchange here: move the old one aside first (a brief window, logged by callers if they care)
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)
