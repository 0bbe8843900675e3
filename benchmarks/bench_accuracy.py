"""Singer-wise accuracy of the style + emotion model on CANTOLAB_DATA (`make bench` → accuracy.json).

Protocol: every singer tested once by a model that never heard them, the same folds and seeds for
every model and baseline, mean ± std over 3 seeds, the majority-class rate beside each figure.
GTSinger's headline (style) is leave-one-singer-out with the full model (frozen Whisper-base states +
MiniLM lyrics), its audio-only and lyrics-only variants, baselines on the same folds, and the
audio-only model and Whisper-mean baseline again with every singer of a language held out at once
(GTSinger's style follows language). The
paper's tables (variants, imbalance) use the log-mel CNN in 6 singer folds, and RAVDESS 3 folds, to
fit a shared 2-core machine (CANTOLAB_BENCH_FOLDS=loso runs those leave-one-singer-out too, several
times longer). CANTOLAB_BENCH_WHISPER=0 skips the headline.
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
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.common import write_result
from model.config import ModelConfig, TrainConfig
from model.controls import clip_wise, language_folds, language_only, leave_language_out
from model.crossval import crossval, with_overrides
from model.data import load_examples
from model.evaluate import fmt, mean_std
from model.features import LOGMEL, FeatureStats, clip_features, whisper_key
from model.splits import singer_folds
from model.stats import compare_predictions, interval_text
from pipeline.data import read_labels, shared_data_dir
from pipeline.dataset import Dataset
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record

SEEDS = (0, 1, 2)
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful")  # the corpus's own six, not the project's vocabulary


def base_config() -> TrainConfig:
    """The log-mel CNN of the paper's tables; every other model here is a variation of it."""
    return TrainConfig(
        model=ModelConfig(encoder="audio", audio_encoder="cnn", variant="coattn", d_model=64, layers=3, heads=4, dropout=0.3),
        lr=1e-3,
        batch_size=16,
        epochs=40,
        patience=8,
        seeds=SEEDS,
        feature_norm="global",
        max_frames=128,
    )


def full_config(base: TrainConfig) -> TrainConfig:
    """The headline's full model: frozen Whisper-base states + MiniLM over the lyrics, class-weighted."""
    return replace(with_overrides(base, audio_encoder="whisper", encoder="audio+lyrics"), class_weights=True)


def build(root: Path, name: str) -> Dataset:
    """The reference set through the real audio core into a Parquet dataset (labels imported)."""
    ds = Dataset(root)
    if ds.count("labels"):
        return ds
    takes, clips, labels = [], [], []
    for row in read_labels(name).to_dict("records"):
        prepared = prepare_take(row["abs_path"])
        tid = take_id_for_content(prepared.audio.sha256)
        takes.append(take_record(tid, prepared, {"session": name, "singer": row["singer"], "language": row.get("language")}))
        clip = whole_clip_record(tid, prepared, name, row["singer"])
        # The corpus's reference lyrics stand in for the transcript (a perfect Whisper run) so the
        # lyrics and audio+lyrics encoders are measured without 98 clips of transcription first.
        if isinstance(row.get("lyrics"), str):
            clip["transcript"] = row["lyrics"]
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


def baseline_predictions(x: np.ndarray, examples, task: str, folds: list[list[str]], per_singer: bool) -> np.ndarray:
    """Standardized features + logistic regression, same singer folds, nothing tuned: each clip's
    predicted class from the fold that held its singer out ("" for unlabelled clips)."""
    singers = np.asarray([e.singer for e in examples])
    y = np.asarray([e.labels.get(task) or "" for e in examples])
    x = x.copy()
    if per_singer:
        for s in np.unique(singers):
            m = singers == s
            x[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    pred = np.full(len(y), "", dtype=object)
    for fold in folds:
        te = np.isin(singers, fold) & (y != "")
        tr = ~np.isin(singers, fold) & (y != "")
        if te.any():
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[tr], y[tr])
            pred[te] = clf.predict(x[te])
    return pred


def baseline(x: np.ndarray, examples, task: str, folds: list[list[str]], per_singer: bool) -> dict:
    """Accuracy and macro-F1 of baseline_predictions over the labelled clips."""
    y = np.asarray([e.labels.get(task) or "" for e in examples])
    pred = baseline_predictions(x, examples, task, folds, per_singer)
    known = y != ""
    return {
        "accuracy": float((pred[known] == y[known]).mean()),
        "macro_f1": float(f1_score(y[known], pred[known].astype(str), average="macro")),
        "per_singer_norm": per_singer,
    }


