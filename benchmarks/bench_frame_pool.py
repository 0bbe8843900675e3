"""Does `model.frame_pool` 4 cost accuracy? The trained path alone (`model.probe` off), k = 4 − k = 1
on the same folds and seeds, paired bootstrap 95 % intervals (clips within singers) → frame_pool.json.

With the probe path on, early stopping kept the probe in every fit of the accuracy bench at both k
(the probe averages every input frame whatever k is), so k = 4 − k = 1 there is exactly 0 and says
nothing about the interaction path; here nothing can fall back to the probe. Rows: GTSinger style,
frozen Whisper-base audio-only, every singer of a language held out at once (the row that says
whether a model hears technique; fewer folds than leave-one-singer-out), and RAVDESS 6 emotions,
log-mel CNN, 3 singer folds, inductive standardization (training singers' statistics).
Knobs: CANTOLAB_BENCH_SEEDS (3), CANTOLAB_BENCH_WORKERS (2), CANTOLAB_BENCH_WORK (datasets reused).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.bench_accuracy import (
    RAVDESS_EMOTIONS,
    Scorer,
    base_config,
    build,
    full_config,
    load_average,
    run_jobs,
    smoke_folds,
)
from benchmarks.common import write_result
from model.controls import language_folds
from model.crossval import with_overrides
from model.data import load_examples
from model.features import LOGMEL, clip_features, whisper_key
from model.splits import singer_folds
from pipeline.data import shared_data_dir


def main() -> dict:
    if shared_data_dir() is None:
        return write_result("frame_pool", {"skipped": "reference recordings absent: set CANTOLAB_DATA"})
    t0, load_before = time.perf_counter(), load_average()
    seeds = tuple(range(int(os.environ.get("CANTOLAB_BENCH_SEEDS", "3"))))
    work = Path(os.environ.get("CANTOLAB_BENCH_WORK") or tempfile.mkdtemp(prefix="cantolab-bench-"))
    g_ex = load_examples(build(work / "gtsinger", "gtsinger"))
    r_ex = load_examples(build(work / "ravdess", "ravdess_song"), ("emotion",), {"emotion": RAVDESS_EMOTIONS})
    base = with_overrides(replace(base_config(), seeds=seeds), probe=False)
    whisper = with_overrides(full_config(base), encoder="audio")
    rav = replace(base, tasks=("emotion",), max_frames=64, feature_norm="global")
    g_folds = smoke_folds(language_folds(g_ex))
    r_folds = smoke_folds(singer_folds([e.singer for e in r_ex], 3))
    g_feats, r_feats = clip_features(g_ex, whisper_key("base")), clip_features(r_ex, LOGMEL)
    rows = {
        "gtsinger_style_language_held_out_whisper": (g_ex, g_feats, whisper, g_folds, "style"),
        "ravdess_emotion6_inductive_cnn": (r_ex, r_feats, rav, r_folds, "emotion"),
    }
    jobs = {
        f"{name}/k{k}": (exs, feats, with_overrides(cfg, frame_pool=k), folds)
        for name, (exs, feats, cfg, folds, _) in rows.items()
        for k in (1, 4)
    }
    timings: dict = {}
    cvs = run_jobs(jobs, timings, int(os.environ.get("CANTOLAB_BENCH_WORKERS", "2")))
    result: dict = {"protocol": {"seeds": list(seeds), "probe": False, "patience": base.patience}}
    for name, (exs, _feats, _cfg, _folds, task) in rows.items():
        classes = sorted({e.labels[task] for e in exs if e.labels.get(task)})
        scorer = Scorer(exs, task, classes)
        result[name] = {f"k{k}": scorer.add_cv(f"k{k}", cvs[f"{name}/k{k}"]) for k in (1, 4)} | {"k4_minus_k1": scorer.diff("k4", "k1")}
    result["timings"] = timings | {"total_s": round(time.perf_counter() - t0, 1)}
    result["load_average"] = {"before": load_before, "after": load_average(), "cores": os.cpu_count()}
    return write_result("frame_pool", result)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str)[:3000])
