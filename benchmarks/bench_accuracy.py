"""Singer-wise accuracy of the style + emotion model on CANTOLAB_DATA (`make bench` → accuracy.json).

Protocol: every singer tested once by a model that never heard them, the same folds and seeds for
every model and baseline, mean ± std over 3 seeds, the majority-class rate beside each figure, and
every network against its probe baseline (its input features mean-pooled, standardized logistic
regression, same folds) as a paired difference with a bootstrap 95 % interval (clips resampled
within singers). Per-singer accuracy for every model, so a model that only recognizes voices shows it.

- GTSinger style, leave-one-singer-out and with every singer of a language held out at once (the
  row that says whether a model hears technique: GTSinger's style follows language): frozen
  Whisper-base states, audio-only with and without the pitch stream (model.pitch), full (+ MiniLM
  over **Whisper's own transcripts**, not the corpus's reference lyrics; with pitch as well under
  CANTOLAB_BENCH_FULL_PITCH=1), lyrics-only on Whisper's transcripts; the language-only control.
- RAVDESS 6 emotions and happy vs sad (read from the 6-class model): log-mel CNN in 3 singer folds,
  with and without pitch, standardized per test singer over all of that singer's clips
  (transductive: unlabelled test clips shape the statistics) and with the training singers'
  statistics only (inductive).
- The paper's variants (log-mel CNN, 6 singer folds): each interaction variant against the shared
  encoder and against single-task, paired differences with intervals.

Knobs for a quick look: CANTOLAB_BENCH_PARTS (comma list of headline, ravdess, variants, imbalance;
default all but imbalance), CANTOLAB_BENCH_SEEDS (default 3), CANTOLAB_BENCH_PATIENCE (default 8), CANTOLAB_BENCH_FOLDS=loso (variants
and RAVDESS leave-one-singer-out, several times longer), CANTOLAB_BENCH_COLD=1 (a fresh, empty
feature/transcript cache: the cold-cache timing), CANTOLAB_BENCH_FRAME_POOL=k (model.frame_pool of every
headline and RAVDESS network; unset: Whisper 4, log-mel CNN 1), CANTOLAB_BENCH_FRAME_POOL_AB=1 (the
audio-only Whisper models and the RAVDESS CNNs at both 1 and 4: a paired frame_pool_4_minus_1 row),
CANTOLAB_BENCH_KEEP_CVS=path (finished cross-validations pickled), CANTOLAB_BENCH_DIR (where the JSON
goes). The result names which caches were warm.
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
from model.data import Example, load_examples
from model.evaluate import fmt, mean_std
from model.features import LOGMEL, FeatureStats, cache_dir, clip_audio_16k, clip_features, whisper_key
from model.pitch import PITCH, with_pitch
from model.splits import singer_folds
from model.stats import compare_predictions, interval_text
from pipeline.data import read_labels, shared_data_dir
from pipeline.dataset import Dataset
from pipeline.fsio import atomic_write_text
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record

SEEDS = (0, 1, 2)
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful")  # the corpus's own six, not the project's vocabulary
PARTS = os.environ.get("CANTOLAB_BENCH_PARTS", "headline,ravdess,variants").split(",")
TRANSCRIBER = "base"
# The full model with pitch as well (2 × 78 more fits): off by default to keep the bench near 30 min on 2 cores.
FULL_PITCH = os.environ.get("CANTOLAB_BENCH_FULL_PITCH") == "1"
MERGE = os.environ.get("CANTOLAB_BENCH_MERGE") == "1"
# model.frame_pool for every network of the headline and RAVDESS parts (unset: Whisper models 4, log-mel CNNs 1).
FRAME_POOL = int(os.environ.get("CANTOLAB_BENCH_FRAME_POOL") or 0)
KEEP_CVS = os.environ.get("CANTOLAB_BENCH_KEEP_CVS")  # a path: the finished cross-validations pickled there


def priority(job: str) -> int:
    """Run order: the pitch comparison, RAVDESS, the full and lyrics models, the variant table."""
    if job.startswith("gtsinger/"):
        return 0 if "/audio_only" in job else 2
    return {"ravdess": 1, "variants": 3}.get(job.split("/")[0], 4)


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
    """The reference set through the real audio core into a Parquet dataset (labels imported). The
    clips carry the corpus's reference lyrics as `transcript`; the headline replaces them with
    Whisper's own transcripts (whisper_transcripts) before any model reads them."""
    ds = Dataset(root)
    if ds.count("labels"):
        return ds
    takes, clips, labels = [], [], []
    for row in read_labels(name).to_dict("records"):
        prepared = prepare_take(row["abs_path"])
        tid = take_id_for_content(prepared.audio.sha256)
        takes.append(take_record(tid, prepared, {"session": name, "singer": row["singer"], "language": row.get("language")}))
        clip = whole_clip_record(tid, prepared, name, row["singer"])
        if isinstance(row.get("lyrics"), str):
            clip["transcript"] = row["lyrics"]
        clips.append(clip)
        style = row.get("style") if isinstance(row.get("style"), str) else None
        labels.append({"clip_id": clip["clip_id"], "style": style, "emotion": row["emotion"], "resolution": "imported", "annotators": []})
    ds.upsert("takes", takes)
    ds.upsert("clips", clips)
    ds.upsert("labels", labels)
    return ds