def summary_row(cv, task: str) -> dict:
    s = cv.summary[task]
    return {
        "accuracy": s["accuracy"],
        "macro_f1": s["macro_f1"],
        "rare_class_recall": s["rare_class_recall"],
        "majority_rate": s["majority_rate"],
        "n": s["n"],
        "seconds_per_epoch": cv.seconds_per_epoch,
        "mean_epochs": cv.epochs_run,
    }


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
    r_ex = load_examples(build(work / "ravdess", "ravdess_song"), ("emotion",), {"emotion": RAVDESS_EMOTIONS})
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
        "gtsinger_folds": g_folds,
        "ravdess_folds": r_folds,
        "seeds": list(SEEDS),
        "validation": "2 singers from each fold's training side, for early stopping on macro-F1",
        "feature_norm": "RAVDESS: per singer (standardized over each singer's clips, no labels used) for the model and the *_singer_norm baselines; "
        "GTSinger: global (train statistics) — style is a property of the singer, per-singer standardization erases it",
        "audio_features": "Whisper-style 80-band log-mel, 25 frames/s, crops of max_frames",
    }
    base = base_config()
    if os.environ.get("CANTOLAB_BENCH_SMOKE") == "1":  # a seconds-long pass that checks the wiring only
        base = replace(base, epochs=1, seeds=(0,))

    # RAVDESS: 6 emotions, held-out singers.
    t0 = time.perf_counter()
    r_cfg = replace(base, tasks=("emotion",), max_frames=64, feature_norm="singer")
    r_cv = crossval(r_ex, r_feats, r_cfg, folds=r_folds)
    classes = sorted({e.labels["emotion"] for e in r_ex})
    r_mfcc = mfcc_stats(r_feats)
    # The same model standardized with the training singers' statistics only: no test clip shapes them.
    r_cv_inductive = crossval(r_ex, r_feats, replace(r_cfg, feature_norm="global"), folds=r_folds)
    result["ravdess_emotion6"] = {
        "model": summary_row(r_cv, "emotion"),
        "feature_norm": "model: transductive — each test singer standardized over all of that singer's clips (no labels, but the "
        "unlabelled test clips shape the statistics); model_inductive: training singers' statistics only",
        "model_inductive": summary_row(r_cv_inductive, "emotion"),
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
    result["gtsinger"]["imbalance"] = imbalance(g_ex, g_feats, base, g_folds, variants["coattn"])
    timings["gtsinger_imbalance_s"] = time.perf_counter() - t0
    if os.environ.get("CANTOLAB_BENCH_WHISPER", "1") != "0":
        t0 = time.perf_counter()
        result["gtsinger"]["headline_loso"] = headline(g_ex, base, g_mfcc, timings)
        timings["gtsinger_headline_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    result["timings"] = timings
    result["table"] = table(result)
    return write_result("accuracy", result)


def imbalance(examples, feats, base: TrainConfig, folds, none: dict) -> dict:
    """The paper's Table 7: no correction vs class-weighted CE vs minority oversampling (full model)."""
    out = {}
    out = {"none": none}
    for name, over in (("class_weights", {"class_weights": True}), ("oversample", {"oversample": True})):
        cv = crossval(examples, feats, replace(base, **over), folds=folds)
        out[name] = {t: summary_row(cv, t) for t in ("style", "emotion")}
    return out


def headline(examples, base: TrainConfig, mfcc: np.ndarray, timings: dict) -> dict:
    """GTSinger style leave-one-singer-out (the issue's protocol): the full model (frozen Whisper-base
    states + MiniLM over the lyrics, co-attention, class-weighted), its audio-only and lyrics-only
    variants, the baselines on the same folds, and the language controls: every singer of a language
    held out at once, which leaves a model no language shortcut (the audio-only model and the
    Whisper-mean baseline; the full model's ~8 min more would not fit the 30-min budget)."""
    wstats = FeatureStats()
    t0 = time.perf_counter()
    feats = clip_features(examples, whisper_key("base"), stats=wstats)
    timings["whisper_s"] = time.perf_counter() - t0
    timings["whisper_s_per_computed_clip"] = wstats.seconds_per_computed_clip
    timings["whisper_clips"] = {"computed": wstats.computed, "cached": wstats.cached}
    loso = singer_folds([e.singer for e in examples], None)
    by_language = language_folds(examples)
    full = full_config(base)
    runs = {
        "full_audio_lyrics": (full, loso),
        "audio_only": (with_overrides(full, encoder="audio"), loso),
        "lyrics_only": (with_overrides(full, encoder="lyrics"), loso),
        "audio_only_language_held_out": (with_overrides(full, encoder="audio"), by_language),
    }
    out: dict = {
        "folds": {"leave_one_singer_out": len(loso), "language_held_out": by_language},
        "lyrics": "the corpus's reference lyrics (a perfect transcript)",
    }
    w_mean = np.asarray([f.mean(0) for f in feats])
    classes = sorted({e.labels["style"] for e in examples if e.labels.get("style")})
    y = np.asarray([classes.index(e.labels["style"]) if e.labels.get("style") else -1 for e in examples])
    singers = [e.singer for e in examples]
    for name, (cfg, folds) in runs.items():
        t0 = time.perf_counter()
        cv = crossval(examples, feats, cfg, folds=folds)
        out[name] = {t: summary_row(cv, t) for t in ("style", "emotion")}
        # Network − Whisper-mean + LR on the same folds, paired over clips resampled within singers.
        base = np.asarray([classes.index(p) if p else -1 for p in baseline_predictions(w_mean, examples, "style", folds, False)])
        preds = [cv.probs[s]["style"].argmax(1) for s in cv.config.seeds]
        out[name]["style"]["minus_whisper_mean_logreg"] = {
            m: compare_predictions(y, preds, [base], singers, m) for m in ("accuracy", "macro_f1")
        }
        timings[f"headline_{name}_s"] = time.perf_counter() - t0
    out["baseline_mfcc_logreg"] = {t: baseline(mfcc, examples, t, loso, False) for t in ("style", "emotion")}
    out["baseline_whisper_mean_logreg"] = {t: baseline(w_mean, examples, t, loso, False) for t in ("style", "emotion")}
    out["baseline_whisper_mean_logreg_language_held_out"] = {"style": baseline(w_mean, examples, "style", by_language, False)}
    out["language_only_style"] = _language_control(examples, loso)
    out["language_only_style_language_held_out"] = leave_language_out(examples, "style")
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
    lines.append(
        f"RAVDESS 6 emotions: acc {fmt(r['model']['accuracy'])} transductive (test singer's own clip statistics), "
        f"{fmt(r['model_inductive']['accuracy'])} inductive (training singers' statistics) (majority {r['model']['majority_rate']:.3f}); "
        f"happy vs sad {fmt(r['happy_vs_sad_from_6class_model']['accuracy'])}; MFCC+LR {r['baseline_mfcc_logreg']['accuracy']:.3f}, "
        f"per-singer {r['baseline_mfcc_logreg_singer_norm']['accuracy']:.3f}"
    )
    g = result["gtsinger"]
    lines.append(
        f"GTSinger language-only style: singer folds {g['language_only_style']['singer_folds_accuracy']:.3f}, clip-wise "
        f"{g['language_only_style']['clip_wise_accuracy']:.3f}, leave-one-language-out {g['leave_one_language_out_language_only_style']['accuracy']:.3f}; "
        f"MFCC+LR style {g['baseline_mfcc_logreg']['style']['accuracy']:.3f}, emotion {g['baseline_mfcc_logreg']['emotion']['accuracy']:.3f}"
    )
    if "headline_loso" in g:
        h = g["headline_loso"]
        for name in ("full_audio_lyrics", "audio_only", "lyrics_only", "audio_only_language_held_out"):
            m = h[name]["style"]
            d = m.get("minus_whisper_mean_logreg")
            if d:
                lines.append(
                    f"GTSinger style {name} − Whisper-mean+LR: acc {interval_text(d['accuracy'])}, F1 {interval_text(d['macro_f1'])}"
                )
            lines.append(
                f"GTSinger style {name} ({'each language held out' if 'language' in name else 'leave-one-singer-out'}): "
                f"acc {fmt(m['accuracy'])} F1 {fmt(m['macro_f1'])} (maj {m['majority_rate']:.3f}); emotion acc {fmt(h[name]['emotion']['accuracy'])}"
            )
        b, w = h["baseline_mfcc_logreg"]["style"], h["baseline_whisper_mean_logreg"]["style"]
        lines.append(
            f"GTSinger style LOSO baselines: MFCC+LR acc {b['accuracy']:.3f} F1 {b['macro_f1']:.3f}; Whisper-mean+LR acc {w['accuracy']:.3f} "
            f"F1 {w['macro_f1']:.3f} (language held out {h['baseline_whisper_mean_logreg_language_held_out']['style']['accuracy']:.3f}); "
            f"language-only {h['language_only_style']['singer_folds_accuracy']:.3f} (language held out {h['language_only_style_language_held_out']['accuracy']:.3f})"
        )
    for name, v in g.get("imbalance", {}).items():
        lines.append(
            f"GTSinger imbalance {name}: style rare-class recall {fmt(v['style']['rare_class_recall'])}, "
            f"emotion rare-class recall {fmt(v['emotion']['rare_class_recall'])}, style acc {fmt(v['style']['accuracy'])}"
        )
    for name, v in result["gtsinger"]["variants_audio_only"].items():
        parts = [f"{t} acc {fmt(m['accuracy'])} F1 {fmt(m['macro_f1'])} (maj {m['majority_rate']:.3f})" for t, m in v.items()]
        lines.append(f"GTSinger {name}: " + "; ".join(parts))
    return lines


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str)[:6000])
