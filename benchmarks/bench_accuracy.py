"""Singer-wise accuracy of the style + emotion model on CANTOLAB_DATA (`make bench` → accuracy.json).

Protocol: leave-singers-out folds (every singer tested once by a model that never heard them), the
same folds and seeds for every model and baseline, mean ± std over 3 seeds, the majority-class rate
beside each figure. Sized for a shared 2-core machine: GTSinger in 6 singer folds, RAVDESS in 3
(CANTOLAB_BENCH_FOLDS=loso runs leave-one-singer-out everywhere, several times longer). The frozen
Whisper-base encoder runs on GTSinger only (98 clips, 0.7–2.6 s each to encode, then cached);
CANTOLAB_BENCH_WHISPER=0 skips it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.fft import dct
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.common import write_result
from model.config import ModelConfig, TrainConfig
from model.controls import clip_wise, language_only, leave_language_out
from model.crossval import crossval, with_overrides
from model.data import load_examples
from model.evaluate import fmt, mean_std
from model.features import LOGMEL, FeatureStats, clip_features, whisper_key
from model.splits import singer_folds
from pipeline.data import read_labels, shared_data_dir
from pipeline.dataset import Dataset
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record

SEEDS = (0, 1, 2)


def build(root: Path, name: str) -> Dataset:
    """The reference set through the real audio core into a Parquet dataset (labels imported)."""
    ds = Dataset(root)
    if ds.count("labels"):
        return ds
    takes, clips, labels = [], [], []
    for row in read_labels(name).to_dict("records"):
        prepared = prepare_take(row["abs_path"])
        tid = take_id_for_content(prepared.clip.sha256)
        takes.append(take_record(tid, prepared, {"session": name, "singer": row["singer"], "language": row.get("language")}))
        clip = whole_clip_record(tid, prepared, name, row["singer"])
        clips.append(clip)
        style = row.get("style") if isinstance(row.get("style"), str) else None
        labels.append({"clip_id": clip["clip_id"], "style": style, "emotion": row["emotion"], "resolution": "imported", "annotators": []})
    ds.upsert("takes", takes)
    ds.upsert("clips", clips)
    ds.upsert("labels", labels)
    return ds


def mfcc_stats(feats: list[np.ndarray]) -> np.ndarray:
    """20 MFCCs (DCT of the 80-band log-mel) → mean and std per clip: the classic baseline."""
    out = []
    for f in feats:
        c = dct(f, type=2, axis=1, norm="ortho")[:, :20]
        out.append(np.concatenate([c.mean(0), c.std(0)]))
    return np.asarray(out)


def baseline(x: np.ndarray, examples, task: str, folds: list[list[str]], per_singer: bool) -> dict:
    """Standardized features + logistic regression, same singer folds; nothing tuned."""
    singers = np.asarray([e.singer for e in examples])
    y = np.asarray([e.labels.get(task) or "" for e in examples])
    x = x.copy()
    if per_singer:
        for s in np.unique(singers):
            m = singers == s
            x[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    pred = np.empty(len(y), dtype=object)
    for fold in folds:
        te = np.isin(singers, fold) & (y != "")
        tr = ~np.isin(singers, fold) & (y != "")
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[tr], y[tr])
        pred[te] = clf.predict(x[te])
    known = y != ""
    return {"accuracy": float((pred[known] == y[known]).mean()), "per_singer_norm": per_singer}


def summary_row(cv, task: str) -> dict:
    s = cv.summary[task]
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "rare_class_recall": s["rare_class_recall"], "majority_rate": s["majority_rate"], "n": s["n"], "seconds_per_epoch": cv.seconds_per_epoch, "mean_epochs": cv.epochs_run}


def restricted_accuracy(cv, examples, keep: tuple[str, ...], classes: list[str]) -> dict:
    """Accuracy among clips labelled with `keep`, argmax over those classes' probabilities only."""
    cols = [classes.index(c) for c in keep]
    idx = [i for i, e in enumerate(examples) if e.labels.get("emotion") in keep]
    y = np.asarray([keep.index(examples[i].labels["emotion"]) for i in idx])
    accs = [float((cv.probs[s]["emotion"][idx][:, cols].argmax(1) == y).mean()) for s in cv.config.seeds]
    counts = np.bincount(y)
    return {"accuracy": mean_std(accs), "majority_rate": float(counts.max() / counts.sum()), "n": len(idx)}


