"""GTSinger style with Whisper-base's top encoder blocks tuned vs frozen (`python -m benchmarks
whisper_tuning` → bench-results/whisper_tuning.json).

Same protocol as the accuracy headline: leave-one-singer-out and every language held out, the same
folds and seeds for both models, mean ± std over seeds beside the majority rate. Tuning the top block
costs ~38 s per fit on one CPU core (55 min for 3 seeds on this 2-core machine, over the 30-min budget
of `make bench`), so `make bench` runs it only where a GPU is present or CANTOLAB_BENCH_WHISPER_TUNE=k
asks for it (k = blocks to tune; CANTOLAB_BENCH_TUNE_SEEDS=n for fewer seeds).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.bench_accuracy import (
    SEEDS,
    base_config,
    build,
    full_config,
    summary_row,
)
from benchmarks.common import write_result
from model.config import TrainConfig
from model.controls import language_folds
from model.crossval import crossval, with_overrides
from model.data import load_examples
from model.evaluate import fmt
from model.features import FeatureStats, clip_features, whisper_key
from model.splits import singer_folds
from pipeline.data import shared_data_dir


def frozen_config(seeds: tuple[int, ...]) -> TrainConfig:
    """The accuracy headline's audio-only model (frozen Whisper-base states, co-attention, class weights)."""
    return with_overrides(full_config(replace(base_config(), seeds=seeds)), encoder="audio").validate()


def tuned_config(frozen: TrainConfig, k: int) -> TrainConfig:
    return replace(with_overrides(frozen, whisper_tune_layers=k), feature_norm="none").validate()


def main() -> dict:
    data = shared_data_dir()
    if data is None:
        return write_result("whisper_tuning", {"skipped": "reference recordings absent: set CANTOLAB_DATA"})
    asked = os.environ.get("CANTOLAB_BENCH_WHISPER_TUNE")
    if not asked and not torch.cuda.is_available():
        return write_result("whisper_tuning", {"skipped": "no GPU: ~55 min on 2 CPU cores; CANTOLAB_BENCH_WHISPER_TUNE=1 runs it anyway"})
    k = int(asked or 1)
    seeds = SEEDS[: int(os.environ.get("CANTOLAB_BENCH_TUNE_SEEDS", len(SEEDS)))]
    work = Path(os.environ.get("CANTOLAB_BENCH_WORK") or tempfile.mkdtemp(prefix="cantolab-bench-"))
    examples = load_examples(build(work / "gtsinger", "gtsinger"))
    timings: dict = {}
    feats = {}
    for key in (whisper_key("base"), whisper_key("base", k)):
        stats = FeatureStats()
        t0 = time.perf_counter()
        feats[key] = clip_features(examples, key, stats=stats)
        timings[f"features {key}"] = {
            "s": time.perf_counter() - t0,
            "s_per_computed_clip": stats.seconds_per_computed_clip,
            "computed": stats.computed,
        }
    frozen = frozen_config(seeds)
    models = {"frozen": (frozen, whisper_key("base")), f"top{k}_tuned": (tuned_config(frozen, k), whisper_key("base", k))}
    protocols = {"leave_one_singer_out": singer_folds([e.singer for e in examples], None), "language_held_out": language_folds(examples)}
    out: dict = {"k": k, "seeds": list(seeds), "pretrained_lr": models[f"top{k}_tuned"][0].pretrained_lr, "folds": protocols, "models": {}}
    for name, (cfg, key) in models.items():
        for protocol, folds in protocols.items():
            t0 = time.perf_counter()
            cv = crossval(examples, feats[key], cfg, folds=folds)
            out["models"][f"{name}/{protocol}"] = {t: summary_row(cv, t) for t in ("style", "emotion")}
            timings[f"{name}/{protocol}_s"] = time.perf_counter() - t0
    out["timings"] = timings
    out["table"] = [
        f"{name}: style acc {fmt(m['style']['accuracy'])} F1 {fmt(m['style']['macro_f1'])} bel canto recall "
        f"{fmt(m['style']['rare_class_recall'])} (maj {m['style']['majority_rate']:.3f}), {m['style']['seconds_per_epoch']:.2f} s/epoch"
        for name, m in out["models"].items()
    ]
    out["targets"] = {"style_accuracy": 0.95, "style_macro_f1": 0.90}
    return write_result("whisper_tuning", out)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str)[:6000])