def whisper_transcripts(examples: list[Example], stats: FeatureStats) -> list[Example]:
    """The examples with Whisper-base's own transcript (beam 5, the take's language given, as ingest
    does), cached by clip content like the features: what a real run would train on, errors and all."""
    from pipeline.transcribe import TranscribeOptions, transcribe

    folder = cache_dir() / f"transcript_whisper-{TRANSCRIBER}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ex in examples:
        path = folder / f"{ex.content_key}-{(ex.language or 'auto').lower()}.txt"
        if path.exists():
            text = path.read_text(encoding="utf-8")
            stats.cached += 1
        else:
            t0 = time.perf_counter()
            opts = TranscribeOptions(language=ex.language.lower() if ex.language else None, keep_encoder_frames=False)
            text = transcribe(clip_audio_16k(ex.audio()), TRANSCRIBER, options=opts).text.strip()
            atomic_write_text(path, text)
            stats.computed += 1
            stats.seconds += time.perf_counter() - t0
        out.append(replace(ex, transcript=text))
    return out


def cache_state(examples: list[Example], keys: list[str]) -> dict:
    """How many of the examples' features each cache already held when the bench started."""
    out = {}
    for key in keys:
        folder = cache_dir() / key.replace(":", "_").replace("/", "_")
        have = sum((folder / f"{e.content_key}.npy").exists() for e in examples)
        out[key] = {"cached": have, "clips": len(examples), "warm": have == len(examples)}
    return out


def mfcc_stats(feats: list[np.ndarray]) -> np.ndarray:
    """20 MFCCs (DCT of the 80-band log-mel) → mean and std per clip: the classic baseline."""
    out = []
    for f in feats:
        c = dct(f, type=2, axis=1, norm="ortho")[:, :20]
        out.append(np.concatenate([c.mean(0), c.std(0)]))
    return np.asarray(out)


def baseline_predictions(
    x: np.ndarray, examples, task: str, folds: list[list[str]], per_singer: bool, keep: tuple[str, ...] | None = None
) -> np.ndarray:
    """Standardized features + logistic regression, same singer folds, nothing tuned: each clip's
    predicted class from the fold that held its singer out ("" for unlabelled clips). per_singer:
    each singer's rows standardized over that singer's clips first (transductive, no labels). keep:
    the argmax over those classes' probabilities only, as the networks are read (happy vs sad)."""
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
            if keep:
                cols = [list(clf.classes_).index(c) for c in keep]
                pred[te] = np.asarray(keep, dtype=object)[clf.predict_proba(x[te])[:, cols].argmax(1)]
            else:
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


