"""Singer-wise splits: no singer's clips ever sit on both sides of an evaluation.

Assignment is stable (a hash of the singer and the split seed, not the order rows arrive in) and
stratified by each singer's majority label of the first task where labels allow, so a small test set
still holds both styles.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from pipeline.errors import InputError


class SplitLeakageError(InputError):
    """A singer appears in two splits; singer-wise results would be inflated."""


@dataclass
class SingerSplit:
    train: list[str]
    validation: list[str]
    test: list[str]
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def check(self) -> SingerSplit:
        check_no_leakage({"train": self.train, "validation": self.validation, "test": self.test})
        return self

    def part_of(self, singer: str) -> str | None:
        for name in ("train", "validation", "test"):
            if singer in getattr(self, name):
                return name
        return None

    def to_dict(self) -> dict:
        return {"train": self.train, "validation": self.validation, "test": self.test, "seed": self.seed}


def check_no_leakage(parts: dict[str, list[str]]) -> None:
    """Refuse any singer listed in more than one part, naming the singer and the parts."""
    seen: dict[str, str] = {}
    clashes = []
    for part, singers in parts.items():
        for s in singers:
            if s in seen and seen[s] != part:
                clashes.append(f"{s!r} in {seen[s]} and {part}")
            seen.setdefault(s, part)
    if clashes:
        raise SplitLeakageError("singer-wise split violated — the same singer would be trained on and evaluated: " + "; ".join(clashes))


def check_examples(parts: dict[str, list]) -> None:
    """The same check over example lists (anything with a .singer)."""
    check_no_leakage({name: sorted({e.singer for e in exs}) for name, exs in parts.items()})


def _rank(singer: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{singer}".encode()).hexdigest()


def _strata(singer_labels: dict[str, list[str | None]]) -> dict[str, str]:
    out = {}
    for singer, labels in singer_labels.items():
        known = [lab for lab in labels if lab is not None]
        out[singer] = Counter(known).most_common(1)[0][0] if known else "(none)"
    return out


def singer_split(
    singer_labels: dict[str, list[str | None]],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    test_singers: tuple[str, ...] = (),
) -> SingerSplit:
    """Train/validation/test singers; `singer_labels` maps singer → its clips' labels (for strata).

    With `test_singers` the test part is fixed (the retrain flow compares on the champion's singers)
    and the rest is split into train and validation.
    """
    singers = sorted(singer_labels)
    if len(singers) < 3 and not test_singers:
        raise InputError(f"a singer-wise train/validation/test split needs at least 3 singers; the dataset has {len(singers)}: {singers}")
    notes = []
    fixed_test = [s for s in test_singers if s in singer_labels]
    if test_singers and len(fixed_test) < len(test_singers):
        gone = sorted(set(test_singers) - set(fixed_test))
        notes.append(f"test singers no longer in the dataset: {gone}")
    strata = _strata(singer_labels)
    train, val, test = [], [], list(fixed_test)
    remaining = [s for s in singers if s not in fixed_test]
    f_train, f_val, f_test = fractions
    if fixed_test:
        f_test, f_val = 0.0, f_val / max(f_train + f_val, 1e-9)
    # Interleave the strata (each in its stable hash order) so that every part samples all of them.
    queues = [
        sorted((s for s in remaining if strata[s] == st), key=lambda s: _rank(s, seed)) for st in sorted({strata[s] for s in remaining})
    ]
    queues.sort(key=len)
    ordered = []
    while any(queues):
        for q in queues:
            if q:
                ordered.append(q.pop(0))
    n = len(ordered)
    n_test = 0 if fixed_test else max(1, round(n * f_test))
    n_val = max(1, round(n * f_val)) if n - n_test >= 2 else 0
    n_test = min(n_test, max(0, n - n_val - 1))
    test += ordered[:n_test]
    val += ordered[n_test : n_test + n_val]
    train += ordered[n_test + n_val :]
    if not train:
        raise InputError("singer-wise split left no training singer")
    split = SingerSplit(sorted(train), sorted(val), sorted(test), seed, notes)
    return split.check()


def singer_folds(singers: list[str], k: int | None = None, seed: int = 0) -> list[list[str]]:
    """Leave-singers-out folds (k=None: leave one singer out); each singer is tested exactly once."""
    ordered = sorted(set(singers), key=lambda s: _rank(s, seed))
    k = len(ordered) if k is None else min(k, len(ordered))
    folds = [sorted(ordered[i::k]) for i in range(k)]
    check_no_leakage({f"fold{i}": f for i, f in enumerate(folds)})
    return folds
