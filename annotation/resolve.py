"""Two first-round labels (+ an adjudication) → a final label, or a disagreement to adjudicate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

FIELDS = ("style", "emotion")


@dataclass(frozen=True)
class Pair:
    clip_id: str
    raters: tuple[str, str]  # sorted e-mails
    a: dict[str, str]  # rater 0's {style, emotion}
    b: dict[str, str]

    @property
    def agrees(self) -> bool:
        return all(self.a[f] == self.b[f] for f in FIELDS)

    def first_labels_text(self) -> str:
        """What the adjudicator sees: both labels, without names, in an order drawn per clip (a hash
        of its id), so neither "Label 1" nor a reputation says who gave which."""
        labels = [self.a, self.b]
        if hashlib.sha256(f"{self.clip_id}|adjudication-order".encode()).digest()[0] & 1:
            labels.reverse()
        return "\n".join(f"Label {i}: style {lab['style']} · emotion {lab['emotion']}" for i, lab in enumerate(labels, 1))


def lone_labels_text(labels: list[dict[str, str]], reason: str) -> str:
    """A clip that could not get two first-round labels: whatever labels exist, and why."""
    lines = [f"Label {i}: style {lab['style']} · emotion {lab['emotion']}" for i, lab in enumerate(labels, 1)]
    return "\n".join([*lines, f"No second label: {reason}."])


@dataclass
class Resolution:
    labels: list[dict] = field(default_factory=list)
    to_adjudicate: list[Pair] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # disagreements without a decision yet
    incomplete: list[str] = field(default_factory=list)  # clips with fewer than two first labels


def first_round_pairs(annotations: pd.DataFrame) -> tuple[list[Pair], list[str]]:
    """Pairs for clips with exactly two first-round annotators; clips with one are returned apart."""
    first = annotations[annotations["round"] == "first"]
    pairs, incomplete = [], []
    for clip_id, g in first.groupby("clip_id", sort=True):
        g = g.sort_values("annotator")
        if len(g) < 2:
            incomplete.append(clip_id)
            continue
        r0, r1 = g.iloc[0], g.iloc[1]  # more than two only if the roster changed; the first two count
        pairs.append(Pair(clip_id, (r0["annotator"], r1["annotator"]), {f: r0[f] for f in FIELDS}, {f: r1[f] for f in FIELDS}))
    return pairs, incomplete


def resolve(annotations: pd.DataFrame, now, exhausted: dict[str, str] | None = None) -> Resolution:
    """`exhausted`: clips that cannot get two first-round labels (skipped by everyone the roster
    has); they are decided by the adjudicator alone."""
    out = Resolution()
    if annotations.empty:
        return out
    pairs, out.incomplete = first_round_pairs(annotations)
    adj = annotations[annotations["round"] == "adjudication"].set_index("clip_id")
    lone = sorted(set(exhausted or {}) - {p.clip_id for p in pairs})
    out.incomplete = [c for c in out.incomplete if c not in set(lone)]
    for cid in lone:
        if cid in adj.index:
            d = adj.loc[cid]
            out.labels.append(
                {
                    "clip_id": cid,
                    "style": d["style"],
                    "emotion": d["emotion"],
                    "resolution": "adjudicated",
                    "annotators": [d["annotator"]],
                    "updated_at": now,
                }
            )
        else:
            out.pending.append(cid)
    for p in pairs:
        if p.agrees:
            out.labels.append({"clip_id": p.clip_id, **p.a, "resolution": "agreed", "annotators": list(p.raters), "updated_at": now})
            continue
        out.to_adjudicate.append(p)
        if p.clip_id in adj.index:
            d = adj.loc[p.clip_id]
            out.labels.append(
                {
                    "clip_id": p.clip_id,
                    "style": d["style"],
                    "emotion": d["emotion"],
                    "resolution": "adjudicated",
                    "annotators": [*p.raters, d["annotator"]],
                    "updated_at": now,
                }
            )
        else:
            out.pending.append(p.clip_id)
    return out
