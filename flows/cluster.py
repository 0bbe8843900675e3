"""A local cluster of the real parts a studio deployment spreads over machines, each its own process.

`cantolab cluster up RUN` starts, in this order: a SeaweedFS S3 store (pipeline.objectstore), a
Prefect server (`prefect server start`, SQLite in RUN), a Dask scheduler and N Dask workers, the
`cantolab` process work pool and M Prefect workers polling it. Every one binds 127.0.0.1 on a free
port (Dask and SeaweedFS only do with explicit flags), logs to RUN/logs/<name>.log and is recorded in
RUN/cluster.json (PID, start time, command marker, ports) before the next one starts, so a failed
`up` is undone and `down` always knows what it started.

`down` stops only those processes, by PID, after checking each PID is still the process recorded
(start time and command line: a reused PID is left alone), workers before servers (a Prefect worker
whose server is gone ignores SIGTERM for a long while). Each process leads its own session, and the
descendants it has when stopped (a flow run's subprocess, a Dask nanny's worker) are stopped by
their PIDs too.

A Prefect worker that dies with its machine cannot report its flow run: without help the run stays
"Running" forever. Workers' flow runs therefore send heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
30 s, Prefect's minimum) and `up` creates an automation on the server (Prefect's "detect zombie
flows" recipe): a deployment's run with no heartbeat (nor final state) for `zombie_after` seconds is
set Crashed, and its deployment is run again; any live worker picks that run up, and the ingest's
caches and keyed upserts make the second attempt finish the first's work without duplicates.
`restart NAME` stops one process and starts it again with its recorded command, ports and data
(the fault drills: a Prefect server or S3 store restarted mid-run).

On one machine this is a rehearsal of the real layout (README, "Scaling out"): the same commands
with other hosts run the server parts on a server and the workers on GPU boxes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from annotation.server import free_port
from flows.local_server import is_same_process, start_time
from pipeline.errors import CantolabError, ConfigError
from pipeline.fsio import atomic_write_text
from pipeline.objectstore import start_seaweedfs

STATE_FILE = "cluster.json"
ENV_FILE = "cluster.env"
POOL = "cantolab"
BUCKET = "cantolab"
# `down` stops these roles in this order: whatever submits or runs work before what it talks to.
STOP_ORDER = ("prefect-worker", "dask-worker", "dask-scheduler", "prefect-server", "s3")
QUIET = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DASK_DISTRIBUTED__DIAGNOSTICS__NVML": "false"}
HEARTBEAT_SECONDS = 30  # a flow run's heartbeat (Prefect sends none more often)
ZOMBIE_AFTER_SECONDS = 90.0  # three missed heartbeats: the run's worker is gone
ZOMBIE_AUTOMATION = "cantolab: crash and rerun deployment runs whose worker is gone"
# What a (re)started process prints once it is ready, for those without a port to probe.
READY_LINE = {"dask-worker": "Registered to:", "prefect-worker": "Worker '{name}' started"}


@dataclass
class ClusterProcess:
    name: str
    role: str
    pid: int
    start_time: int | None
    marker: str  # a string its command line holds (with start_time: the PID is still this process)
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)  # what `restart` runs again
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)  # its own settings on top of the cluster's (no secrets)

    def alive(self) -> bool:
        return is_same_process(self.pid, self.start_time, self.marker)


@dataclass
class ClusterState:
    run_dir: str
    pool: str = POOL
    prefect_api: str = ""
    dask_address: str = ""
    s3: dict[str, str] = field(default_factory=dict)  # endpoint, credentials, bucket
    processes: list[ClusterProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What a client (or a worker on another machine) sets to use this cluster."""
        out = dict(QUIET)
        if self.prefect_api:
            out["PREFECT_API_URL"] = self.prefect_api
        if self.dask_address:
            out["CANTOLAB_DASK_ADDRESS"] = self.dask_address
        if self.s3:
            out |= {
                "AWS_ACCESS_KEY_ID": self.s3["access_key"],
                "AWS_SECRET_ACCESS_KEY": self.s3["secret_key"],
                "AWS_REGION": self.s3.get("region", "us-east-1"),
                "CANTOLAB_S3_ENDPOINT": self.s3["endpoint"],
                "AWS_ENDPOINT_URL": self.s3["endpoint"],
            }
        return out

    def save(self) -> None:
        """Written after every start (0600: it holds the S3 secret), so a half-started cluster can be stopped."""
        run = Path(self.run_dir)
        atomic_write_text(run / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n", perms=0o600)
        lines = "".join(f"export {k}={v}\n" for k, v in self.env().items())
        atomic_write_text(run / ENV_FILE, lines, perms=0o600)


def load_state(run_dir: str | os.PathLike) -> ClusterState:
    path = Path(run_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no cluster in {run_dir}: {path} does not exist (start one with `cantolab cluster up {run_dir}`)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: unreadable cluster state ({exc})") from None
    procs = [ClusterProcess(**p) for p in data.pop("processes", [])]
    return ClusterState(**data, processes=procs)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _wait(what: str, ready: Callable[[], bool], proc: subprocess.Popen | None, log: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise CantolabError(f"{what} exited with status {proc.returncode} before it was ready; log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise CantolabError(f"{what} was not ready within {timeout:.0f} s; log {log}:\n{_tail(log)}")
        time.sleep(0.3)


def _tail(log: Path | None, chars: int = 1500) -> str:
    with contextlib.suppress(OSError, TypeError):
        return Path(log).read_text(errors="replace")[-chars:]
    return ""


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ConfigError(f"`{name}` not found beside {sys.executable} or on PATH")
    return found


class Launcher:
    """Starts processes into one run folder and records each in the state before the next starts."""

    def __init__(self, state: ClusterState, base_env: dict[str, str]):
        self.state = state
        self.run = Path(state.run_dir)
        self.base_env = base_env
        (self.run / "logs").mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, role: str, cmd: list[str], marker: str, ports: dict[str, int], env: dict[str, str] | None = None):
        log = self.run / "logs" / f"{name}.log"
        work = self.run / "work"
        work.mkdir(exist_ok=True)
        proc = _popen(cmd, work, {**self.base_env, **(env or {})}, log)
        self.record(ClusterProcess(name, role, proc.pid, start_time(proc.pid), marker, str(log), ports, cmd, str(work), env or {}))
        return proc, log

    def record(self, entry: ClusterProcess) -> None:
        self.state.processes.append(entry)
        self.state.save()


def _popen(cmd: list[str], cwd: str | Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own session: `cluster up` may exit
        )  # fmt: skip


def _base_env(run: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # never the user's own server or profile
    # 7 retries (2, 4 … 128 s) instead of 5: a flow run or task rides out a server restart of a few minutes
    env.setdefault("CANTOLAB_RECORDINGS_CACHE", str(run / "recordings-cache"))  # the cluster's own mirror of s3:// recordings
    return env | QUIET | {"PREFECT_HOME": str(run / "prefect-home"), "PREFECT_CLIENT_MAX_RETRIES": "7"}


# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536 (to hand freed memory back to
# the OS). Setting it switches off glibc's dynamic mmap threshold, so every audio-sized numpy array
# is mmap'd and unmapped anew: measured here, a take's preprocessing and transcription cost 2× the
# CPU on a worker (4× the system time) of the same work in a plain process. A worker holds one
# take at a time, so glibc's defaults are kept (None unsets it in Dask's config). Dask's statistical
# profiler (a stack sample of every task thread each 10 ms, for its dashboard, which the cluster
# does not serve) is switched off too.
WORKER_ENV = {
    "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": '{"MALLOC_TRIM_THRESHOLD_": None}',
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
}


def up(
    run_dir: str | os.PathLike,
    *,
    dask_workers: int = 2,
    dask_threads: int = 2,
    prefect_workers: int = 2,
    pool: str = POOL,
    bucket: str = BUCKET,
    worker_query_seconds: float | None = None,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
    zombie_after: float = ZOMBIE_AFTER_SECONDS,
    timeout: float = 180.0,
    progress: Callable[[str], None] = lambda _msg: None,
) -> ClusterState:
    """Start the cluster; on any failure stop what was started and raise.

    `zombie_after`: seconds without a heartbeat after which a run is declared Crashed and its
    deployment run again; more than `heartbeat_seconds` (≥ 30), with slack for a busy machine."""
    if heartbeat_seconds < 30 or zombie_after <= heartbeat_seconds:
        raise ConfigError(
            f"heartbeats every {heartbeat_seconds} s, crashed after {zombie_after:.0f} s without one: "
            "Prefect sends one every 30 s at most, and the wait must be longer than that"
        )
    run = Path(run_dir).resolve()
    if (run / STATE_FILE).exists() and any(p.alive() for p in load_state(run).processes):
        raise ConfigError(f"a cluster is already running from {run} (`cantolab cluster status {run_dir}`)")
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = ClusterState(str(run), pool=pool)
    state.save()
    launcher = Launcher(state, _base_env(run))
    try:
        workers_env = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_seconds)}
        if worker_query_seconds is not None:
            workers_env["PREFECT_WORKER_QUERY_SECONDS"] = str(worker_query_seconds)
        _start_all(launcher, dask_workers, dask_threads, prefect_workers, bucket, workers_env, zombie_after, timeout, progress)
    except BaseException:
        down(run)
        raise
    return state


def _start_all(
    launcher: Launcher, dask_workers, dask_threads, prefect_workers, bucket, workers_env, zombie_after, timeout, progress
) -> None:
    state, run = launcher.state, launcher.run

    progress("S3 store (SeaweedFS)")
    s3 = start_seaweedfs(run / "s3", buckets=(bucket,), timeout=timeout)
    state.s3 = {"endpoint": s3.endpoint, "access_key": s3.access_key, "secret_key": s3.secret_key, "region": s3.region, "bucket": bucket}
    s3_port = int(s3.endpoint.rsplit(":", 1)[1])
    launcher.record(
        ClusterProcess("s3", "s3", s3.process.pid, start_time(s3.process.pid), "mini", str(run / "s3" / "weed.log"), {"s3": s3_port},
                       s3.command, str(s3.folder))
    )  # fmt: skip
    launcher.base_env |= state.env()

    progress("Prefect server")
    port = free_port()
    home = run / "prefect-home"
    home.mkdir(exist_ok=True)
    server_env = {"PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}"}
    server, log = launcher.spawn(
        "prefect-server", "prefect-server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        "server start", {"api": port}, server_env,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    _wait("the Prefect server", lambda: _http_ok(f"{api}/health"), server, log, timeout)
    state.prefect_api = api
    launcher.base_env |= {"PREFECT_API_URL": api}
    ensure_zombie_automation(api, zombie_after)

    progress("Dask scheduler")
    sched_port, http_port = free_port(), free_port()
    # --no-dashboard still serves /health and metrics over HTTP, on every interface unless told otherwise
    sched, log = launcher.spawn(
        "dask-scheduler", "dask-scheduler",
        [_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(sched_port), "--no-dashboard",
         "--dashboard-address", f"127.0.0.1:{http_port}", "--no-show"],
        "scheduler", {"scheduler": sched_port, "http": http_port},
    )  # fmt: skip
    _wait("the Dask scheduler", lambda: _port_open(sched_port), sched, log, timeout)
    state.dask_address = f"tcp://127.0.0.1:{sched_port}"
    launcher.base_env |= state.env()

    dask_env = {"DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": "spawn"}  # delta-rs panics in forked children
    dask_env |= WORKER_ENV
    started = []
    for i in range(dask_workers):
        ports = {"worker": free_port(), "nanny": free_port(), "http": free_port()}
        proc, log = launcher.spawn(
            f"dask-worker-{i + 1}", "dask-worker",
            [_bin("dask"), "worker", state.dask_address, "--host", "127.0.0.1", "--worker-port", str(ports["worker"]),
             "--nanny-port", str(ports["nanny"]), "--nthreads", str(dask_threads), "--no-dashboard",
             "--dashboard-address", f"127.0.0.1:{ports['http']}", "--name", f"dask-worker-{i + 1}",
             "--preload", "flows.dask_preload"],  # the ingest imported once per worker, at start
            "worker tcp://", ports, dask_env,
        )  # fmt: skip
        started.append((proc, log))
    progress(f"{dask_workers} Dask worker(s)")
    for proc, log in started:
        _wait("a Dask worker", lambda lg=log: "Registered to:" in _tail(lg, 100_000), proc, log, timeout)

    progress(f"work pool {state.pool!r} and {prefect_workers} Prefect worker(s)")
    ensure_pool(api, state.pool)
    started = []
    for i in range(prefect_workers):
        name = f"prefect-worker-{i + 1}"
        proc, log = launcher.spawn(
            name, "prefect-worker", [_bin("prefect"), "worker", "start", "--pool", state.pool, "--type", "process", "--name", name],
            "worker start", {}, workers_env,  # their flow runs inherit it: heartbeats on
        )  # fmt: skip
        started.append((proc, log, name))
    for proc, log, name in started:
        _wait(f"Prefect worker {name}", lambda lg=log, n=name: f"Worker '{n}' started" in _tail(lg, 100_000), proc, log, timeout)


def ensure_pool(api: str, pool: str) -> None:
    """The process work pool, created once (two workers creating it at once would race)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    async def create() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                template = ProcessWorker.get_default_base_job_template()
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))

    with temporary_settings(updates={PREFECT_API_URL: api}):
        asyncio.run(create())


def ensure_zombie_automation(api: str, zombie_after: float = ZOMBIE_AFTER_SECONDS) -> None:
    """Prefect's "detect zombie flows" automation, enforced by the server's triggers service: a run
    of a deployment that has sent a heartbeat and then neither another nor a final state within
    `zombie_after` s is set Crashed, then its deployment is run again (default parameters; the run
    lands on any live worker of its pool). Only runs that stopped reporting are rerun: a run the
    worker saw crash (the worker is alive and reports it) waits for its next schedule."""
    import asyncio
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.settings import PREFECT_API_URL, temporary_settings

    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    automation = Automation(
        name=ZOMBIE_AUTOMATION,
        description=f"No heartbeat for {zombie_after:.0f} s: the worker (process or machine) is gone.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=zombie_after),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, name="Crashed",
                message=f"no heartbeat for {zombie_after:.0f} s: its worker is gone (declared by the automation {ZOMBIE_AUTOMATION!r})",
            ),
            RunDeployment(source="inferred"),  # the deployment of the heartbeat's run: the next attempt
        ],
    )  # fmt: skip

    async def create() -> None:
        async with get_client() as client:
            if not await client.read_automations_by_name(ZOMBIE_AUTOMATION):
                await automation.acreate()

    with temporary_settings(updates={PREFECT_API_URL: api}):
        asyncio.run(create())


def restart(run_dir: str | os.PathLike, name: str, down_for: float = 0.0, grace: float = 10.0, timeout: float = 180.0) -> ClusterProcess:
    """Stop one process of the cluster (its descendants too) and start it again with the command,
    ports and data it had, after `down_for` seconds; waits until it is ready. A fault drill, and the
    way back for a part that died (`status` shows it "no")."""
    state = load_state(run_dir)
    entry = next((p for p in state.processes if p.name == name), None)
    if entry is None:
        raise ConfigError(f"no process {name!r} in {run_dir}; it has {', '.join(p.name for p in state.processes)}")
    if not entry.cmd:
        raise ConfigError(f"{name}: its command was not recorded (a cluster started by an older cantolab); `down` and `up` instead")
    _stop_group([entry], grace)
    time.sleep(down_for)
    log = Path(entry.log)
    offset = log.stat().st_size if log.exists() else 0
    env = _base_env(Path(state.run_dir)) | state.env() | entry.env
    proc = _popen(entry.cmd, entry.cwd or state.run_dir, env, log)
    fresh = ClusterProcess(**{**asdict(entry), "pid": proc.pid, "start_time": start_time(proc.pid)})
    state.processes = [fresh if p.name == name else p for p in state.processes]
    state.save()

    def ready() -> bool:
        if entry.role in READY_LINE:
            with contextlib.suppress(OSError), open(log, "rb") as f:
                f.seek(offset)
                return READY_LINE[entry.role].format(name=name).encode() in f.read()
            return False
        if entry.role == "prefect-server":
            return _http_ok(f"{state.prefect_api}/health")
        return all(_port_open(port) for port in entry.ports.values())

    _wait(name, ready, proc, log, timeout)
    return fresh


def _descendants(pid: int) -> list:
    import psutil

    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _stop_group(entries: list[ClusterProcess], grace: float) -> dict[str, str]:
    """SIGTERM to each, SIGKILL to those still there after `grace`; descendants (snapshotted before
    the signal) by their own PIDs too. psutil's is_running() compares creation times, so a PID the
    system has since reused is never signalled."""
    import psutil

    outcome = {e.name: "not running" for e in entries}
    live = [e for e in entries if e.alive()]
    children = [c for e in live for c in _descendants(e.pid)]
    for e in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(e.pid, signal.SIGTERM)
        outcome[e.name] = "stopped"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(e.alive() for e in live):
        time.sleep(0.2)
    for e in live:
        if e.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(e.pid, signal.SIGKILL)
            outcome[e.name] = f"killed after {grace:.0f} s"
    _, left = psutil.wait_procs([c for c in children if c.is_running()], timeout=5)
    for child in left:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()
    psutil.wait_procs(left, timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(e.alive() for e in live):
        time.sleep(0.1)
    return outcome


def down(run_dir: str | os.PathLike, grace: float = 15.0, report: Callable[[str, str], None] = lambda _n, _s: None) -> dict[str, str]:
    """Stop the processes this run folder's `up` started, workers first; returns name → what happened."""
    state = load_state(run_dir)
    outcome = {}
    for role in STOP_ORDER:
        group = _stop_group([p for p in state.processes if p.role == role], grace)
        for name, what in group.items():
            report(name, what)
        outcome |= group
    return outcome


def status(run_dir: str | os.PathLike) -> list[dict]:
    """Each recorded process: alive (still that PID and command), its ports and whether they answer."""
    state = load_state(run_dir)
    rows = []
    for p in state.processes:
        alive = p.alive()
        rows.append(
            {
                "name": p.name,
                "role": p.role,
                "pid": p.pid,
                "alive": alive,
                "ports": p.ports,
                "listening": alive and all(_port_open(port) for port in p.ports.values()),
                "log": p.log,
            }
        )
    return rows


@contextlib.contextmanager
def running(run_dir: str | os.PathLike, **options) -> Iterator[ClusterState]:
    """`up` for the length of a block (tests, benchmarks), `down` after it however it ends."""
    state = up(run_dir, **options)
    try:
        yield state
    finally:
        down(run_dir)
