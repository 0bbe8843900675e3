"""Kill the real Label Studio in the middle of a sync (SIGKILL to its process group), restart it on
the same data dir, sync again: no duplicate task, no lost annotation, the same labels."""

from __future__ import annotations

import os
import signal

import pytest

from annotation.labeling import choice_result
from annotation.sync import SyncInterrupted, export_tasks, run_sync
from tests.annotation.ls_fixtures import make_workflow, real_server


def _kill(server) -> None:
    pid = server.pid()
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _killer(server, when):
    def on_stage(stage: str) -> None:
        if when(stage):
            _kill(server)

    return on_stage


def _sync(wf, on_stage=None):
    return run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root, on_stage=on_stage)


def _task_counts(wf) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pid in wf.projects.first.values():
        for t in export_tasks(wf.org(pid), pid):
            counts[t["data"]["clip_id"]] = counts.get(t["data"]["clip_id"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def kill_wf(ls_server, gtsinger, tmp_path_factory):
    return make_workflow(ls_server, tmp_path_factory.mktemp("kill"), "Kill", gtsinger, 5, offset=10)


def test_server_killed_mid_sync_loses_nothing(kill_wf):
    wf = kill_wf
    imports = []

    def second_import(stage: str) -> bool:
        if stage.startswith("import:"):
            imports.append(stage)
        return len(imports) == 2

    with pytest.raises(SyncInterrupted) as err:
        _sync(wf, _killer(wf.server, second_import))
    assert err.value.stage.startswith("import:")
    assert sum(err.value.report.tasks_created.values()) > 0  # the first project's import had happened
    real_server()  # restart on the same data dir
    rep = _sync(wf)
    assert _task_counts(wf) == {c.clip_id: 2 for c in wf.clips}, "every clip in exactly two projects, no duplicate"

    # Everybody labels; the annotators disagree on the first clip's emotion.
    by_clip: dict[str, list] = {}
    for a, pid in wf.projects.first.items():
        for t in export_tasks(wf.org(pid), pid):
            by_clip.setdefault(t["data"]["clip_id"], []).append((a, t))
    for i, c in enumerate(wf.clips):
        for j, (a, t) in enumerate(sorted(by_clip[c.clip_id], key=lambda x: x[0])):
            emotion = "mixed" if (i == 0 and j == 1) else "sad"
            wf.client_for(a).annotations.create(id=t["id"], result=[choice_result("style", "pop"), choice_result("emotion", emotion)])

    with pytest.raises(SyncInterrupted) as err:
        _sync(wf, _killer(wf.server, lambda s: s == "adjudication-push"))
    assert err.value.report.annotations["inserted"] == 10  # pulled and saved before the server went away
    assert wf.dataset.count("labels") == 0
    real_server()
    rep = _sync(wf)
    assert rep.annotations == {"inserted": 0, "updated": 0, "unchanged": 10}
    assert rep.adjudication_created == 1 and rep.agreed == 4 and rep.pending_adjudication == 1
    assert len(export_tasks(wf.org(wf.projects.adjudication), wf.projects.adjudication)) == 1
    again = _sync(wf)
    assert not again.changed
    assert _task_counts(wf) == {c.clip_id: 2 for c in wf.clips}
