"""A real team on a real Label Studio, in real Chromium: three annotators and an adjudicator, each in
their own organization (README, "one organization per person").

Annotator B tries everything a curious colleague would: A's project and task URLs in the browser,
A's ids through the API with B's own token, B's own active organization switched to A's. None of it
shows A's tasks, labels or name, and none of it locks A's task, so A's queue (labelled by keyboard
only) completes. A skipped clip reaches a third annotator; the adjudicator sees both labels without
names, in an order drawn per clip; a renamed project keeps syncing, a deleted one is reported and
not recreated. Screenshots go to test-artifacts/annotation/."""

from __future__ import annotations

import json

import pytest
import requests
from sklearn.metrics import cohen_kappa_score

from annotation.agreement import cohen_kappa
from annotation.client import ProjectMissing, check_projects, setup_projects
from annotation.labeling import choice_result
from annotation.resolve import Pair, first_round_pairs
from annotation.sync import export_tasks, queue_progress, run_sync
from tests.annotation.browser import ARTIFACTS
from tests.annotation.ls_fixtures import make_workflow


@pytest.fixture(scope="module")
def team(ls_server, gtsinger, tmp_path_factory):
    wf = make_workflow(ls_server, tmp_path_factory.mktemp("iso"), "Iso", gtsinger, 4, offset=40, n_annotators=3)
    # One clip is flagged as a suspected hallucination: its page must say so.
    rows = wf.dataset.read("clips").to_pylist()
    rows[0]["suspected_hallucination"] = True
    wf.dataset.upsert("clips", rows[:1])
    run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)
    a, b, c = wf.roster.annotators
    tasks = {x: export_tasks(wf.org(wf.projects.first[x]), wf.projects.first[x]) for x in (a, b, c)}
    # A and B must share a clip so that B has a reason to look at A's labels.
    assert all(tasks.values()), {k: len(v) for k, v in tasks.items()}
    return wf, tasks


def _sync(wf):
    return run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)


def _login(browser, wf, email):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(f"{wf.settings.url}/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", wf.users[email]["password"])
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)
    return ctx, page


def _shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _api(wf, email, path):
    return requests.get(f"{wf.settings.url}{path}", headers={"Authorization": f"Token {wf.users[email]['token']}"}, timeout=30)


@pytest.mark.timeout(400)
def test_b_can_neither_open_nor_see_a_s_project_tasks_labels_or_name(team, browser):
    wf, tasks = team
    a, b, _ = wf.roster.annotators
    pa, pb = wf.projects.first[a], wf.projects.first[b]
    ta = tasks[a][0]
    # A labels one task first, so there is something to leak.
    wf.client_for(a).annotations.create(id=ta["id"], result=[choice_result("style", "pop"), choice_result("emotion", "sad")])

    ctx, page = _login(browser, wf, b)
    seen: list[str] = []
    about_a: dict[str, int] = {}  # what the server answered B's browser for A's project and task

    def keep(r) -> None:  # every JSON answer B's browser gets, to search it for A's name afterwards
        if f"/api/projects/{pa}" in r.url or f"/api/tasks/{ta['id']}" in r.url or f"project={pa}" in r.url:
            about_a[r.url] = r.status
        if "/api/" in r.url and "json" in (r.headers.get("content-type") or ""):
            try:
                seen.append(r.text())
            except Exception:  # noqa: BLE001 — navigated away before the body was read
                pass

    page.on("response", keep)
    for i, url in enumerate((f"/projects/{pa}/data?task={ta['id']}", f"/projects/{pa}/settings")):
        page.goto(f"{wf.settings.url}{url}")  # the single-page app's shell itself answers 200 to any path
        page.wait_for_timeout(4000)
        _shot(page, f"isolation-b-opens-a-{i}.png")
        body = page.inner_text("body")
        assert ta["data"]["transcript"][:12] not in body and a not in body
        assert page.locator("label", has_text=wf.settings.labels.styles[0]).count() == 0  # no labeling controls
        if i == 0:
            assert "No Project matches the given query" in body  # what Label Studio shows for a 404 project
    assert about_a and all(status in (403, 404) for status in about_a.values()), about_a
    page.goto(f"{wf.settings.url}/projects/")
    page.get_by_text("labels ·").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _shot(page, "isolation-b-projects-list.png")
    body = page.inner_text("body")
    assert "adjudication" not in body and a not in body and wf.roster.adjudicator not in body
    page.goto(f"{wf.settings.url}/projects/{pb}/data")
    page.wait_for_timeout(4000)
    _shot(page, "isolation-b-data-manager.png")
    assert a not in page.inner_text("body")
    ctx.close()

    # The API with B's own token: A's project, task and annotation are 404, lists hold only B's.
    assert _api(wf, b, f"/api/projects/{pa}/").status_code == 404
    assert _api(wf, b, f"/api/tasks/{ta['id']}/").status_code == 404
    ann_id = export_tasks(wf.org(pa), pa)[0]["annotations"][0]["id"]
    assert _api(wf, b, f"/api/annotations/{ann_id}/").status_code in (403, 404)  # 403: the launcher's organization check
    assert _api(wf, b, f"/api/projects/{pa}/export?exportType=JSON").status_code in (403, 404)
    assert [p["id"] for p in _api(wf, b, "/api/projects/").json()["results"]] == [pb]
    assert _api(wf, b, f"/api/tasks/?project={pa}").status_code in (403, 404)
    everything = json.dumps([_api(wf, b, p).json() for p in ("/api/projects/", "/api/users/", f"/api/tasks/?project={pb}")]) + "".join(seen)
    assert a not in everything and wf.roster.adjudicator not in everything and wf.roster.annotators[2] not in everything

    # B switches their own active organization to A's (open-source Label Studio accepts the PATCH):
    # the launcher's guard puts it back, so B still sees only B's project.
    me = _api(wf, b, "/api/current-user/whoami").json()
    placement = json.loads(wf.server.placement_file.read_text())
    r = requests.patch(
        f"{wf.settings.url}/api/users/{me['id']}/",
        headers={"Authorization": f"Token {wf.users[b]['token']}"},
        json={"active_organization": placement[a]},
        timeout=30,
    )
    assert r.status_code in (200, 400, 403)
    assert [p["id"] for p in _api(wf, b, "/api/projects/").json()["results"]] == [pb]
    assert _api(wf, b, f"/api/tasks/{ta['id']}/").status_code == 404


