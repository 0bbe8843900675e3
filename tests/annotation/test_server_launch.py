"""How the local server runs (annotation/labelstudio_launch.py): gunicorn workers over SQLite in WAL
mode. Each saved annotation commits several times and the default rollback journal fsyncs every
commit, and one development-server process serialized Label Studio's ~30 ms of work per annotation;
both dominated the annotation benchmark."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def test_database_is_in_wal_mode(ls_server):
    db = ls_server.data_dir / "label_studio.sqlite3"
    assert db.exists(), f"no database at {db}"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_served_by_one_gunicorn_worker_per_configured_slot(ls_server):
    children = Path(f"/proc/{ls_server.pid()}/task/{ls_server.pid()}/children").read_text().split()
    cmdlines = [Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace") for c in children]
    assert ls_server.workers >= 1
    assert len(cmdlines) == ls_server.workers, cmdlines


def test_launch_command_holds_no_secret(ls_server):
    token, password = ls_server.credentials()
    cmdline = Path(f"/proc/{ls_server.pid()}/cmdline").read_bytes().decode(errors="replace")
    assert "labelstudio_launch.py" in cmdline and "NORMAL" in cmdline
    assert token not in cmdline and password not in cmdline
