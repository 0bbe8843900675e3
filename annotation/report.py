"""The agreement report: Markdown with PNG heatmaps, plus the same figures as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from annotation.agreement import FieldAgreement, cooccurrence, field_agreement, low_agreement  # noqa: E402
from annotation.resolve import FIELDS, first_round_pairs  # noqa: E402
from pipeline.dataset import Dataset  # noqa: E402
from pipeline.fsio import atomic_write_text, atomic_writer  # noqa: E402
from pipeline.vocabulary import LabelSets  # noqa: E402


@dataclass
class AgreementReport:
    fields: dict[str, FieldAgreement]
    cooc: dict[str, pd.DataFrame]
    low: list
    n_pairs: int
    incomplete: int
    resolution: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "n_pairs": self.n_pairs,
            "incomplete": self.incomplete,
            "resolution": self.resolution,
            "fields": {k: v.as_dict() for k, v in self.fields.items()},
            "cooccurrence": {k: v.fillna(float("nan")).to_dict() for k, v in self.cooc.items()},
            "low_agreement": [p.clip_id for p in self.low],
        }


def _labels_for(field: str, base: tuple[str, ...], values) -> tuple[str, ...]:
    extra = sorted({v for v in values if v not in base})
    return (*base, *extra)


def compute(ds: Dataset, label_sets: LabelSets, n_boot: int = 2000, seed: int = 0) -> AgreementReport:
    ann = ds.to_pandas("annotations")
    pairs, incomplete = first_round_pairs(ann) if not ann.empty else ([], [])
    fields = {}
    for f in FIELDS:
        values = [p.a[f] for p in pairs] + [p.b[f] for p in pairs]
        fields[f] = field_agreement(pairs, f, _labels_for(f, label_sets.field_values()[f], values), n_boot, seed)
    labels = ds.to_pandas("labels")
    cooc = cooccurrence(
        labels,
        _labels_for("style", label_sets.styles, labels["style"].dropna()),
        _labels_for("emotion", label_sets.emotions, labels["emotion"].dropna()),
    )
    resolution = labels["resolution"].value_counts().to_dict() if not labels.empty else {}
    return AgreementReport(fields, cooc, low_agreement(pairs), len(pairs), len(incomplete), {k: int(v) for k, v in resolution.items()})


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def color_limits(values: np.ndarray) -> dict[str, float]:
    """The colour scale runs from 0, not from the smallest cell, so a cell holding 1 never looks empty."""
    top = float(np.nanmax(values)) if values.size and not np.all(np.isnan(values)) else 1.0
    return {"vmin": 0.0, "vmax": max(top, 1e-9)}


def _heatmap(matrix: pd.DataFrame, title: str, xlabel: str, ylabel: str, path: Path, fmt: str) -> None:
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * matrix.shape[1], 1.4 + 0.8 * matrix.shape[0]))
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(np.nan_to_num(values), cmap="Blues", **color_limits(values))
    ax.set_xticks(range(matrix.shape[1]), labels=list(matrix.columns))
    ax.set_yticks(range(matrix.shape[0]), labels=list(matrix.index))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    top = np.nanmax(values) if values.size and not np.all(np.isnan(values)) else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = values[i, j]
            ax.text(
                j, i, "–" if math.isnan(v) else format(v, fmt), ha="center", va="center", color="white" if top and v > top / 2 else "black"
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_writer(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def _md_table(df: pd.DataFrame, fmt) -> list[str]:
    cols = list(df.columns)
    lines = ["| | " + " | ".join(map(str, cols)) + " |", "|---|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append(f"| **{idx}** | " + " | ".join(fmt(v) for v in row) + " |")
    return lines


def write_report(rep: AgreementReport, out_dir: Path, title: str = "Annotation agreement") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", f"Clips with two first-round labels: **{rep.n_pairs}**; with only one so far: {rep.incomplete}.", ""]
    if rep.resolution:
        md += ["Final labels: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.resolution.items())), ""]
    md += [
        "## Cohen's kappa",
        "",
        "Rater A is the alphabetically first of each clip's two annotators; intervals are percentile "
        "bootstrap 95% intervals over clips (2,000 resamples).",
        "",
        "| field | n | kappa | 95% CI | observed agreement |",
        "|---|---|---|---|---|",
    ]
    for f, fa in rep.fields.items():
        md.append(f"| {f} | {fa.n} | {_fmt(fa.kappa)} | [{_fmt(fa.ci95[0])}, {_fmt(fa.ci95[1])}] | {_fmt(fa.observed)} |")
    md += ["", "### Per annotator pair", "", "| field | pair | n | kappa | 95% CI | observed |", "|---|---|---|---|---|---|"]
    for f, fa in rep.fields.items():
        for pair, v in fa.by_pair.items():
            md.append(
                f"| {f} | {pair[0]} vs {pair[1]} | {v['n']} | {_fmt(v['kappa'])} | [{_fmt(v['ci95'][0])}, {_fmt(v['ci95'][1])}] | {_fmt(v['observed_agreement'])} |"
            )
    for f, fa in rep.fields.items():
        png = f"confusion_{f}.png"
        cm = pd.DataFrame(fa.confusion, index=list(fa.labels), columns=list(fa.labels))
        _heatmap(cm, f"{f}: annotator A vs B", "annotator B", "annotator A", out_dir / png, ".0f")
        md += [
            "",
            f"## {f.capitalize()}",
            "",
            f"![{f} confusion]({png})",
            "",
            "Per-class (specific) agreement: " + ", ".join(f"{k} {_fmt(v)}" for k, v in fa.per_class.items()),
            "",
        ]
        md += _md_table(cm, lambda v: str(int(v)))
    md += ["", "## Final style × emotion (the paper's Table 1)", ""]
    _heatmap(rep.cooc["counts"], "final labels: style × emotion", "emotion", "style", out_dir / "style_x_emotion.png", ".0f")
    _heatmap(rep.cooc["p_emotion_given_style"], "P(emotion | style)", "emotion", "style", out_dir / "p_emotion_given_style.png", ".2f")
    _heatmap(rep.cooc["p_style_given_emotion"], "P(style | emotion)", "emotion", "style", out_dir / "p_style_given_emotion.png", ".2f")
    md += ["![style x emotion](style_x_emotion.png)", "", "Counts:", ""] + _md_table(rep.cooc["counts"], lambda v: str(int(v)))
    md += ["", "P(emotion | style):", ""] + _md_table(rep.cooc["p_emotion_given_style"], _fmt)
    md += ["", "P(style | emotion):", ""] + _md_table(rep.cooc["p_style_given_emotion"], _fmt)
    md += ["", "![P(emotion | style)](p_emotion_given_style.png) ![P(style | emotion)](p_style_given_emotion.png)", ""]
    md += ["## Low-agreement clips to review", ""]
    if rep.low:
        md += ["| clip | annotators | label 1 | label 2 |", "|---|---|---|---|"]
        for p in rep.low:
            md.append(
                f"| {p.clip_id} | {p.raters[0]}, {p.raters[1]} | {p.a['style']} · {p.a['emotion']} | {p.b['style']} · {p.b['emotion']} |"
            )
    else:
        md.append("None: every pair agreed on both fields.")
    path = out_dir / "agreement.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    atomic_write_text(out_dir / "agreement.json", json.dumps(rep.as_dict(), indent=2, default=str))
    return path