def _label_stream_by_keyboard(page, wf, pid, style_key="1", emotion_key="w", skip_first=False) -> int:
    """Label All Tasks with the keyboard only: hotkeys for the choices, Ctrl+Enter to submit."""
    page.goto(f"{wf.settings.url}/projects/{pid}/data?labeling=1")
    n = 0
    for _ in range(20):
        done = page.get_by_text("No More Tasks Left in Queue")
        choice = page.locator("label", has_text=wf.settings.labels.styles[0]).first
        page.wait_for_function(
            "() => document.body.innerText.includes('No More Tasks') || document.querySelectorAll('label').length > 3",
            timeout=120_000,
        )
        if done.count():
            break
        choice.wait_for(timeout=60_000)
        page.wait_for_timeout(800)
        if skip_first and n == 0:
            _shot(page, "isolation-skip.png")
            page.keyboard.press("Control+Space")  # Label Studio's skip hotkey (README lists it)
        else:
            page.keyboard.press(style_key)
            page.keyboard.press(emotion_key)
            page.keyboard.press("Control+Enter")
        n += 1
        page.wait_for_timeout(1500)
    return n


@pytest.mark.timeout(600)
def test_a_s_queue_completes_by_keyboard_and_a_skip_reaches_a_third_annotator(team, browser):
    wf, tasks = team
    a, b, c = wf.roster.annotators
    pa, pb = wf.projects.first[a], wf.projects.first[b]
    ctx, page = _login(browser, wf, a)
    page.goto(f"{wf.settings.url}/projects/{pa}/data?task={tasks[a][0]['id']}")
    page.locator("label", has_text=wf.settings.labels.styles[0]).first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)
    _shot(page, "isolation-a-labeling-page.png")
    body = page.inner_text("body")
    assert "Transcript" in body and "Whisper" in body
    flagged = wf.dataset.read("clips", columns=["clip_id", "suspected_hallucination"]).to_pylist()
    flagged_ids = {r["clip_id"] for r in flagged if r["suspected_hallucination"]}
    labelled = _label_stream_by_keyboard(page, wf, pa)
    _shot(page, "isolation-a-queue-done.png")
    assert "No More Tasks" in page.inner_text("body")
    ctx.close()
    progress = queue_progress(wf.service, wf.settings, wf.roster, wf.projects)[a]
    assert progress["waiting"] == 0 and progress["done"] == len(tasks[a]), (progress, labelled)

    # B skips their first clip in the browser; the sync sends it to someone who has not had it.
    ctx, page = _login(browser, wf, b)
    _label_stream_by_keyboard(page, wf, pb, style_key="2", emotion_key="q", skip_first=True)
    ctx.close()
    rep = _sync(wf)
    assert rep.per_annotator[b]["skipped"] == 1 and rep.per_annotator[b]["waiting"] == 0
    assert rep.reassigned == 1
    skipped_clip = next(t["data"]["clip_id"] for t in export_tasks(wf.org(pb), pb) if any(x["was_cancelled"] for x in t["annotations"]))
    holders = {
        x
        for x in (a, b, c)
        if any(t["data"]["clip_id"] == skipped_clip for t in export_tasks(wf.org(wf.projects.first[x]), wf.projects.first[x]))
    }
    assert len(holders) == 3, holders  # the third annotator has it now
    if flagged_ids & {t["data"]["clip_id"] for t in tasks[a]}:
        assert any("hallucination" in t["data"]["asr_note"] for t in export_tasks(wf.org(pa), pa))


