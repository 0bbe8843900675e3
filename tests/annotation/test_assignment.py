"""Who labels what: two annotators per clip, a skip sends the clip on, and nobody left → adjudicator."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from annotation.resolve import resolve
from annotation.settings import Roster
from annotation.tasks import assign, pair_for

ROSTER = Roster(("a@x", "b@x", "c@x"), "j@x")


def test_each_clip_goes_to_its_hashed_pair_once():
    plan = assign([f"c{i}" for i in range(30)], ROSTER, {})
    assert not plan.exhausted
    for i in range(30):
        holders = {a for a, cids in plan.todo.items() if f"c{i}" in cids}
        assert holders == set(pair_for(f"c{i}", ROSTER.annotators))
    again = assign([f"c{i}" for i in range(30)], ROSTER, {f"c{i}": holders_of(plan, f"c{i}") for i in range(30)})
    assert all(not v for v in again.todo.values())


def holders_of(plan, cid):
    return {a for a, cids in plan.todo.items() if cid in cids}


def test_a_skip_goes_to_the_third_annotator_then_to_the_adjudicator():
    pair = set(pair_for("c1", ROSTER.annotators))
    third = next(a for a in ROSTER.annotators if a not in pair)
    skipper = sorted(pair)[0]
    plan = assign(["c1"], ROSTER, {"c1": pair}, {"c1": {skipper}})
    assert holders_of(plan, "c1") == {third} and not plan.exhausted
    # The third one skips too: nobody is left, so the clip goes to the adjudicator with the reason.
    plan = assign(["c1"], ROSTER, {"c1": {*pair, third}}, {"c1": {skipper, third}})
    assert not holders_of(plan, "c1")
    assert "skipped by 2 annotator(s)" in plan.exhausted["c1"]


def test_an_exhausted_clip_is_decided_by_the_adjudicator_alone():
    now = datetime.now(UTC)
    ann = pd.DataFrame(
        [("c1", "a@x", "first", "pop", "sad"), ("c1", "j@x", "adjudication", "bel canto", "sad")],
        columns=["clip_id", "annotator", "round", "style", "emotion"],
    )
    res = resolve(ann, now, {"c1": "skipped by 2 annotator(s)"})
    assert res.labels[0]["resolution"] == "adjudicated" and res.labels[0]["style"] == "bel canto"
    assert res.incomplete == [] and res.pending == []
    res = resolve(ann[ann["round"] == "first"], now, {"c1": "skipped"})
    assert res.pending == ["c1"] and res.incomplete == []
