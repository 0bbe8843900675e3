"""The annotation sync as a real Prefect flow run and through the CLI, against the real Label Studio:
`annotate setup` from a roster, the flow, `annotate sync`, `annotate report`, and `serve` finding it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from annotation.labeling import choice_result
from annotation.settings import read_secrets
from annotation.sync import export_tasks
from pipeline.dataset import Dataset
from tests.annotation.ls_fixtures import build_clip_dataset, real_server, signup

PREFIX = "Flow"


@pytest.fixture(scope="module")
def env(tmp_path_factory, gtsinger):
    server = real_server()
    root = tmp_path_factory.mktemp("flow")
    roster = root / "roster.toml"
    roster.write_text('annotators = ["flow-a@example.org", "flow-b@example.org"]\nadjudicator = "flow-j@example.org"\n')
    (root / "settings.toml").write_text(f'[annotation]\nproject_prefix = "{PREFIX}"\n')
    token, _ = server.credentials()
    mp = pytest.MonkeyPatch()
    mp.setenv("CANTOLAB_LS_URL", server.url)
    mp.setenv("CANTOLAB_LS_TOKEN", token)
    mp.setenv("CANTOLAB_LS_DOCUMENT_ROOT", str(server.document_root))
    mp.setenv("CANTOLAB_ROSTER", str(roster))
    mp.setenv("CANTOLAB_LS_SECRETS", str(root / "secrets.json"))
    ds = Dataset(root / "dataset")
    clips = build_clip_dataset(ds, gtsinger, 3, offset=20)
    yield {"root": root, "ds": ds, "clips": clips, "settings": str(root / "settings.toml"), "token": token}
    mp.undo()


def test_setup_flow_cli_sync_and_report(env, prefect_harness):
    from annotation.client import connect
    from annotation.settings import AnnotationSettings
    from annotation.workspace import recorded_projects
    from flows.annotation_sync import annotation_sync_flow
    from flows.cli import app

    runner = CliRunner()
    server = real_server()
    res = runner.invoke(app, ["annotate", "setup", "--settings", env["settings"], "--home", str(server.home)])
    assert res.exit_code == 0, res.output
    secrets = read_secrets()
    settings = AnnotationSettings.load(env["settings"])
    projects = recorded_projects(settings.url)
    assert set(projects.first) == {"flow-a@example.org", "flow-b@example.org"} and projects.adjudication
    assert env["token"] not in res.output and all(t not in res.output for t in projects.tokens.values())
    assert "users" not in secrets and "user_tokens" not in secrets  # nobody's password is the admin's to keep
    # Setup again finds the recorded projects by id: nothing new.
    res = runner.invoke(app, ["annotate", "setup", "--settings", env["settings"], "--home", str(server.home)])
    assert res.exit_code == 0 and recorded_projects(settings.url) == projects

    # Each annotator signs up through the link `invite` prints, with a password of their own.
    tokens = {}
    for a in projects.first:
        res = runner.invoke(app, ["annotate", "invite", a, "--settings", env["settings"]])
        assert res.exit_code == 0, res.output
        link = next(w for w in res.output.split() if "/user/signup/?token=" in w)
        session = signup(settings.url, a, f"own-{a}", link)
        tokens[a] = session.get(f"{settings.url}/api/current-user/token", timeout=30).json()["token"]
    res = runner.invoke(app, ["annotate", "invite", "stranger@example.org", "--settings", env["settings"]])
    assert res.exit_code == 2 and "not on the roster" in res.output

    report = annotation_sync_flow(dataset=str(env["ds"].root), settings_path=env["settings"])
    assert report["clips"] == 3 and sum(report["tasks_created"].values()) == 6

    for a, pid in projects.first.items():
        client = connect(settings, tokens[a])
        for t in export_tasks(client, pid):
            client.annotations.create(id=t["id"], result=[choice_result("style", "bel canto"), choice_result("emotion", "happy")])

    res = runner.invoke(app, ["annotate", "sync", str(env["ds"].root), "--settings", env["settings"], "--home", str(server.home)])
    assert res.exit_code == 0, res.output
    for a in projects.first:
        assert a in res.output  # the per-person table: done, skipped, waiting, locked
    assert "locked: of the waiting tasks" in res.output  # read from the local server's database
    res = runner.invoke(app, ["annotate", "status", "--settings", env["settings"]])  # another server's home: no locks
    assert res.exit_code == 0, res.output
    assert "flow-a@example.org" in res.output and "waiting" in res.output and "locked: n/a" in res.output
    labels = env["ds"].to_pandas("labels")
    assert len(labels) == 3 and set(labels.resolution) == {"agreed"} and set(labels["style"]) == {"bel canto"}

    out = env["root"] / "report"
    res = runner.invoke(app, ["annotate", "report", str(env["ds"].root), "--out", str(out), "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    assert (out / "agreement.md").exists() and (out / "confusion_style.png").exists()

    again = annotation_sync_flow(dataset=str(env["ds"].root), settings_path=env["settings"])
    assert again["nothing_new"]  # server and dataset as the CLI's sync left them: nothing read or written
    assert again["annotations"] == {"inserted": 0, "updated": 0, "unchanged": 0} and again["per_annotator"]
    assert sum(again["tasks_created"].values()) == 0 and again["labels"]["inserted"] == 0


def test_serve_schedules_the_annotation_sync():
    from flows.serve import SCHEDULED, find_flow

    spec = next(s for s in SCHEDULED if s.name == "annotation-sync")
    flow = find_flow(spec)
    assert flow.name == "annotation-sync"


def test_sync_without_a_token_says_how_to_get_one(tmp_path, monkeypatch):
    from flows.cli import app

    monkeypatch.delenv("CANTOLAB_LS_TOKEN", raising=False)
    monkeypatch.setenv("CANTOLAB_LS_SECRETS", str(tmp_path / "none.json"))
    monkeypatch.setenv("CANTOLAB_LS_DOCUMENT_ROOT", str(tmp_path))
    res = CliRunner().invoke(app, ["annotate", "sync", str(tmp_path / "ds")])
    assert res.exit_code == 2
    assert "CANTOLAB_LS_TOKEN" in res.output


def test_server_status_and_unreachable_server(env, tmp_path, monkeypatch):
    from annotation.server import free_port
    from flows.cli import app

    server = real_server()
    res = CliRunner().invoke(app, ["annotate", "server", "status", "--home", str(server.home)])
    assert res.exit_code == 0, res.output
    assert "healthy: True" in res.output and str(server.pid()) in res.output
    monkeypatch.setenv("CANTOLAB_LS_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    res = CliRunner().invoke(app, ["annotate", "sync", str(env["ds"].root), "--settings", env["settings"]])
    assert res.exit_code == 2 and "not answering" in res.output


def test_an_unreachable_label_studio_is_retried_and_named(prefect_harness, tmp_path, monkeypatch):
    """Nothing listens on the configured port (a real refused connection): the sync task is retried
    as a transient failure, and what the UI shows names the URL instead of a bare ConnectError."""
    import asyncio

    from prefect.client.orchestration import get_client

    from annotation.server import free_port
    from flows.annotation_sync import LabelStudioUnreachable, sync_task

    url = f"http://127.0.0.1:{free_port()}"
    roster = tmp_path / "roster.toml"
    roster.write_text('annotators = ["a@example.org", "b@example.org"]\nadjudicator = "j@example.org"\n')
    for key, value in {"CANTOLAB_LS_URL": url, "CANTOLAB_LS_TOKEN": "t0ken", "CANTOLAB_LS_DOCUMENT_ROOT": str(tmp_path),
                       "CANTOLAB_ROSTER": str(roster), "CANTOLAB_LS_SECRETS": str(tmp_path / "secrets.json")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    state = sync_task.with_options(retry_delay_seconds=0)(str(tmp_path / "ds"), None, None, None, return_state=True)
    assert state.is_failed()
    with pytest.raises(LabelStudioUnreachable) as err:
        state.result()
    assert f"Label Studio at {url} is unreachable" in str(err.value), err.value

    async def attempts() -> int:
        async with get_client() as client:
            return (await client.read_task_run(state.state_details.task_run_id)).run_count

    assert asyncio.run(attempts()) == 3  # the first try and both retries
