"""`cantolab annotate server start|status|stop` on a fresh home: a second real server, own port, own
control socket; the files are private to their owner; stop signals only a process that is ours."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotation.server import DEFAULT_VENV, LocalServer, free_port


@pytest.mark.timeout(400)
def test_server_start_status_stop(tmp_path, monkeypatch):
    if not (DEFAULT_VENV / "bin" / "label-studio").exists():
        pytest.skip("Label Studio's venv is missing: run `make setup`")
    from flows.cli import app

    secrets = tmp_path / "secrets.json"
    monkeypatch.setenv("CANTOLAB_LS_SECRETS", str(secrets))
    home, port = tmp_path / "ls", free_port()
    runner = CliRunner()
    try:
        res = runner.invoke(app, ["annotate", "server", "start", "--home", str(home), "--port", str(port)])
        assert res.exit_code == 0, res.output
        saved = json.loads(secrets.read_text())
        assert saved["url"] == f"http://127.0.0.1:{port}" and saved["document_root"] == str(home / "media")
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
        assert saved["service_token"] not in res.output
        pid = json.loads((home / "server.json").read_text())["pid"]
        res = runner.invoke(app, ["annotate", "server", "status", "--home", str(home)])
        assert res.exit_code == 0 and "healthy: True" in res.output
        # Starting again finds the running server instead of starting a second one.
        res = runner.invoke(app, ["annotate", "server", "start", "--home", str(home), "--port", str(port)])
        assert res.exit_code == 0 and f"pid {pid}" in res.output
    finally:
        res = runner.invoke(app, ["annotate", "server", "stop", "--home", str(home)])
    assert res.exit_code == 0 and "stopped" in res.output
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    res = runner.invoke(app, ["annotate", "server", "status", "--home", str(home)])
    assert res.exit_code == 1 and "running: False" in res.output


def _as_nobody(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", cmd], capture_output=True, text=True
    )


def test_data_folder_and_database_are_private_to_their_owner(ls_server):
    """The SQLite file holds every API token in plain text: another local user can read neither it nor
    the folders that lead to it (issue: `nobody` read a 0644 database and got HTTP 200 with its token)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as user nobody")
    db = ls_server.data_dir / "label_studio.sqlite3"
    assert stat.S_IMODE(ls_server.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(ls_server.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for f in ls_server.data_dir.glob("label_studio.sqlite3*"):  # -wal and -shm too
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    res = _as_nobody(f"cat {db} > /dev/null")
    assert res.returncode != 0 and "Permission denied" in res.stderr, res
    res = _as_nobody(f"ls {ls_server.data_dir}")
    assert res.returncode != 0 and "Permission denied" in res.stderr, res
    res = _as_nobody(f"cat {ls_server.home / 'service.json'}")
    assert res.returncode != 0, res


def test_stop_never_signals_a_process_that_reused_the_recorded_pid(tmp_path):
    """A stale server.json whose PID now belongs to an unrelated `sleep`: stop leaves it alone."""
    from flows.cli import app

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        home = tmp_path / "ls"
        home.mkdir()
        (home / "server.json").write_text(json.dumps({"pid": sleeper.pid, "port": 1, "url": "http://127.0.0.1:1"}))
        res = CliRunner().invoke(app, ["annotate", "server", "stop", "--home", str(home)])
        assert res.exit_code == 0 and "nothing was signalled" in " ".join(res.output.split()), res.output
        assert sleeper.poll() is None, "the unrelated process was killed"
        assert not (home / "server.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_recorded_pid_with_another_start_time_is_not_ours(ls_server, monkeypatch):
    """Right PID and command line but a different start time (the PID was reused): not ours."""
    srv = LocalServer(home=ls_server.home)
    state = srv.read_state()
    assert srv.pid() == state["pid"] and state["started"]
    monkeypatch.setattr(srv, "read_state", lambda: {**state, "started": state["started"] + 1})
    assert srv.pid() is None


def test_each_server_has_its_own_control_socket_and_reports_its_own_port(ls_server, tmp_path):
    from flows.cli import app

    cmdline = Path(f"/proc/{ls_server.pid()}/cmdline").read_bytes().decode(errors="replace")
    assert str(ls_server.home / "gunicorn.ctl") in cmdline
    assert (ls_server.home / "gunicorn.ctl").is_socket()
    res = CliRunner().invoke(app, ["annotate", "server", "status", "--home", str(ls_server.home)])
    assert res.exit_code == 0, res.output
    assert f"port: {ls_server.port}" in res.output and f"127.0.0.1:{ls_server.port}" in res.output


def test_settings_help_keeps_the_table_name():
    from flows.cli import app

    res = CliRunner().invoke(app, ["annotate", "sync", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "[labels] styles" in res.output and "[annotation] url" in res.output