class Scorer:
    """Scores several models of one task on the same clips: accuracy and macro-F1 (mean ± std over
    seeds), per-singer accuracy, and paired differences (bootstrap within singers) between any two.
    With `keep` only clips labelled with those classes count and each model's argmax runs over them
    (a 6-class model read as happy vs sad)."""

    def __init__(self, examples, task: str, classes: list[str], keep: tuple[str, ...] | None = None):
        self.task, self.classes = task, classes
        self.singers = [e.singer for e in examples]
        index = {c: i for i, c in enumerate(classes)}
        y = np.asarray([index.get(e.labels.get(task), -1) for e in examples])
        self.cols = [index[c] for c in keep] if keep else None
        self.y = np.where(np.isin(y, self.cols), y, -1) if self.cols else y
        self.index = index
        self.preds: dict[str, list[np.ndarray]] = {}

    def _read(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(self.cols)[p[:, self.cols].argmax(1)] if self.cols else p.argmax(1)

    def add_cv(self, name: str, cv) -> dict:
        self.preds[name] = [self._read(cv.probs[s][self.task]) for s in cv.config.seeds]
        return self.row(name) | {
            "seconds_per_epoch": round(cv.seconds_per_epoch, 3),
            "mean_epochs": cv.epochs_run,
            "kept_probe": round(cv.kept_probe, 3),
        }

    def add_probe(self, name: str, cv) -> dict:
        """The probe baseline of a cross-validation (its networks' own probe, model.probe; deterministic:
        one run), read like the networks (argmax over `keep` when given)."""
        self.preds[name] = [self._read(cv.probe_probs[self.task])]
        return self.row(name)

    def add_labels(self, name: str, labels: np.ndarray) -> dict:
        """A baseline's predicted class names (one run: deterministic)."""
        p = np.asarray([self.index.get(v, -1) for v in labels])
        if self.cols:
            p = np.where(np.isin(p, self.cols), p, -2)  # its own call outside `keep` counts as wrong
        self.preds[name] = [p]
        return self.row(name)

    def row(self, name: str) -> dict:
        preds, known = self.preds[name], self.y >= 0
        counts = np.bincount(self.y[known])
        return {
            "accuracy": mean_std([float((p[known] == self.y[known]).mean()) for p in preds]),
            "macro_f1": mean_std([_f1(self.y, p) for p in preds]),
            "majority_rate": float(counts.max() / counts.sum()),
            "n": int(known.sum()),
            "per_singer_accuracy": self.per_singer(name),
        }

    def per_singer(self, name: str) -> dict[str, float]:
        singers = np.asarray(self.singers)
        out = {}
        for s in sorted(set(self.singers)):
            m = (singers == s) & (self.y >= 0)
            if m.any():
                out[s] = round(float(np.mean([(p[m] == self.y[m]).mean() for p in self.preds[name]])), 3)
        return out

    def diff(self, a: str, b: str) -> dict:
        """a − b, accuracy and macro-F1, paired over the same clips (resampled within singers)."""
        known = self.y >= 0
        y = self.y[known]
        pa = [np.where(p < 0, len(self.classes), p)[known] for p in self.preds[a]]
        pb = [np.where(p < 0, len(self.classes), p)[known] for p in self.preds[b]]
        singers = [s for s, k in zip(self.singers, known) if k]
        return {m: compare_predictions(y, pa, pb, singers, m) for m in ("accuracy", "macro_f1")}


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    from model.stats import macro_f1

    return macro_f1(y, np.where(p < 0, y.max() + 1, p))


def probe_rows(scorer: Scorer, runs: dict, probe: str) -> dict:
    """Each network's row with its difference from its own probe (the probe path's logistic regression
    on that network's input, same folds: `minus_probe`) and, where that differs (pitch columns in the
    input, or no audio), from the probe baseline `probe` (`minus_probe_baseline`)."""
    out = {probe: scorer.row(probe)}
    for name, cv in runs.items():
        out[name] = scorer.add_cv(name, cv)
        own = probe
        if cv.probe_probs and cv.config.model.pitch:  # its probe sees the pitch columns too: a row of its own
            own = f"probe_{name}"
            out[own] = scorer.add_probe(own, cv)
        out[name]["probe"] = own
        out[name]["minus_probe"] = scorer.diff(name, own)
        if own != probe:
            out[name]["minus_probe_baseline"] = scorer.diff(name, probe)
    return out


def probe_source(runs: dict, preferred: tuple[str, ...]):
    """The cross-validation whose probe is the probe baseline: the first finished one without pitch."""
    return next((runs[n] for n in preferred if n in runs and runs[n].probe_probs), None)


def _run_job(job):
    """One cross-validation in a worker process (module level, so `spawn` can pickle it)."""
    name, examples, feats, cfg, folds = job
    t0 = time.perf_counter()
    cv = crossval(examples, feats, cfg, folds=folds)
    return name, cv, round(time.perf_counter() - t0, 1)


def run_jobs(jobs: dict, timings: dict, workers: int, on_done=None) -> dict:
    """Every cross-validation of the bench, `workers` at a time (each fit uses one thread, so two
    workers use the 2 cores), in the order given. Workers are spawned, not forked (torch's thread
    pools are not fork-safe) and get the examples without their audio (cross-validation reads
    features). `on_done(results so far)` after each, so finished parts are written as they finish."""
    payload = [(n, [replace(e, audio_flac=b"") for e in jobs[n][0]], *jobs[n][1:]) for n in jobs]
    out = {}
    if workers <= 1:
        results = map(_run_job, payload)
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_run_job, payload)
    try:
        for name, cv, seconds in results:
            out[name] = cv
            timings.setdefault("crossval_s", {})[name] = seconds
            print(f"  {name}: {seconds:.0f} s", flush=True)
            if on_done:
                on_done(out)
    finally:
        if workers > 1:
            pool.close()
            pool.join()
    return out


def smoke_folds(folds: list[list[str]]) -> list[list[str]]:
    """Under CANTOLAB_BENCH_SMOKE=1 (a wiring check, no figures) only the first two folds run."""
    return folds[:2] if os.environ.get("CANTOLAB_BENCH_SMOKE") == "1" else folds


