"""Agreement statistics against scikit-learn, and the report's files."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from annotation.agreement import bootstrap_kappa, cohen_kappa, confusion, cooccurrence, field_agreement, per_class_agreement
from annotation.report import compute, write_report
from annotation.resolve import Pair, first_round_pairs, resolve
from annotation.settings import LabelSets

LABELS = ("happy", "sad", "mixed")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")  # both say "undefined"
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1, max_size=60))
def test_kappa_equals_scikit_learn(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    ours = cohen_kappa(a, b, LABELS)
    ref = cohen_kappa_score(a, b, labels=list(LABELS))
    if np.isnan(ref):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_known_values():
    # Perfect agreement, chance-level, and a textbook table (Po = .7, Pe = .5 → κ = .4).
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"], ("a", "b")) == 1.0
    a = ["a"] * 35 + ["a"] * 15 + ["b"] * 15 + ["b"] * 35
    b = ["a"] * 35 + ["b"] * 15 + ["a"] * 15 + ["b"] * 35
    assert cohen_kappa(a, b, ("a", "b")) == pytest.approx(0.4)
    m = confusion(a, b, ("a", "b"))
    assert m.tolist() == [[35, 15], [15, 35]]
    assert per_class_agreement(m, ("a", "b")) == {"a": pytest.approx(0.7), "b": pytest.approx(0.7)}


def test_bootstrap_interval_covers_kappa_and_narrows_with_more_clips():
    rng = np.random.default_rng(1)
    truth = rng.choice(LABELS, size=400)
    noisy = np.where(rng.random(400) < 0.75, truth, rng.choice(LABELS, size=400))
    lo, hi = bootstrap_kappa(list(truth), list(noisy), LABELS, seed=0)
    k = cohen_kappa(list(truth), list(noisy), LABELS)
    assert lo < k < hi
    lo_s, hi_s = bootstrap_kappa(list(truth[:40]), list(noisy[:40]), LABELS, seed=0)
    assert (hi - lo) < (hi_s - lo_s)
    assert bootstrap_kappa(list(truth), list(noisy), LABELS, seed=0) == (lo, hi)  # seeded: reproducible


def test_bootstrap_by_confusion_draws_matches_resampling_clips():
    """Drawing the resampled confusion matrix (multinomial) is the clip bootstrap, not an approximation of another one."""
    rng = np.random.default_rng(3)
    truth = rng.choice(LABELS, size=300)
    noisy = np.where(rng.random(300) < 0.7, truth, rng.choice(LABELS, size=300))
    a, b = list(truth), list(noisy)
    draws = np.random.default_rng(9).integers(0, 300, size=(4000, 300))
    by_clip = [cohen_kappa([a[i] for i in d], [b[i] for i in d], LABELS) for d in draws]
    lo, hi = np.percentile(by_clip, [2.5, 97.5])
    lo_m, hi_m = bootstrap_kappa(a, b, LABELS, n_boot=4000, seed=0)
    assert lo_m == pytest.approx(lo, abs=0.015) and hi_m == pytest.approx(hi, abs=0.015)


def _annotations(rows):
    return pd.DataFrame(rows, columns=["clip_id", "annotator", "round", "style", "emotion"])


def test_resolve_agreed_adjudicated_pending_incomplete():
    now = datetime.now(UTC)
    ann = _annotations(
        [
            ("c1", "a@x", "first", "pop", "sad"),
            ("c1", "b@x", "first", "pop", "sad"),
            ("c2", "a@x", "first", "pop", "sad"),
            ("c2", "b@x", "first", "bel canto", "sad"),
            ("c2", "j@x", "adjudication", "bel canto", "mixed"),
            ("c3", "b@x", "first", "pop", "happy"),
            ("c3", "c@x", "first", "pop", "sad"),
            ("c4", "a@x", "first", "pop", "happy"),
        ]
    )
    res = resolve(ann, now)
    by = {lab["clip_id"]: lab for lab in res.labels}
    assert by["c1"]["resolution"] == "agreed" and by["c1"]["annotators"] == ["a@x", "b@x"]
    assert (by["c2"]["style"], by["c2"]["emotion"], by["c2"]["resolution"]) == ("bel canto", "mixed", "adjudicated")
    assert res.pending == ["c3"] and res.incomplete == ["c4"]
    assert [p.clip_id for p in res.to_adjudicate] == ["c2", "c3"]


def test_per_pair_kappa_and_cooccurrence():
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(120):
        raters = [("a@x", "b@x"), ("a@x", "c@x"), ("b@x", "c@x")][i % 3]
        s = str(rng.choice(["pop", "bel canto"]))
        s2 = s if rng.random() < 0.8 else ("pop" if s == "bel canto" else "bel canto")
        pairs.append(Pair(f"c{i}", raters, {"style": s, "emotion": "sad"}, {"style": s2, "emotion": "sad"}))
    fa = field_agreement(pairs, "style", ("pop", "bel canto"), n_boot=500)
    for raters, v in fa.by_pair.items():
        sub = [p for p in pairs if p.raters == raters]
        ref = cohen_kappa_score([p.a["style"] for p in sub], [p.b["style"] for p in sub])
        assert v["kappa"] == pytest.approx(ref, abs=1e-12) and v["n"] == 40
    labels = pd.DataFrame({"style": ["pop", "pop", "bel canto", "pop"], "emotion": ["sad", "happy", "sad", "sad"]})
    co = cooccurrence(labels, ("pop", "bel canto"), ("happy", "sad", "mixed"))
    assert co["counts"].loc["pop", "sad"] == 2
    assert co["p_emotion_given_style"].loc["pop", "sad"] == pytest.approx(2 / 3)
    assert co["p_style_given_emotion"].loc["bel canto", "sad"] == pytest.approx(1 / 3)
    assert np.isnan(co["p_style_given_emotion"].loc["pop", "mixed"])  # no clip is mixed: undefined, not 0


def test_report_writes_markdown_and_heatmaps(tmp_dataset, tmp_path):
    now = datetime.now(UTC)
    rows = []
    rng = np.random.default_rng(0)
    for i in range(30):
        s, e = str(rng.choice(["pop", "bel canto"])), str(rng.choice(LABELS))
        e2 = e if i % 4 else str(rng.choice(LABELS))
        rows += [
            {"clip_id": f"c{i}", "annotator": "a@x", "round": "first", "style": s, "emotion": e, "updated_at": now},
            {"clip_id": f"c{i}", "annotator": "b@x", "round": "first", "style": s, "emotion": e2, "updated_at": now},
        ]
    tmp_dataset.upsert("annotations", rows)
    res = resolve(tmp_dataset.to_pandas("annotations"), now)
    tmp_dataset.upsert("labels", res.labels)
    rep = compute(tmp_dataset, LabelSets(), n_boot=300)
    path = write_report(rep, tmp_path / "report")
    text = path.read_text()
    pairs, _ = first_round_pairs(tmp_dataset.to_pandas("annotations"))
    ref = cohen_kappa_score([p.a["emotion"] for p in pairs], [p.b["emotion"] for p in pairs])
    assert f"{ref:.3f}" in text
    for png in ("confusion_style.png", "confusion_emotion.png", "style_x_emotion.png", "p_emotion_given_style.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png in text
    assert "Low-agreement clips" in text and len(rep.low) == len(res.to_adjudicate)
    for p in rep.low:
        assert p.clip_id in text


def test_heatmap_colour_scale_starts_at_zero():
    from annotation.report import color_limits

    assert color_limits(np.array([[1.0, 3.0], [2.0, 1.0]])) == {"vmin": 0.0, "vmax": 3.0}  # a 1-cell is not the floor
    assert color_limits(np.array([[np.nan, np.nan]]))["vmin"] == 0.0