def main() -> dict:
    data = shared_data_dir()
    if data is None:
        return write_result("accuracy", {"skipped": "reference recordings absent: set CANTOLAB_DATA"})
    t_start = time.perf_counter()
    loso = os.environ.get("CANTOLAB_BENCH_FOLDS", "").lower() == "loso"
    work = Path(os.environ.get("CANTOLAB_BENCH_WORK") or tempfile.mkdtemp(prefix="cantolab-bench-"))
    timings, result = {}, {"protocol": {}}

    t0 = time.perf_counter()
    g_ex = load_examples(build(work / "gtsinger", "gtsinger"))
    r_ex = load_examples(build(work / "ravdess", "ravdess_song"), ("emotion",))
    timings["dataset_build_s"] = time.perf_counter() - t0
    stats = FeatureStats()
    t0 = time.perf_counter()
    g_feats = clip_features(g_ex, LOGMEL, stats=stats)
    r_feats = clip_features(r_ex, LOGMEL, stats=stats)
    timings["logmel_s"] = time.perf_counter() - t0
    timings["logmel_s_per_computed_clip"] = stats.seconds_per_computed_clip
    timings["logmel_clips"] = {"computed": stats.computed, "cached": stats.cached}

    g_folds = singer_folds([e.singer for e in g_ex], None if loso else 6)
    r_folds = singer_folds([e.singer for e in r_ex], None if loso else 3)
    result["protocol"] = {
        "gtsinger_folds": g_folds, "ravdess_folds": r_folds, "seeds": list(SEEDS),
        "validation": "2 singers from each fold's training side, for early stopping on macro-F1",
        "feature_norm": "RAVDESS: per singer (standardized over each singer's clips, no labels used) for the model and the *_singer_norm baselines; "
        "GTSinger: global (train statistics) — style is a property of the singer, per-singer standardization erases it",
        "audio_features": "Whisper-style 80-band log-mel, 25 frames/s, crops of max_frames",
    }
    base = TrainConfig(
        model=ModelConfig(encoder="audio", audio_encoder="cnn", variant="coattn", d_model=64, layers=3, heads=4, dropout=0.3),
        lr=1e-3, batch_size=16, epochs=40, patience=8, seeds=SEEDS, feature_norm="global", max_frames=128,
    )
    if os.environ.get("CANTOLAB_BENCH_SMOKE") == "1":  # a seconds-long pass that checks the wiring only
        base = replace(base, epochs=1, seeds=(0,))

    # RAVDESS: 6 emotions, held-out singers.
    t0 = time.perf_counter()
    r_cfg = replace(base, tasks=("emotion",), max_frames=64, feature_norm="singer")
    r_cv = crossval(r_ex, r_feats, r_cfg, folds=r_folds)
    classes = sorted({e.labels["emotion"] for e in r_ex})
    r_mfcc = mfcc_stats(r_feats)
    result["ravdess_emotion6"] = {
        "model": summary_row(r_cv, "emotion"),
        "happy_vs_sad_from_6class_model": restricted_accuracy(r_cv, r_ex, ("happy", "sad"), classes),
        "baseline_mfcc_logreg": baseline(r_mfcc, r_ex, "emotion", r_folds, False),
        "baseline_mfcc_logreg_singer_norm": baseline(r_mfcc, r_ex, "emotion", r_folds, True),
        "targets": {"accuracy": 0.70, "happy_vs_sad": 0.90},
    }
    timings["ravdess_s"] = time.perf_counter() - t0

    # GTSinger: style + emotion, interaction variants and single-task baselines, same folds and seeds.
    t0 = time.perf_counter()
    g_mfcc = mfcc_stats(g_feats)
    variants = {}
    for variant in ("coattn", "oneway", "concat", "shared"):
        cv = crossval(g_ex, g_feats, with_overrides(base, variant=variant), folds=g_folds)
        variants[variant] = {t: summary_row(cv, t) for t in ("style", "emotion")}
    for task in ("style", "emotion"):
        cv = crossval(g_ex, g_feats, replace(with_overrides(base, variant="shared"), tasks=(task,)), folds=g_folds)
        variants[f"single_task_{task}"] = {task: summary_row(cv, task)}
    timings["gtsinger_variants_s"] = time.perf_counter() - t0
    result["gtsinger"] = {
        "variants_audio_only": variants,
        "baseline_mfcc_logreg": {t: baseline(g_mfcc, g_ex, t, g_folds, False) for t in ("style", "emotion")},
        "baseline_mfcc_logreg_singer_norm": {t: baseline(g_mfcc, g_ex, t, g_folds, True) for t in ("style", "emotion")},
        "language_only_style": _language_control(g_ex, g_folds),
        "leave_one_language_out_language_only_style": leave_language_out(g_ex, "style"),
        "targets": {"style_accuracy": 0.95, "style_macro_f1": 0.90},
    }
    t0 = time.perf_counter()
    result["gtsinger"]["imbalance"] = imbalance(g_ex, g_feats, base, g_folds)
    timings["gtsinger_imbalance_s"] = time.perf_counter() - t0
    if os.environ.get("CANTOLAB_BENCH_WHISPER", "1") != "0":
        t0 = time.perf_counter()
        wstats = FeatureStats()
        w_feats = clip_features(g_ex, whisper_key("base"), stats=wstats)
        cv = crossval(g_ex, w_feats, with_overrides(base, audio_encoder="whisper"), folds=g_folds)
        result["gtsinger"]["whisper_base_coattn"] = {t: summary_row(cv, t) for t in ("style", "emotion")}
        w_mean = np.asarray([f.mean(0) for f in w_feats])
        result["gtsinger"]["baseline_whisper_mean_logreg"] = {t: baseline(w_mean, g_ex, t, g_folds, False) for t in ("style", "emotion")}
        timings["whisper_s_per_computed_clip"] = wstats.seconds_per_computed_clip
        timings["gtsinger_whisper_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    result["timings"] = timings
    result["table"] = table(result)
    return write_result("accuracy", result)


def imbalance(examples, feats, base: TrainConfig, folds) -> dict:
    """The paper's Table 7: no correction vs class-weighted CE vs minority oversampling (full model)."""
    out = {}
    for name, over in (("none", {}), ("class_weights", {"class_weights": True}), ("oversample", {"oversample": True})):
        cv = crossval(examples, feats, replace(base, **over), folds=folds)
        out[name] = {t: summary_row(cv, t) for t in ("style", "emotion")}
    return out


def _language_control(examples, folds) -> dict:
    hits, n = [], 0
    for fold in folds:
        test = [e for e in examples if e.singer in fold]
        r = language_only([e for e in examples if e.singer not in fold], test, "style")
        if r:
            hits.append(r["singer_wise_accuracy"] * r["n"])
            n += r["n"]
    return {"singer_folds_accuracy": sum(hits) / n if n else None, "clip_wise_accuracy": clip_wise(examples, "style")}


def table(result: dict) -> list[str]:
    """Human-readable lines (the README's figures)."""
    lines = []
    r = result["ravdess_emotion6"]
    lines.append(f"RAVDESS 6 emotions: acc {fmt(r['model']['accuracy'])} (majority {r['model']['majority_rate']:.3f}); "
                 f"happy vs sad {fmt(r['happy_vs_sad_from_6class_model']['accuracy'])}; MFCC+LR {r['baseline_mfcc_logreg']['accuracy']:.3f}, "
                 f"per-singer {r['baseline_mfcc_logreg_singer_norm']['accuracy']:.3f}")
    g = result["gtsinger"]
    lines.append(f"GTSinger language-only style: singer folds {g['language_only_style']['singer_folds_accuracy']:.3f}, clip-wise "
                 f"{g['language_only_style']['clip_wise_accuracy']:.3f}, leave-one-language-out {g['leave_one_language_out_language_only_style']['accuracy']:.3f}; "
                 f"MFCC+LR style {g['baseline_mfcc_logreg']['style']['accuracy']:.3f}, emotion {g['baseline_mfcc_logreg']['emotion']['accuracy']:.3f}")
    if "whisper_base_coattn" in g:
        w = g["whisper_base_coattn"]
        lines.append(f"GTSinger whisper-base coattn: style acc {fmt(w['style']['accuracy'])} F1 {fmt(w['style']['macro_f1'])}; emotion acc {fmt(w['emotion']['accuracy'])}; "
                     f"whisper mean+LR style {g['baseline_whisper_mean_logreg']['style']['accuracy']:.3f}")
    for name, v in g.get("imbalance", {}).items():
        lines.append(f"GTSinger imbalance {name}: style rare-class recall {fmt(v['style']['rare_class_recall'])}, "
                     f"emotion rare-class recall {fmt(v['emotion']['rare_class_recall'])}, style acc {fmt(v['style']['accuracy'])}")
    for name, v in result["gtsinger"]["variants_audio_only"].items():
        parts = [f"{t} acc {fmt(m['accuracy'])} F1 {fmt(m['macro_f1'])} (maj {m['majority_rate']:.3f})" for t, m in v.items()]
        lines.append(f"GTSinger {name}: " + "; ".join(parts))
    return lines


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str)[:6000])
