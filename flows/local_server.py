"""A temporary Prefect server that stays ours: it dies with the command that started it.

Without `PREFECT_API_URL`, Prefect starts a temporary server per process and stops it at exit
(`atexit`), which a SIGTERM or SIGKILL skips: the server lived on with parent PID 1. Cantolab
starts that server itself instead, with the kernel's parent-death signal set (`PR_SET_PDEATHSIG`:
the server gets SIGTERM the moment its parent dies, however it dies), and records it under
`$XDG_RUNTIME_DIR/cantolab-<uid>/prefect-servers/` so the next run reaps any leftover whose parent
is gone — after checking that the PID is still that server (command line and start time), never
a process that happens to have reused its number.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from annotation.server import free_port
from pipeline.errors import CantolabError
from pipeline.fsio import atomic_write_text

SERVER_APP = "prefect.server.api.server:create_app"
_PR_SET_PDEATHSIG = 1


def records_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"cantolab-{os.getuid()}" / "prefect-servers"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_same_process(pid: int, started: int | None, marker: str) -> bool:
    """True when `pid` is still the process recorded: same start time, and `marker` in its command line."""
    return started is not None and start_time(pid) == started and marker in command_line(pid)


def _die_with_parent(parent: int):
    def setup() -> None:  # runs in the child between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def _stop(pid: int, started: int | None, grace: float = 5.0) -> None:
    if not is_same_process(pid, started, SERVER_APP):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and start_time(pid) == started:
        time.sleep(0.1)
    if is_same_process(pid, started, SERVER_APP):
        os.kill(pid, signal.SIGKILL)


def reap_orphans() -> list[int]:
    """Stop recorded servers whose starting process is gone; returns the PIDs signalled."""
    reaped = []
    folder = records_dir()
    if not folder.is_dir():
        return reaped
    for record_path in folder.glob("*.json"):
        try:
            record = json.loads(record_path.read_text())
            pid, started = int(record["pid"]), record.get("start_time")
            parent, parent_started = int(record["parent"]), record.get("parent_start_time")
        except (OSError, ValueError, KeyError, TypeError):
            record_path.unlink(missing_ok=True)
            continue
        if start_time(parent) is not None and start_time(parent) == parent_started:
            continue  # its owner still runs: not an orphan
        if is_same_process(pid, started, SERVER_APP):
            _stop(pid, started)
            reaped.append(pid)
        record_path.unlink(missing_ok=True)
    return reaped


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CantolabError(f"the temporary Prefect server exited with status {proc.returncode} before it answered")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
    raise CantolabError(f"the temporary Prefect server did not answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def prefect_api(timeout: float = 120.0) -> Iterator[str]:
    """The Prefect API to use: `PREFECT_API_URL` when set, else a temporary server of our own."""
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    reap_orphans()
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory", SERVER_APP,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent(os.getpid()), stdin=subprocess.DEVNULL)
    started = start_time(proc.pid)
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    record_path = folder / f"{proc.pid}.json"
    atomic_write_text(
        record_path,
        json.dumps(
            {"pid": proc.pid, "start_time": started, "parent": os.getpid(), "parent_start_time": start_time(os.getpid()), "port": port}
        ),
        perms=0o600,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(proc, url, timeout)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        record_path.unlink(missing_ok=True)
