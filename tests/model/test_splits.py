import pytest

from model.data import Example
from model.splits import SplitLeakageError, check_examples, check_no_leakage, singer_folds, singer_split


def _labels(n_pop=8, n_bel=4):
    out = {f"pop{i}": ["pop"] * 3 for i in range(n_pop)}
    out |= {f"bel{i}": ["bel canto"] * 3 for i in range(n_bel)}
    return out


def test_a_singer_in_two_splits_is_refused_by_name():
    with pytest.raises(SplitLeakageError, match=r"'anna' in train and test"):
        check_no_leakage({"train": ["anna", "bo"], "validation": ["cy"], "test": ["anna"]})


def test_example_lists_sharing_a_singer_are_refused():
    a, b = Example("c1", "anna", b"x"), Example("c2", "anna", b"y")
    with pytest.raises(SplitLeakageError, match="anna"):
        check_examples({"train": [a], "test": [b]})


def test_split_is_disjoint_complete_stable_and_stratified():
    labels = _labels()
    s1 = singer_split(labels, seed=3)
    s2 = singer_split(dict(reversed(list(labels.items()))), seed=3)
    assert (s1.train, s1.validation, s1.test) == (s2.train, s2.validation, s2.test)  # row order does not matter
    parts = s1.train + s1.validation + s1.test
    assert sorted(parts) == sorted(labels) and len(set(parts)) == len(parts)
    assert any(s.startswith("pop") for s in s1.test) and any(s.startswith("bel") for s in s1.test)
    assert singer_split(labels, seed=4).test != s1.test or singer_split(labels, seed=5).test != s1.test


def test_fixed_test_singers_are_kept_and_missing_ones_noted():
    s = singer_split(_labels(), test_singers=("pop1", "bel0", "gone"))
    assert s.test == ["bel0", "pop1"]
    assert "pop1" not in s.train + s.validation
    assert any("gone" in n for n in s.notes)


def test_leave_singers_out_folds_test_every_singer_once():
    singers = [f"s{i}" for i in range(7)] * 3
    for k in (None, 3):
        folds = singer_folds(singers, k)
        flat = [s for f in folds for s in f]
        assert sorted(flat) == sorted(set(singers))
    assert len(singer_folds(singers)) == 7


def test_too_few_singers_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 singers"):
        singer_split({"a": ["pop"], "b": ["bel canto"]})


def test_validation_singers_sample_every_style_when_the_data_allows():
    """With 4 bel canto singers among 16, two random validation singers are both pop about half
    the time, and early stopping then optimizes a macro-F1 that cannot see bel canto."""
    from model.crossval import validation_singers

    strata = {f"pop{i}": "pop" for i in range(12)} | {f"bel{i}": "bel canto" for i in range(4)}
    for seed in range(20):
        picked = validation_singers(sorted(strata), strata, 2, seed)
        assert len(set(picked)) == 2
        assert {strata[s] for s in picked} == {"pop", "bel canto"}
    assert validation_singers(sorted(strata), strata, 2, 3) == validation_singers(sorted(strata), strata, 2, 3)
    only_pop = {s: "pop" for s in ("a", "b", "c")}
    assert len(validation_singers(sorted(only_pop), only_pop, 2, 0)) == 2