@pytest.mark.timeout(600)
def test_adjudicator_sees_both_labels_without_names(team, browser):
    wf, _ = team
    # Everyone still waiting labels through the API (C differs from everyone on emotion).
    for x in wf.roster.annotators:
        pid = wf.projects.first[x]
        for t in export_tasks(wf.org(pid), pid):
            if not t["annotations"]:
                emotion = "mixed" if x == wf.roster.annotators[2] else "happy"
                wf.client_for(x).annotations.create(
                    id=t["id"], result=[choice_result("style", "bel canto"), choice_result("emotion", emotion)]
                )
    rep = _sync(wf)
    assert rep.adjudication_created + rep.adjudication_updated >= 1, rep.as_dict()
    padj = wf.projects.adjudication
    adj = export_tasks(wf.org(padj), padj)
    ctx, page = _login(browser, wf, wf.roster.adjudicator)
    page.goto(f"{wf.settings.url}/projects/{padj}/data?task={adj[0]['id']}")
    page.get_by_text("Label 2:").first.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)
    _shot(page, "isolation-adjudicator.png")
    body = page.inner_text("body")
    ctx.close()
    assert "Label 1:" in body and "Label 2:" in body
    assert not any(x in body or x.split("@")[0] in body for x in wf.roster.annotators)
    # The order is drawn per clip: over many clips, "Label 1" is annotator A's about half the time.
    firsts = [
        Pair(f"clip-{i}", ("a@x", "b@x"), {"style": "pop", "emotion": "sad"}, {"style": "bel canto", "emotion": "sad"})
        .first_labels_text()
        .startswith("Label 1: style pop")
        for i in range(400)
    ]
    assert 150 < sum(firsts) < 250
    # Kappa on the synced pairs still equals scikit-learn's.
    pairs, _ = first_round_pairs(wf.dataset.to_pandas("annotations"))
    for field, labels in wf.settings.labels.field_values().items():
        xa, xb = [p.a[field] for p in pairs], [p.b[field] for p in pairs]
        ours, ref = cohen_kappa(xa, xb, labels), cohen_kappa_score(xa, xb, labels=list(labels))
        assert ours == pytest.approx(ref, abs=1e-12) or (ours != ours and ref != ref)


def test_renamed_project_keeps_syncing_and_a_deleted_one_is_reported_not_recreated(team):
    wf, _ = team
    a = wf.roster.annotators[0]
    pa = wf.projects.first[a]
    wf.client_for(a).projects.update(id=pa, title="my own name for it")  # annotators can rename their project
    checked = check_projects(wf.settings, wf.roster, wf.projects)
    assert any("renamed" in n for n in checked.notes)
    rep = run_sync(wf.dataset, wf.service, wf.settings, wf.roster, checked, wf.document_root)
    assert rep.interrupted is None and not sum(rep.tasks_created.values())
    assert any("renamed" in n for n in rep.notes)

    wf.org(pa).projects.delete(id=pa)
    with pytest.raises(ProjectMissing, match="--replace-missing"):
        check_projects(wf.settings, wf.roster, wf.projects)
    with pytest.raises(ProjectMissing):
        setup_projects(wf.server, wf.settings, wf.roster, wf.document_root / wf.settings.media_subdir, wf.projects)
    token = wf.projects.tokens[pa]  # A's organization: nothing was recreated in it
    r = requests.get(f"{wf.settings.url}/api/projects/", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert r.json()["results"] == []
    # Asked for explicitly, A gets a new project; A's labels are in the dataset, so nothing is re-sent.
    replaced = setup_projects(
        wf.server, wf.settings, wf.roster, wf.document_root / wf.settings.media_subdir, wf.projects, replace_missing=True
    )
    assert replaced.first[a] != pa and {x: replaced.first[x] for x in wf.roster.annotators[1:]} == {
        x: wf.projects.first[x] for x in wf.roster.annotators[1:]
    }
    rep = run_sync(wf.dataset, wf.service, wf.settings, wf.roster, replaced, wf.document_root)
    assert rep.tasks_created.get(a, 0) == 0, rep.tasks_created
