"""One atomic write: a writer killed (SIGKILL, a real child process) at any moment leaves the old
file or folder or the new one, never a partial one, never nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.fsio import atomic_write_bytes, atomic_write_text, atomic_writer

REPO = Path(__file__).resolve().parents[2]
SIZE = 1 << 20  # 1 MiB per file: big enough that a kill often lands mid-write

# The child rewrites one file and swaps one folder over and over; every version is one byte value
# repeated, so a reader can tell a whole version from a torn one.
WRITER = f"""
import sys
from pathlib import Path
from pipeline.fsio import atomic_write_bytes, replace_dir, staging_dir
root = Path(sys.argv[1])
i = 0
while True:
    i += 1
    v = bytes([i % 251])
    atomic_write_bytes(root / "file.bin", v * {SIZE})
    new = staging_dir(root / "model")
    for name in ("weights.bin", "config.bin"):
        (new / name).write_bytes(v * {SIZE})
    replace_dir(new, root / "model")
    if i == 1:
        (root / "started").touch()
"""


def _whole_version(data: bytes) -> bool:
    return len(data) == SIZE and data == data[:1] * SIZE


def test_sigkill_during_repeated_writes_and_swaps_leaves_old_or_new(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    for kill in range(12):
        started = tmp_path / "started"
        started.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env)
        try:
            deadline = time.monotonic() + 30
            while not started.exists():
                assert proc.poll() is None, "the writer died on its own"
                assert time.monotonic() < deadline, "the writer never finished its first version"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert _whole_version((tmp_path / "file.bin").read_bytes()), f"kill {kill}: torn file"
        model = tmp_path / "model"
        assert model.is_dir(), f"kill {kill}: the model folder is missing"
        files = {p.name: p.read_bytes() for p in model.iterdir()}
        assert set(files) == {"weights.bin", "config.bin"}, f"kill {kill}: folder holds {sorted(files)}"
        assert all(_whole_version(d) for d in files.values()) and len(set(files.values())) == 1, f"kill {kill}: mixed folder"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in {"file.bin", "model", "started"}]
    assert all(name.startswith(".") for name in leftovers), leftovers  # temp files stay hidden


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    """A fixed temporary name (`x.tmp`) would make one writer rename the other's half-written file away."""
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "state.bin"

    def write(i: int) -> None:
        for _ in range(40):
            atomic_write_bytes(target, bytes([i]) * 65536)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))  # re-raises any writer's error
    data = target.read_bytes()
    assert len(data) == 65536 and data == data[:1] * 65536
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_secret_files_are_written_owner_only(tmp_path):
    target = tmp_path / "secrets.json"
    atomic_write_text(target, "{}", perms=0o600)
    assert (target.stat().st_mode & 0o777) == 0o600