def timed(timings: dict, key: str, fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    timings[key] = round(time.perf_counter() - t0, 1)
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> dict:
    data = shared_data_dir()
    if data is None:
        return write_result("accuracy", {"skipped": "reference recordings absent: set CANTOLAB_DATA"})
    if os.environ.get("CANTOLAB_BENCH_COLD") == "1":
        os.environ["CANTOLAB_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="cantolab-cold-features-")
    t_start = time.perf_counter()
    load_before = load_average()
    loso = os.environ.get("CANTOLAB_BENCH_FOLDS", "").lower() == "loso"
    seeds = tuple(range(int(os.environ.get("CANTOLAB_BENCH_SEEDS", len(SEEDS)))))
    work = Path(os.environ.get("CANTOLAB_BENCH_WORK") or tempfile.mkdtemp(prefix="cantolab-bench-"))
    timings: dict = {}
    result: dict = {"protocol": {}}

    t0 = time.perf_counter()
    reused = Dataset(work / "gtsinger").count("labels") > 0 and Dataset(work / "ravdess").count("labels") > 0
    g_ex = load_examples(build(work / "gtsinger", "gtsinger"))
    r_ex = load_examples(build(work / "ravdess", "ravdess_song"), ("emotion",), {"emotion": RAVDESS_EMOTIONS})
    timings["dataset_build_s"] = round(time.perf_counter() - t0, 1)
    g_keys = [LOGMEL, whisper_key("base"), PITCH]
    result["caches_at_start"] = {
        "feature_cache": str(cache_dir()),
        "gtsinger": cache_state(g_ex, g_keys)
        | {
            "whisper_transcripts": {
                "cached": sum(
                    (cache_dir() / f"transcript_whisper-{TRANSCRIBER}" / f"{e.content_key}-{(e.language or 'auto').lower()}.txt").exists()
                    for e in g_ex
                ),
                "clips": len(g_ex),
            }
        },
        "ravdess": cache_state(r_ex, [LOGMEL, PITCH]),
        "dataset": "reused (CANTOLAB_BENCH_WORK)" if reused else "built from the FLAC files in this run",
        "note": "model weights (Whisper, MiniLM) are read from disk each run; the OS page cache may hold them",
    }
    base = replace(base_config(), seeds=seeds)
    cnn_base = with_overrides(base, frame_pool=FRAME_POOL) if FRAME_POOL else base  # the variant table keeps the paper's k = 1
    if os.environ.get("CANTOLAB_BENCH_PATIENCE"):  # fewer epochs past the best one: a busy machine's shortcut, recorded below
        base = replace(base, patience=int(os.environ["CANTOLAB_BENCH_PATIENCE"]))
    if os.environ.get("CANTOLAB_BENCH_SMOKE") == "1":  # a seconds-long pass that checks the wiring only
        base = replace(base, epochs=1, seeds=(0,))
    result["protocol"] = {
        "seeds": list(base.seeds),
        "patience": base.patience,
        "validation": "2 singers from each fold's training side (stratified by the first task), for early stopping on macro-F1",
        "interval": "paired bootstrap 95 %, 2000 resamples of clips within singers; statistic = mean over seeds of A − mean over seeds of B",
        "probe": "every network contains its probe (pooled input features → standardized LR, model.probe); the probe baseline is that LR alone",
        "pitch": "model.pitch: librosa pyin/yin F0 + voicing at 100 frames/s → vibrato rate/extent/strength, stability, glide, "
        "voicing (8 columns at 25 frames/s, relative to the clip's median pitch), a second stream added to the audio states",
        "parts_run": PARTS,
        "frame_pool": {
            "whisper": FRAME_POOL or WHISPER_FRAME_POOL,
            "ravdess_cnn": FRAME_POOL or 1,
            "variants_cnn": 1,
            "knob": "CANTOLAB_BENCH_FRAME_POOL",
            "ab": FRAME_POOL_AB,
        },  # fmt: skip
        "early_stopping_guard": "the network starts as its probe (fit on training + validation singers: the probe baseline); "
        "a trained epoch replaces it only if the paired bootstrap 95 % interval (1000 resamples of the validation clips "
        "within the 2 validation singers) of its validation macro-F1 gain over the probe lies above 0 (model.probe)",
    }

    stats = FeatureStats()
    jobs: dict = {}
    finish = []
    if "headline" in PARTS:
        jobs_h, done = headline(g_ex, base, timings)
        jobs |= jobs_h
        finish.append(("gtsinger_style", list(jobs_h), done))
    if "ravdess" in PARTS:
        r_folds = smoke_folds(singer_folds([e.singer for e in r_ex], None if loso else 3))
        result["protocol"]["ravdess_folds"] = r_folds
        r_logmel = timed(timings, "ravdess_logmel_s", clip_features, r_ex, LOGMEL, stats=stats)
        r_pstats = FeatureStats()
        r_pitch = timed(timings, "ravdess_pitch_s", clip_features, r_ex, PITCH, stats=r_pstats)
        timings["ravdess_pitch_computed"] = {"clips": r_pstats.computed, "seconds_per_clip": r_pstats.seconds_per_computed_clip}
        jobs_r, done = ravdess(r_ex, r_logmel, with_pitch(r_logmel, r_pitch), cnn_base, r_folds)
        jobs |= jobs_r
        finish.append(("ravdess", list(jobs_r), done))
    if "variants" in PARTS or "imbalance" in PARTS:
        g_folds = smoke_folds(singer_folds([e.singer for e in g_ex], None if loso else 6))
        result["protocol"]["gtsinger_variant_folds"] = g_folds
        g_logmel = timed(timings, "gtsinger_logmel_s", clip_features, g_ex, LOGMEL, stats=stats)
        if "variants" in PARTS:
            jobs_v, done = variants(g_ex, g_logmel, base, g_folds)
            jobs |= jobs_v
            finish.append(("variants", list(jobs_v), done))
        if "imbalance" in PARTS:
            jobs_i, done = imbalance(g_ex, g_logmel, base, g_folds)
            jobs |= jobs_i
            finish.append(("imbalance", list(jobs_i), done))
    workers = int(os.environ.get("CANTOLAB_BENCH_WORKERS", "2"))
    result["protocol"]["workers"] = f"{workers} cross-validations at a time, one thread each"

    def write_finished(cvs: dict) -> None:
        if KEEP_CVS:  # every finished cross-validation (predictions included), to score again without retraining
            import pickle

            from pipeline.fsio import atomic_write_bytes

            atomic_write_bytes(Path(KEEP_CVS), pickle.dumps(cvs))
        for key, names, done in finish:
            if key in result and not result[key].get("missing_runs"):
                continue
            if key == "gtsinger_style" and any(n in cvs for n in names):  # the longest part: rows as its runs finish
                result[key] = done(cvs)
            elif all(n in cvs for n in names):
                result[key] = done(cvs)
            else:
                continue
            now = result | {"partial": True, "timings": timings, "load_average": {"before": load_before, "now": load_average()}}
            write_result("accuracy", merged(now) if MERGE else now)  # a long run still leaves figures

    timed(timings, "training_s", run_jobs, dict(sorted(jobs.items(), key=lambda kv: priority(kv[0]))), timings, workers, write_finished)
    timings["total_s"] = round(time.perf_counter() - t_start, 1)
    result["timings"] = timings
    result["load_average"] = {"before": load_before, "after": load_average(), "cores": os.cpu_count()}
    if MERGE:
        result = merged(result)
    result["table"] = table(result)
    return write_result("accuracy", result)


PART_KEYS = {"headline": "gtsinger_style", "ravdess": "ravdess", "variants": "variants", "imbalance": "imbalance"}


def merged(result: dict) -> dict:
    """CANTOLAB_BENCH_MERGE=1: keep the parts an earlier run of accuracy.json measured and this run
    did not, each with that run's timings, load average and cache state (parts run one at a time on
    a busy machine)."""
    import json

    from benchmarks.common import RESULTS

    path = RESULTS / "accuracy.json"
    if not path.exists():
        return result
    earlier = json.loads(path.read_text())
    runs = dict(earlier.get("part_runs", {}))
    for part in earlier.get("protocol", {}).get("parts_run", []):
        runs.setdefault(
            part,
            {k: earlier.get(k) for k in ("measured_at", "timings", "load_average", "caches_at_start")}
            | {"patience": earlier.get("protocol", {}).get("patience")},
        )
    out = dict(result)
    for part, key in PART_KEYS.items():
        if key in result:
            runs[part] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timings": result["timings"],
                          "load_average": result.get("load_average"), "caches_at_start": result["caches_at_start"],
                          "patience": result["protocol"]["patience"]}  # fmt: skip
        elif key in earlier:  # not run now, or not finished yet: the earlier run's figures, marked
            out[key] = earlier[key]
            out.setdefault("protocol", {})[f"{part}_from_earlier_run"] = runs.get(part, {}).get("measured_at")
    out["part_runs"] = runs
    return out


WHISPER_FRAME_POOL = 4  # Whisper states averaged in fours (6.25 frames/s) before the interaction: ~2× faster fits


FRAME_POOL_AB = os.environ.get("CANTOLAB_BENCH_FRAME_POOL_AB") == "1"


def frame_pool_pairs(models: dict, names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """CANTOLAB_BENCH_FRAME_POOL_AB=1: each named model also at the other frame_pool (1 ↔ 4), added to
    `models` as `<name>_k<k>`, so that k = 4 − k = 1 is a paired difference on the same folds and seeds.
    Returns name → (k = 4 model, k = 1 model)."""
    if not FRAME_POOL_AB:
        return {}
    pairs = {}
    for name in names:
        cfg, feats, exs = models[name]
        k = cfg.model.frame_pool
        alt = 1 if k == 4 else 4
        models[f"{name}_k{alt}"] = (with_overrides(cfg, frame_pool=alt), feats, exs)
        pairs[name] = (name, f"{name}_k{alt}") if k == 4 else (f"{name}_k{alt}", name)
    return pairs


def headline(examples: list[Example], base: TrainConfig, timings: dict):
    """GTSinger style, leave-one-singer-out and each language held out: audio-only and full model
    (Whisper transcripts) with and without pitch, lyrics-only, the probe baseline, language-only.
    Returns the cross-validations to run and the function that scores them."""
    wstats, pstats, tstats = FeatureStats(), FeatureStats(), FeatureStats()
    whisper = timed(timings, "gtsinger_whisper_s", clip_features, examples, whisper_key("base"), stats=wstats)
    pitch = timed(timings, "gtsinger_pitch_s", clip_features, examples, PITCH, stats=pstats)
    heard = timed(timings, "gtsinger_transcribe_s", whisper_transcripts, examples, tstats)
    timings["gtsinger_computed"] = {
        name: {"clips": st.computed, "seconds_per_clip": st.seconds_per_computed_clip}
        for name, st in (("whisper_states", wstats), ("pitch", pstats), ("transcripts", tstats))
    }
    both = with_pitch(whisper, pitch)
    whisper_pool = FRAME_POOL or WHISPER_FRAME_POOL
    full = with_overrides(replace(full_config(base), seeds=base.seeds), frame_pool=whisper_pool)
    audio = with_overrides(full, encoder="audio")
    models = {
        "audio_only": (audio, whisper, examples),
        "audio_only_pitch": (with_overrides(audio, pitch=True), both, examples),
        "full_whisper_transcripts": (full, whisper, heard),
        "lyrics_only_whisper_transcripts": (with_overrides(full, encoder="lyrics"), None, heard),
    }
    if FULL_PITCH:
        models["full_whisper_transcripts_pitch"] = (with_overrides(full, pitch=True), both, heard)
    ab = frame_pool_pairs(models, ("audio_only", "audio_only_pitch"))
    splits = {
        "leave_one_singer_out": smoke_folds(singer_folds([e.singer for e in examples], None)),
        "language_held_out": smoke_folds(language_folds(examples)),
    }
    # Model-major order: the pitch comparison on both splits finishes first.
    jobs = {
        f"gtsinger/{split}/{name}": (exs, feats, cfg, folds)
        for name, (cfg, feats, exs) in models.items()
        for split, folds in splits.items()
    }

    def done(cvs: dict) -> dict:
        classes = sorted({e.labels["style"] for e in examples if e.labels.get("style")})
        w_mean = np.asarray([f.mean(0) for f in whisper])
        out: dict = {
            "features": f"frozen Whisper-base encoder states (25 frames/s, averaged in groups of {whisper_pool} inside the network: "
            f"model.frame_pool {whisper_pool}); "
            "lyrics: MiniLM (frozen) over Whisper-base's own transcripts (beam 5, the take's language given as ingest does) — "
            "not the corpus's reference lyrics",
            "probe_baseline": "the networks' own probe (model.probe): Whisper-mean (the network's standardized input, centre crop of "
            "eval_max_frames) + StandardScaler + LogisticRegression fit on each fold's training + validation singers; "
            "minus_probe is each network against its own probe (with pitch: the probe over Whisper + pitch columns)",
            "transcripts_sample": {
                e.clip_id: {"reference": e.transcript, "whisper": h.transcript} for e, h in list(zip(examples, heard))[:4]
            },
        }
        missing: list[str] = []
        for split, folds in splits.items():
            scorer = Scorer(examples, "style", classes)
            runs = {name: cvs[f"gtsinger/{split}/{name}"] for name in models if f"gtsinger/{split}/{name}" in cvs}
            source = probe_source(runs, ("audio_only", "full_whisper_transcripts"))
            if source is not None:  # the networks' own probe: same clips, pooling and fit (model.probe)
                scorer.add_probe("probe_baseline", source)
            else:  # none of its networks finished yet (a partial result): the same recipe on raw features
                scorer.add_labels("probe_baseline", baseline_predictions(w_mean, examples, "style", folds, False))
            missing += [f"{split}/{name}" for name in models if name not in runs]
            rows = probe_rows(scorer, runs, "probe_baseline")
            rows["pitch_minus_no_pitch"] = {}
            if "audio_only_pitch" in runs and "audio_only" in runs:
                rows["pitch_minus_no_pitch"]["audio_only"] = scorer.diff("audio_only_pitch", "audio_only")
            if "full_whisper_transcripts_pitch" in runs and "full_whisper_transcripts" in runs:
                rows["pitch_minus_no_pitch"]["full_whisper_transcripts"] = scorer.diff(
                    "full_whisper_transcripts_pitch", "full_whisper_transcripts"
                )
            rows["frame_pool_4_minus_1"] = {name: scorer.diff(k4, k1) for name, (k4, k1) in ab.items() if k4 in runs and k1 in runs}
            rows["emotion_accuracy"] = {name: cv.summary["emotion"]["accuracy"] for name, cv in runs.items() if "emotion" in cv.summary}
            rows["folds"] = len(folds)
            rows["language_only"] = _language_control(examples, folds)
            out[split] = rows
        out["language_only_clip_wise"] = clip_wise(examples, "style")
        out["missing_runs"] = missing  # not yet finished (a partial result)
        return out

    return jobs, done


def ravdess(examples, logmel: list[np.ndarray], both: list[np.ndarray], base: TrainConfig, folds):
    """6 emotions and happy vs sad, log-mel CNN with and without pitch, transductive and inductive
    standardization; the probe baseline standardized the same way."""
    norms = {"transductive": "singer", "inductive": "global"}
    jobs = {}
    for label, norm in norms.items():
        cfg = replace(base, tasks=("emotion",), max_frames=64, feature_norm=norm)
        models = {"cnn": (cfg, logmel, examples), "cnn_pitch": (with_overrides(cfg, pitch=True), both, examples)}
        ab = frame_pool_pairs(models, ("cnn", "cnn_pitch"))
        for name, (c, feats, _) in models.items():
            jobs[f"ravdess/{label}/{name}"] = (examples, feats, c, folds)
    names = list(models)

    def done(cvs: dict) -> dict:
        classes = sorted(RAVDESS_EMOTIONS)
        pooled = np.asarray([f.mean(0) for f in logmel])
        out: dict = {}
        for label, norm in norms.items():
            runs = {name: cvs[f"ravdess/{label}/{name}"] for name in names}
            for task_name, keep in (("emotion6", None), ("happy_vs_sad", ("happy", "sad"))):
                scorer = Scorer(examples, "emotion", classes, keep)
                scorer.add_probe("probe_baseline", runs["cnn"])
                rows = probe_rows(scorer, runs, "probe_baseline")
                rows["probe_baseline_pooled_then_standardized"] = scorer.add_labels(  # the earlier recipe, for reference
                    "pooled_then_standardized", baseline_predictions(pooled, examples, "emotion", folds, norm == "singer", keep)
                )
                rows["pitch_minus_no_pitch"] = scorer.diff("cnn_pitch", "cnn")
                rows["frame_pool_4_minus_1"] = {name: scorer.diff(k4, k1) for name, (k4, k1) in ab.items()}
                rows["feature_norm"] = (
                    "transductive: each test singer standardized over all of that singer's clips (no labels, but unlabelled test clips shape the statistics)"
                    if norm == "singer"
                    else "inductive: standardized with the training singers' statistics only"
                )
                out[f"{task_name}_{label}"] = rows
        out["probe_baseline"] = (
            "the CNN's own probe (model.probe): mean of the network's standardized log-mel input + StandardScaler + "
            "LogisticRegression fit on each fold's training + validation singers; CNN + pitch against its own probe "
            "(log-mel + pitch columns: probe_cnn_pitch), and against probe_baseline in minus_probe_baseline"
        )
        out["baseline_mfcc_logreg"] = baseline(mfcc_stats(logmel), examples, "emotion", folds, False)
        out["baseline_mfcc_logreg_singer_norm"] = baseline(mfcc_stats(logmel), examples, "emotion", folds, True)
        out["targets"] = {"accuracy": 0.70, "happy_vs_sad": 0.90}
        return out

    return jobs, done


VARIANTS = ("coattn", "oneway", "concat", "shared")


def variants(examples, feats, base: TrainConfig, folds):
    """The paper's variant table with statistics: each interaction variant − shared encoder and −
    single-task, per task, paired over the same clips and seeds (log-mel CNN, same folds)."""
    # The probe path off: with it, early stopping kept the probe in every fold (measured 2026-11-28),
    # so every variant scored the probe's figures and the table compared nothing.
    base = with_overrides(base, probe=False)
    jobs = {f"variants/{v}": (examples, feats, with_overrides(base, variant=v), folds) for v in VARIANTS}
    for t in ("style", "emotion"):
        jobs[f"variants/single_task_{t}"] = (examples, feats, replace(with_overrides(base, variant="shared"), tasks=(t,)), folds)

    def done(cvs: dict) -> dict:
        out: dict = {"model": "log-mel CNN (from scratch), probe path off, global standardization", "folds": len(folds)}
        mfcc = mfcc_stats(feats)
        for task in ("style", "emotion"):
            classes = sorted({e.labels[task] for e in examples if e.labels.get(task)})
            scorer = Scorer(examples, task, classes)
            rows = {"mfcc_logreg": scorer.add_labels("mfcc_logreg", baseline_predictions(mfcc, examples, task, folds, False))}
            rows["single_task"] = scorer.add_cv("single_task", cvs[f"variants/single_task_{task}"])
            for v in VARIANTS:
                rows[v] = scorer.add_cv(v, cvs[f"variants/{v}"])
            for v in VARIANTS:
                if v != "shared":
                    rows[v]["minus_shared"] = scorer.diff(v, "shared")
                rows[v]["minus_single_task"] = scorer.diff(v, "single_task")
            out[task] = rows
        out["language_only_style"] = _language_control(examples, folds)
        return out

    return jobs, done


def imbalance(examples, feats, base: TrainConfig, folds):
    """The paper's Table 7: no correction vs class-weighted CE vs minority oversampling (opt-in part)."""
    over = {"none": {}, "class_weights": {"class_weights": True}, "oversample": {"oversample": True}}
    jobs = {f"imbalance/{name}": (examples, feats, replace(base, **o), folds) for name, o in over.items()}

    def done(cvs: dict) -> dict:
        return {name: {t: summary_row(cvs[f"imbalance/{name}"], t) for t in ("style", "emotion")} for name in over}

    return jobs, done


def _language_control(examples, folds) -> dict:
    hits, n = [], 0
    for fold in folds:
        test = [e for e in examples if e.singer in fold]
        r = language_only([e for e in examples if e.singer not in fold], test, "style")
        if r:
            hits.append(r["singer_wise_accuracy"] * r["n"])
            n += r["n"]
    return {"singer_folds_accuracy": sum(hits) / n if n else None, "leave_one_language_out": leave_language_out(examples, "style")}


def _row_text(name: str, r: dict) -> str:
    text = f"{name}: acc {fmt(r['accuracy'])} F1 {fmt(r['macro_f1'])}"
    if "minus_probe" in r:
        text += f" | −{r.get('probe', 'probe')} acc {interval_text(r['minus_probe']['accuracy'])} F1 {interval_text(r['minus_probe']['macro_f1'])}"
    if "minus_probe_baseline" in r:
        text += f" | −probe_baseline acc {interval_text(r['minus_probe_baseline']['accuracy'])}"
    if "kept_probe" in r:
        text += f" | kept probe {r['kept_probe']:.2f}"
    worst = sorted((a, s) for s, a in r.get("per_singer_accuracy", {}).items() if a < 0.5)
    if worst:
        text += " | singers below 0.5: " + ", ".join(f"{s} {a:.2f}" for a, s in worst)
    return text


def _frame_pool_lines(rows: dict) -> list[str]:
    return [
        f"  frame_pool 4 − 1 ({name}): acc {interval_text(d['accuracy'])} F1 {interval_text(d['macro_f1'])}"
        for name, d in rows.get("frame_pool_4_minus_1", {}).items()
    ]


def table(result: dict) -> list[str]:
    """Human-readable lines (the README's figures)."""
    lines = []
    for split, rows in (result.get("gtsinger_style") or {}).items():
        if not isinstance(rows, dict) or "probe_baseline" not in rows:
            continue
        p = rows["probe_baseline"]
        lines.append(
            f"GTSinger style {split} (maj {p['majority_rate']:.3f}, n {p['n']}): language-only {rows['language_only']['singer_folds_accuracy']:.3f}"
        )
        lines.append(f"  {_row_text('probe_baseline', p)}")
        for name in [n for n in rows if isinstance(rows[n], dict) and "minus_probe" in rows[n]]:
            lines.append(f"  {_row_text(name, rows[name])}")
        for name, d in rows["pitch_minus_no_pitch"].items():
            lines.append(f"  pitch − no pitch ({name}): acc {interval_text(d['accuracy'])} F1 {interval_text(d['macro_f1'])}")
        lines += _frame_pool_lines(rows)
    for key, rows in (result.get("ravdess") or {}).items():
        if not isinstance(rows, dict) or "probe_baseline" not in rows:
            continue
        p = rows["probe_baseline"]
        lines.append(
            f"RAVDESS {key} (maj {p['majority_rate']:.3f}, n {p['n']}): probe baseline acc {p['accuracy']['mean']:.3f} F1 {p['macro_f1']['mean']:.3f}"
        )
        for name in [n for n in rows if isinstance(rows[n], dict) and "minus_probe" in rows[n]]:
            lines.append(f"  {_row_text(name, rows[name])}")
        d = rows["pitch_minus_no_pitch"]
        lines.append(f"  pitch − no pitch: acc {interval_text(d['accuracy'])} F1 {interval_text(d['macro_f1'])}")
        lines += _frame_pool_lines(rows)
    v = result.get("variants") or {}
    for task in ("style", "emotion"):
        if task not in v:
            continue
        rows = v[task]
        lines.append(f"GTSinger variants, {task} (log-mel CNN, {v['folds']} singer folds; maj {rows['shared']['majority_rate']:.3f}): "
                     f"MFCC+LR acc {rows['mfcc_logreg']['accuracy']['mean']:.3f}, single-task acc {fmt(rows['single_task']['accuracy'])}")  # fmt: skip
        for name in VARIANTS:
            r = rows[name]
            text = f"  {name}: acc {fmt(r['accuracy'])} F1 {fmt(r['macro_f1'])}"
            if "minus_shared" in r:
                text += f" | −shared F1 {interval_text(r['minus_shared']['macro_f1'])}"
            text += f" | −single-task F1 {interval_text(r['minus_single_task']['macro_f1'])}"
            lines.append(text)
    for name, r in (result.get("imbalance") or {}).items():
        lines.append(
            f"GTSinger imbalance {name}: style rare-class recall {fmt(r['style']['rare_class_recall'])}, style acc {fmt(r['style']['accuracy'])}"
        )
    return lines


if __name__ == "__main__":
    import json

    print(json.dumps(main()["table"], indent=2))
