"""Controls that expose shortcuts: language alone predicting style (GTSinger's confound).

In GTSinger every German and Italian singer is bel canto and every other language pop, so a
classifier over the clip's language alone is perfect when singers are shared between train and test
and looks perfect singer-wise too — yet it knows nothing about voice, and fails on any singer whose
language came with the other style (or a language it never saw). Reporting it beside the model shows
how much of a score a shortcut could explain.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from model.data import Example


def _onehot(langs: list[str], vocab: list[str]) -> np.ndarray:
    x = np.zeros((len(langs), len(vocab) + 1))
    for i, lang in enumerate(langs):
        x[i, vocab.index(lang) if lang in vocab else len(vocab)] = 1.0  # last column: unseen language
    return x


def _fit_predict(train: list[Example], test: list[Example], task: str) -> tuple[np.ndarray, np.ndarray] | None:
    tr = [e for e in train if e.labels.get(task) and e.language]
    te = [e for e in test if e.labels.get(task) and e.language]
    if not tr or not te or len({e.labels[task] for e in tr}) < 2:
        return None
    vocab = sorted({e.language for e in tr})
    clf = LogisticRegression(max_iter=1000).fit(_onehot([e.language for e in tr], vocab), [e.labels[task] for e in tr])
    return np.asarray([e.labels[task] for e in te]), clf.predict(_onehot([e.language for e in te], vocab))


def language_only(train: list[Example], test: list[Example], task: str = "style") -> dict | None:
    """Language-only accuracy on the given (singer-wise) split, and clip-wise within shared singers."""
    out = _fit_predict(train, test, task)
    if out is None:
        return None
    y, p = out
    result = {"task": task, "singer_wise_accuracy": float((y == p).mean()), "n": int(len(y))}
    result["clip_wise_accuracy"] = clip_wise(train + test, task)
    langs_test = sorted({e.language for e in test if e.language})
    langs_train = {e.language for e in train if e.language}
    result["unseen_test_languages"] = [lang for lang in langs_test if lang not in langs_train]
    return result


def clip_wise(examples: list[Example], task: str = "style") -> float | None:
    """Language-only accuracy over 5 stratified clip-wise folds: singers on both sides (the leak)."""
    pool = [e for e in examples if e.labels.get(task) and e.language]
    labels = [e.labels[task] for e in pool]
    if len(set(labels)) < 2 or min(np.unique(labels, return_counts=True)[1]) < 2:
        return None
    hits = []
    folds = StratifiedKFold(n_splits=min(5, min(np.unique(labels, return_counts=True)[1])), shuffle=True, random_state=0)
    for tr_i, te_i in folds.split(np.zeros(len(pool)), labels):
        r = _fit_predict([pool[i] for i in tr_i], [pool[i] for i in te_i], task)
        if r is not None:
            hits.extend(r[0] == r[1])
    return float(np.mean(hits)) if hits else None


def leave_language_out(examples: list[Example], task: str = "style") -> dict | None:
    """Language-only accuracy when the test language never occurs in training (no shortcut left)."""
    langs = sorted({e.language for e in examples if e.language and e.labels.get(task)})
    if len(langs) < 2:
        return None
    hits = []
    for lang in langs:
        r = _fit_predict([e for e in examples if e.language != lang], [e for e in examples if e.language == lang], task)
        if r is not None:
            hits.extend(r[0] == r[1])
    return {"task": task, "accuracy": float(np.mean(hits)) if hits else None, "n": len(hits), "languages": langs}


def language_folds(examples: list[Example]) -> list[list[str]]:
    """Singer folds that hold out every singer of one language at a time (by each singer's most
    frequent language): a model tested this way cannot use the language shortcut."""
    by_singer: dict[str, dict[str, int]] = {}
    for e in examples:
        if e.language:
            counts = by_singer.setdefault(e.singer, {})
            counts[e.language] = counts.get(e.language, 0) + 1
    groups: dict[str, list[str]] = {}
    for singer, counts in by_singer.items():
        groups.setdefault(max(sorted(counts), key=counts.get), []).append(singer)
    return [sorted(groups[lang]) for lang in sorted(groups)]
