"""Double labeling end to end on a real Label Studio: two annotators per clip, each in their own
project (in their own organization) with their own token; bad annotations reported; adjudication;
labels; idempotent re-sync."""

from __future__ import annotations

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError
from sklearn.metrics import cohen_kappa_score

from annotation.agreement import cohen_kappa
from annotation.client import service_email, user_ids
from annotation.export import records_from_export
from annotation.labeling import choice_result
from annotation.resolve import first_round_pairs
from annotation.sync import STATE_DIR, export_tasks, run_sync
from tests.annotation.ls_fixtures import make_workflow

STYLE = {"pop": "pop", "bel canto": "bel canto"}


def _sync(wf):
    return run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)


def _tasks_by_clip(wf) -> dict[str, dict[str, dict]]:
    """clip_id → {annotator: task} over the first-round projects."""
    out: dict[str, dict[str, dict]] = {}
    for a, pid in wf.projects.first.items():
        for t in export_tasks(wf.org(pid), pid):
            out.setdefault(t["data"]["clip_id"], {})[a] = t
    return out


def _other(labels: tuple[str, ...], value: str) -> str:
    return next(v for v in labels if v != value)


@pytest.fixture(scope="module")
def labeled(ls_server, gtsinger, tmp_path_factory):
    """First sync, then every assigned annotator labels through the API with their own token."""
    wf = make_workflow(ls_server, tmp_path_factory.mktemp("main"), "Main", gtsinger, 6)
    first = _sync(wf)
    by_clip = _tasks_by_clip(wf)
    styles, emotions = wf.settings.labels.styles, wf.settings.labels.emotions
    expected: dict[str, dict] = {}
    problems_made = {}
    for i, spec in enumerate(wf.clips):
        (a1, t1), (a2, t2) = sorted(by_clip[spec.clip_id].items())
        style, emotion = STYLE[spec.corpus_style], spec.corpus_emotion
        s2, e2 = style, emotion
        if i == 3:
            s2 = _other(styles, style)
        if i == 4:
            e2 = _other(emotions, emotion)
        if i == 5:  # both labels bad: a field missing, and two choices where one is allowed
            wf.client_for(a1).annotations.create(id=t1["id"], result=[choice_result("style", style)])
            two = choice_result("style", style)
            two["value"]["choices"] = list(styles[:2])
            wf.client_for(a2).annotations.create(id=t2["id"], result=[two, choice_result("emotion", emotion)])
            problems_made["missing"] = t1["id"]
            problems_made["two"] = t2["id"]
            continue
        wf.client_for(a1).annotations.create(id=t1["id"], result=[choice_result("style", style), choice_result("emotion", emotion)])
        wf.client_for(a2).annotations.create(id=t2["id"], result=[choice_result("style", s2), choice_result("emotion", e2)])
        expected[spec.clip_id] = {a1: (style, emotion), a2: (s2, e2)}
    # Someone else cannot even reach a colleague's task (the adjudicator, in clip 0's first project)…
    (owner, t0), _ = sorted(by_clip[wf.clips[0].clip_id].items())
    pid = wf.projects.first[owner]
    with pytest.raises(ApiError) as err:
        wf.client_for(wf.roster.adjudicator).annotations.create(
            id=t0["id"], result=[choice_result("style", styles[0]), choice_result("emotion", emotions[0])]
        )
    assert err.value.status_code in (403, 404)
    # …so the one stray label left to catch is one made with the organization's service account…
    wf.org(pid).annotations.create(id=t0["id"], result=[choice_result("style", styles[0]), choice_result("emotion", emotions[0])])
    # …and a task whose clip is not in the dataset gets labeled.
    wf.org(pid).projects.import_tasks(
        pid,
        request=[{"data": {"clip_id": "clip-not-in-dataset", "audio": "/data/local-files/?d=x.flac", "transcript": "?", "asr_note": "?"}}],
    )
    stray = next(t for t in export_tasks(wf.org(pid), pid) if t["data"]["clip_id"] == "clip-not-in-dataset")
    wf.client_for(owner).annotations.create(
        id=stray["id"], result=[choice_result("style", styles[0]), choice_result("emotion", emotions[0])]
    )
    second = _sync(wf)
    return wf, first, second, expected, problems_made


def test_every_clip_goes_to_exactly_two_different_annotators(labeled):
    wf, first, *_ = labeled
    assert first.clips == 6 and sum(first.tasks_created.values()) == 12
    by_clip = _tasks_by_clip(wf)
    real = {c.clip_id for c in wf.clips}
    for cid in real:
        assert len(by_clip[cid]) == 2, f"{cid} is in {sorted(by_clip[cid])}"
    assert set(by_clip) == real | {"clip-not-in-dataset"}


