"""A local Label Studio server run from its own virtual environment (DESIGN.md, offline start).

Label Studio pins packages that break Prefect, so it lives in `.venv-labelstudio`; we start it as a
child process with a data dir, a document root for local-file serving and a service-account token
that is generated once, kept in the secrets file and passed through the environment (never on a
command line, so it is not visible in `ps`, and never logged). Production can skip all of this and
point CANTOLAB_LS_URL / CANTOLAB_LS_TOKEN at any Label Studio.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pipeline.errors import CantolabError
from pipeline.fsio import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO_ROOT / ".venv-labelstudio"
DEFAULT_HOME = Path(os.environ.get("CANTOLAB_LS_HOME") or Path.home() / ".local" / "share" / "cantolab" / "labelstudio")
SERVICE_EMAIL = "cantolab-sync@cantolab.local"

LAUNCHER = Path(__file__).with_name("labelstudio_launch.py")  # runs inside .venv-labelstudio
ADMIN = Path(__file__).with_name("labelstudio_admin.py")  # organizations; runs inside .venv-labelstudio
DEFAULT_PORT = 8080
SQLITE_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")  # the launcher's --sqlite-synchronous choices


def default_workers() -> int:
    """Label Studio worker processes: CANTOLAB_LS_WORKERS, else one per core up to 4 (0 = its
    single-process development server)."""
    env = os.environ.get("CANTOLAB_LS_WORKERS")
    return int(env) if env else min(4, os.cpu_count() or 1)


class ServerError(CantolabError, RuntimeError):
    """The local server could not be started, reached or stopped; the message says why."""


def process_identity(pid: int) -> tuple[str, int] | None:
    """(command line, start time in clock ticks since boot) of a live process, from /proc; None if gone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3, starttime field 22
    if fields[0] == "Z":
        return None
    return cmdline, int(fields[19])


