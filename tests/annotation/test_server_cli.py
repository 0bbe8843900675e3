"""`cantolab annotate server start|status|stop` on a fresh home: a second real server, own port."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from annotation.server import DEFAULT_VENV, free_port


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