def test_annotators_never_see_each_others_labels(labeled):
    """Each first-round project holds its owner's labels only; the adjudicator sees both, unnamed."""
    wf, *_ = labeled
    for a, pid in wf.projects.first.items():
        ids = {u.id: u.email for u in wf.org(pid).users.list()}
        assert set(ids.values()) == {a, service_email(a)}  # nobody else is even in the organization
        for t in export_tasks(wf.org(pid), pid):
            authors = {ids[x["completed_by"]] for x in t["annotations"]}
            assert authors <= {a, service_email(a)}, (a, authors)  # the service account's is the planted stray
    adj = export_tasks(wf.org(wf.projects.adjudication), wf.projects.adjudication)
    assert len(adj) == 2
    for t in adj:
        text = t["data"]["first_labels"]
        assert "Label 1:" in text and "Label 2:" in text
        assert "@" not in text and not any(a.split("@")[0] in text for a in wf.roster.annotators)  # no names
        assert t["data"]["audio"].startswith("/data/local-files/?d=") and t["data"]["transcript"]


def test_sync_writes_annotations_and_agreed_labels(labeled):
    wf, _, second, expected, _ = labeled
    ann = wf.dataset.to_pandas("annotations")
    first = ann[ann["round"] == "first"]
    assert len(first) == 10
    for cid, by in expected.items():
        for a, (s, e) in by.items():
            row = first[(first.clip_id == cid) & (first.annotator == a)].iloc[0]
            assert (row["style"], row["emotion"]) == (s, e)
            assert row["ls_project_id"] == wf.projects.first[a]
    labels = wf.dataset.to_pandas("labels").set_index("clip_id")
    agreed = [c.clip_id for c in wf.clips[:3]]
    assert sorted(labels.index) == sorted(agreed)
    for c in wf.clips[:3]:
        assert labels.loc[c.clip_id, "resolution"] == "agreed"
        assert (labels.loc[c.clip_id, "style"], labels.loc[c.clip_id, "emotion"]) == (STYLE[c.corpus_style], c.corpus_emotion)
        assert len(labels.loc[c.clip_id, "annotators"]) == 2
    assert second.adjudication_created == 2 and second.pending_adjudication == 2 and second.incomplete == 0


def test_bad_annotations_are_reported_and_left_out(labeled):
    wf, _, second, _, made = labeled
    reasons = {p.reason for p in second.problems}
    assert "field missing: emotion" in reasons
    assert any(r.startswith("style: 2 choices") for r in reasons)
    assert "annotator not on the roster for this project" in reasons
    assert "task for an unknown clip" in reasons
    rejects = wf.dataset.to_pandas("rejects")
    assert set(rejects[rejects.stage == "annotation"]["reason"]) == reasons
    ann = wf.dataset.to_pandas("annotations")
    assert wf.clips[5].clip_id not in set(ann.clip_id)
    assert "clip-not-in-dataset" not in set(ann.clip_id)
    assert wf.roster.adjudicator not in set(ann[ann["round"] == "first"].annotator)


def test_adjudication_decides_disagreements_and_resync_changes_nothing(labeled):
    wf, *_ = labeled
    adj_client = wf.client_for(wf.roster.adjudicator)
    decisions = {}
    for t in export_tasks(wf.org(wf.projects.adjudication), wf.projects.adjudication):
        decisions[t["data"]["clip_id"]] = ("bel canto", "mixed")
        adj_client.annotations.create(id=t["id"], result=[choice_result("style", "bel canto"), choice_result("emotion", "mixed")])
    rep = _sync(wf)
    assert rep.adjudicated == 2 and rep.pending_adjudication == 0 and rep.labels["inserted"] == 2
    labels = wf.dataset.to_pandas("labels").set_index("clip_id")
    for cid, (s, e) in decisions.items():
        assert labels.loc[cid, "resolution"] == "adjudicated"
        assert (labels.loc[cid, "style"], labels.loc[cid, "emotion"]) == (s, e)
        assert wf.roster.adjudicator in list(labels.loc[cid, "annotators"])
    n_tasks = {pid: len(export_tasks(wf.org(pid), pid)) for pid in [*wf.projects.first.values(), wf.projects.adjudication]}
    n_rows = {t: wf.dataset.count(t) for t in ("annotations", "labels", "rejects")}
    tracebacks = wf.server.log_file.read_text(errors="replace").count("Invalid page.")
    again = _sync(wf)
    assert again.nothing_new and not again.changed  # server and dataset as the last sync left them: nothing read
    assert again.per_annotator == rep.per_annotator and again.pending_adjudication == 0
    assert any("nothing new" in n for n in again.notes)
    for state in (wf.document_root / STATE_DIR).glob("*.json"):
        state.unlink()  # without the record of the last sync, everything is read again: still nothing changes
    full = _sync(wf)
    assert wf.server.log_file.read_text(errors="replace").count("Invalid page.") == tracebacks  # no pager overrun
    assert not full.nothing_new and not full.changed
    assert full.annotations["unchanged"] == 12 and full.labels["unchanged"] == 5
    assert {pid: len(export_tasks(wf.org(pid), pid)) for pid in n_tasks} == n_tasks
    assert {t: wf.dataset.count(t) for t in n_rows} == n_rows