def _utc(stamp: str | None) -> str | None:
    """Django keeps SQLite datetimes as naive UTC text ("2026-11-28 22:04:06.550964")."""
    return f"{stamp.replace(' ', 'T')}+00:00" if stamp else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    """One Label Studio instance: `home` holds data/, media/ (the document root), server.json, server.log."""

    home: Path = DEFAULT_HOME
    port: int | None = None  # None: the port recorded by the last start, else 8080
    venv: Path = DEFAULT_VENV
    sqlite_synchronous: str = "NORMAL"  # "FULL" costs ~5 ms more per annotation POST, for surviving power cuts
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        if self.port is None:
            self.port = int(self.read_state().get("port") or DEFAULT_PORT)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def document_root(self) -> Path:
        return self.home / "media"

    @property
    def state_file(self) -> Path:
        return self.home / "server.json"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def control_socket(self) -> Path:
        return self.home / "gunicorn.ctl"

    @property
    def placement_file(self) -> Path:
        return self.home / "placement.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def executable(self) -> Path:
        exe = self.venv / "bin" / "label-studio"
        if not exe.exists():
            raise ServerError(f"{exe} not found: run `make setup` (scripts/setup.sh builds Label Studio's own venv)")
        return exe

    def environment(self, token: str, admin_password: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))}
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_USERNAME=SERVICE_EMAIL,
            LABEL_STUDIO_PASSWORD=admin_password,
            LABEL_STUDIO_USER_TOKEN=token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            LOCAL_FILES_SERVING_ENABLED="true",
            LOCAL_FILES_DOCUMENT_ROOT=str(self.document_root),
            COLLECT_ANALYTICS="false",
            LATEST_VERSION_CHECK="false",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        )
        return env

    def read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def pid(self) -> int | None:
        """The recorded PID if that process is still this home's server (its command line names our
        launcher and this home's control socket, and it started when recorded), else None: a stale
        server.json whose PID the system gave to another process never leads to signalling it."""
        state = self.read_state()
        pid = state.get("pid")
        if not pid:
            return None
        ident = process_identity(pid)
        if ident is None:
            return None
        cmdline, started = ident
        if LAUNCHER.name not in cmdline or str(self.control_socket) not in cmdline:
            return None
        if state.get("started") is not None and state["started"] != started:
            return None
        return pid

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def credentials(self) -> tuple[str, str]:
        """Service token and admin password: created once per home, kept with mode 0600."""
        path = self.home / "service.json"
        if path.exists():
            data = json.loads(path.read_text())
        else:
            self.home.mkdir(parents=True, exist_ok=True)
            data = {"token": secrets.token_hex(20), "password": secrets.token_urlsafe(18)}
            atomic_write_text(path, json.dumps(data), perms=0o600)
        return data["token"], data["password"]

    def make_private(self) -> None:
        """The home and data folders 0700, the database and every other file in them 0600: the
        database holds each user's API token in plain text."""
        for d in (self.home, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        for f in self.data_dir.rglob("*"):
            os.chmod(f, 0o700 if f.is_dir() else 0o600)
        for f in self.home.iterdir():
            if f.is_file():
                os.chmod(f, 0o600)

    def organize(self, people: list[dict], timeout: float = 180.0) -> dict[str, dict]:
        """One organization per person (annotation/labelstudio_admin.py): {email: {org_id, service_token, joined}}."""
        return self._admin({"people": people, "placement": str(self.placement_file)}, "create the organizations", timeout)["orgs"]

    def task_locks(self, project_ids: list[int], timeout: float = 120.0) -> dict[int, dict[str, int]]:
        """{project: {e-mail: tasks locked and not yet labeled}}, read from the server's database
        (its API does not expose task locks)."""
        found = self._admin({"locks": list(project_ids)}, "read the task locks", timeout)["locks"]
        return {int(k): v for k, v in found.items()}

    @property
    def database(self) -> Path:
        return self.data_dir / "label_studio.sqlite3"

    def read_tasks(self, project_ids: list[int]) -> dict[int, list[dict]]:
        """{project: its tasks with every annotation, in the export API's JSON format}, read from the
        server's SQLite database in one read-only snapshot: the sync's bulk read. The export API
        serializes task by task (~5 ms each: 57,256 tasks took 306 s), and even the ORM needs ~10 s
        to start Django; two SELECTs take about a second. Tested to equal the export API's records."""
        ids = [int(p) for p in project_ids]
        out: dict[int, list[dict]] = {p: [] for p in ids}
        if not ids:
            return out
        marks = ",".join("?" * len(ids))
        con = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=60)
        try:
            con.execute("BEGIN")  # one snapshot for both queries (WAL: writers carry on meanwhile)
            by_id: dict[int, dict] = {}
            for tid, pid, data in con.execute(f"SELECT id, project_id, data FROM task WHERE project_id IN ({marks}) ORDER BY id", ids):
                task = {"id": tid, "data": json.loads(data) if data else {}, "annotations": []}
                by_id[tid] = task
                out[pid].append(task)
            emails = dict(con.execute("SELECT id, email FROM htx_user"))
            rows = con.execute(
                "SELECT c.id, c.task_id, c.completed_by_id, c.result, c.was_cancelled, c.created_at, c.updated_at "
                f"FROM task_completion c JOIN task t ON t.id = c.task_id WHERE t.project_id IN ({marks}) ORDER BY c.id",
                ids,
            )
            for aid, tid, uid, result, cancelled, created, updated in rows:
                by_id[tid]["annotations"].append(
                    {
                        "id": aid,
                        "completed_by": {"id": uid, "email": emails.get(uid)},
                        "result": json.loads(result) if result else [],
                        "was_cancelled": bool(cancelled),
                        "created_at": _utc(created),
                        "updated_at": _utc(updated),
                    }
                )
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ServerError(f"could not read the tasks from {self.database}: {exc}") from exc
        finally:
            con.close()
        return out

    def _admin(self, request: dict, what: str, timeout: float) -> dict:
        exe = self.executable()
        token, password = self.credentials()
        proc = subprocess.run(
            [str(exe.parent / "python"), str(ADMIN)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=self.environment(token, password),
            cwd=self.home,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ServerError(f"could not {what} (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout)

    def start(self, wait_s: float = 240.0) -> int:
        """Start (or find running) and wait until /health answers; returns the PID."""
        if (pid := self.pid()) and self.healthy():
            return pid
        exe = self.executable()
        if self.sqlite_synchronous.upper() not in SQLITE_SYNC_MODES:
            raise ServerError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNC_MODES)}, not {self.sqlite_synchronous!r}")
        token, password = self.credentials()
        for d in (self.data_dir, self.document_root):
            d.mkdir(parents=True, exist_ok=True)
        self.make_private()
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log = os.fdopen(fd, "ab")
        launch = [
            str(exe.parent / "python"),
            str(LAUNCHER),
            "--workers",
            str(self.workers),
            "--sqlite-synchronous",
            self.sqlite_synchronous.upper(),
            "--control-socket",
            str(self.control_socket),
            "--placement",
            str(self.placement_file),
        ]
        proc = subprocess.Popen(
            [*launch, "start", "--no-browser", "--port", str(self.port), "--internal-host", "127.0.0.1"],
            env=self.environment(token, password),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends it and its children, nothing else
            umask=0o077,
        )
        log.close()
        ident = process_identity(proc.pid)
        state = {"pid": proc.pid, "started": ident[1] if ident else None, "port": self.port, "url": self.url}
        atomic_write_text(self.state_file, json.dumps(state), perms=0o600)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerError(f"Label Studio exited with code {proc.returncode}; see {self.log_file}")
            if self.healthy():
                return proc.pid
            time.sleep(1.0)
        self.stop()
        raise ServerError(f"Label Studio did not answer on {self.url} within {wait_s:.0f} s; see {self.log_file}")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 20.0) -> bool:
        """Stop the server this home started (its process group, by the recorded PID, once that PID
        is checked to still be our server); a stale record is removed without signalling anything."""
        pid = self.pid()
        if pid is None:
            self.state_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
                if waited == pid:
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict:
        pid = self.pid()
        return {
            "url": self.url,
            "port": self.port,
            "pid": pid,
            "running": pid is not None,
            "healthy": self.healthy() if pid else False,
            "data_dir": str(self.data_dir),
            "document_root": str(self.document_root),
            "log": str(self.log_file),
        }