def test_an_edited_label_is_not_missed_by_a_sync_with_nothing_new(labeled):
    """The skip must not hide a change: an annotator changing a label they already submitted (no
    new task, no new annotation) is read by the next sync."""
    wf, *_ = labeled
    _sync(wf)  # whatever ran before, this sync's view of the server is now recorded
    ann = wf.dataset.to_pandas("annotations")
    row = ann[(ann["round"] == "first") & (ann["style"] == wf.settings.labels.styles[0])].iloc[0]
    new_style = _other(wf.settings.labels.styles, row["style"])
    wf.client_for(row["annotator"]).annotations.update(
        id=int(row["ls_annotation_id"]), result=[choice_result("style", new_style), choice_result("emotion", row["emotion"])]
    )
    rep = _sync(wf)
    assert not rep.nothing_new and rep.annotations["updated"] == 1
    after = wf.dataset.to_pandas("annotations").set_index(["clip_id", "annotator", "round"])
    assert after.loc[(row["clip_id"], row["annotator"], "first"), "style"] == new_style
    assert _sync(wf).nothing_new


def test_bulk_read_from_the_database_equals_the_export_api(labeled):
    """LocalServer.read_tasks (two SELECTs in the server's SQLite database) gives the sync exactly what the
    export API gives: the same records, problems and skips for every project."""
    wf, *_ = labeled
    pids = [*wf.projects.first.values(), wf.projects.adjudication]
    bulk = wf.server.read_tasks(pids)
    known = set(wf.dataset.read("clips", columns=["clip_id"]).column("clip_id").to_pylist())
    compared = 0
    for pid in pids:
        api = export_tasks(wf.org(pid), pid)
        assert sorted(t["id"] for t in bulk[pid]) == sorted(t["id"] for t in api)
        who = wf.projects.owner_of(pid) or wf.roster.adjudicator
        args = dict(
            project_id=pid, round="first", expected_annotator=who, known_clips=known, users=user_ids(wf.org(pid)), labels=wf.settings.labels
        )
        mine, theirs = records_from_export(bulk[pid], **args), records_from_export(api, **args)
        assert sorted(map(repr, mine[0])) == sorted(map(repr, theirs[0]))
        compared += len(mine[0])
        assert sorted(map(repr, mine[1])) == sorted(map(repr, theirs[1])) and sorted(mine[2]) == sorted(theirs[2])
    assert compared >= 10  # the fixture's labels, not empty projects


def test_kappa_on_synced_pairs_equals_scikit_learn(labeled):
    wf, *_ = labeled
    pairs, _ = first_round_pairs(wf.dataset.to_pandas("annotations"))
    assert len(pairs) == 5
    for field, labels in wf.settings.labels.field_values().items():
        a, b = [p.a[field] for p in pairs], [p.b[field] for p in pairs]
        assert cohen_kappa(a, b, labels) == pytest.approx(cohen_kappa_score(a, b, labels=list(labels)), abs=1e-12)


def test_no_token_or_password_in_the_server_log(labeled):
    wf, *_ = labeled
    log = wf.server.log_file.read_text(errors="replace")
    token, password = wf.server.credentials()
    secrets = [token, password] + [v for u in wf.users.values() for v in u.values()]
    assert all(s not in log for s in secrets)


def test_task_locks_are_counted_per_person(labeled):
    """`annotate status`'s locked column: a task its owner opened (Label Studio's /next locks it) and
    has not labeled, read from the local server's database (the API does not report locks)."""
    wf, *_ = labeled
    owner, pid = sorted(wf.projects.first.items())[0]
    probe = {"clip_id": "clip-lock-probe", "audio": "/data/local-files/?d=x.flac", "transcript": "?", "asr_note": "?"}
    wf.org(pid).projects.import_tasks(pid, request=[{"data": probe}])
    try:
        assert wf.server.task_locks([pid]) == {pid: {}}
        r = requests.get(
            f"{wf.settings.url}/api/projects/{pid}/next", headers={"Authorization": f"Token {wf.users[owner]['token']}"}, timeout=30
        )
        assert r.status_code == 200 and r.json()["data"]["clip_id"] == "clip-lock-probe"
        assert wf.server.task_locks([pid]) == {pid: {owner: 1}}
    finally:
        task = next(t for t in export_tasks(wf.org(pid), pid) if t["data"]["clip_id"] == "clip-lock-probe")
        wf.org(pid).tasks.delete(id=task["id"])
