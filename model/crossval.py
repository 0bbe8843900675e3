"""Leave-singers-out cross-validation: every singer is tested exactly once, by a model that never
heard them; validation singers (for early stopping) come from the training side of each fold,
stratified by the first task so that validation macro-F1 can see every class."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from model.config import TrainConfig
from model.data import Example, encode_labels, label_maps
from model.evaluate import aggregate, task_metrics
from model.features import normalize_features
from model.probe import fit_probe_for, pooled_features
from model.splits import check_examples, singer_folds
from model.text import Vocab
from model.train import fit, needs_vocab, pick_device, predict_proba


@dataclass
class FitRecord:
    """What one fit of one fold and seed was given: the clip ids it trained, stopped early and was tested on."""

    fold: int
    seed: int
    train: list[str]
    validation: list[str]
    test: list[str]


@dataclass
class CVResult:
    config: TrainConfig
    folds: list[list[str]]
    per_seed: list[dict]  # pooled over folds: seed → {task: metrics}
    summary: dict
    probs: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # seed → task → (n, classes) in example order
    # The probe baseline on the same folds (model.probe: the networks' own probe path, fit on each fold's
    # training + validation singers, the network's standardized input): task → (n, classes); empty without audio.
    probe_probs: dict[str, np.ndarray] = field(default_factory=dict)
    kept_probe: float = 0.0  # share of fits whose early stopping kept the probe (epoch 0)
    seconds_per_epoch: float = 0.0
    epochs_run: float = 0.0
    fits: list[FitRecord] = field(default_factory=list)


def crossval(
    examples: list[Example],
    raw_feats: list[np.ndarray] | None,
    cfg: TrainConfig,
    folds: list[list[str]] | None = None,
    n_folds: int | None = None,
    n_val_singers: int = 2,
    maps: dict[str, list[str]] | None = None,
    on_fit=None,
) -> CVResult:
    """Train len(folds) × len(seeds) networks; metrics pooled over all held-out clips per seed."""
    cfg = cfg.validate()
    maps = maps or label_maps(examples, cfg.tasks)
    singers = [e.singer for e in examples]
    folds = folds or singer_folds(singers, n_folds, cfg.split_seed)
    ys = encode_labels(examples, maps)
    strata = singer_strata(examples, cfg.tasks[0])
    feats = None
    if raw_feats is not None:
        feats, _ = normalize_features(raw_feats, singers, cfg.feature_norm) if cfg.feature_norm != "global" else (raw_feats, None)
    probs = {s: {t: np.zeros((len(examples), len(maps[t]))) for t in cfg.tasks} for s in cfg.seeds}
    probe_probs = {t: np.zeros((len(examples), len(maps[t]))) for t in cfg.tasks} if raw_feats is not None else {}
    kept = []
    device = pick_device(cfg.device)
    epoch_secs, epochs, records = [], [], []
    for k, test_singers in enumerate(folds):
        rest = sorted(set(singers) - set(test_singers))
        val_singers = validation_singers(rest, strata, min(n_val_singers, max(0, len(rest) - 1)), seed=1000 + k)
        idx = {
            name: [
                i
                for i, s in enumerate(singers)
                if (
                    s in test_singers
                    if name == "test"
                    else s in val_singers
                    if name == "val"
                    else s not in test_singers and s not in val_singers
                )
            ]
            for name in ("train", "val", "test")
        }
        check_examples({name: [examples[i] for i in ids] for name, ids in idx.items()})
        fold_feats = feats
        if raw_feats is not None and cfg.feature_norm == "global":
            _, ref = normalize_features([raw_feats[i] for i in idx["train"]], [], "global")
            fold_feats, _ = normalize_features(raw_feats, singers, "global", ref)
        vocab = Vocab.build([examples[i].transcript for i in idx["train"]]) if needs_vocab(cfg) else None

        def pack(ids, fold_feats=fold_feats):
            return (
                [fold_feats[i] for i in ids] if fold_feats is not None else None,
                [examples[i].transcript for i in ids],
                {t: ys[t][ids] for t in cfg.tasks},
            )

        audio_dim = raw_feats[0].shape[1] if raw_feats is not None else None
        probe = None
        if fold_feats is not None:  # once per fold: every seed's probe path and the probe baseline are this fit
            tr, va = pack(idx["train"]), pack(idx["val"])
            n_classes = {t: len(maps[t]) for t in cfg.tasks}
            probe = fit_probe_for(tr[0], tr[2], va[0] if idx["val"] else None, va[2], cfg.eval_max_frames, n_classes)
            x_test = pooled_features(pack(idx["test"])[0], cfg.eval_max_frames)
            for t, p in probe.probs(x_test).items():
                probe_probs[t][idx["test"]] = p
        val_groups = [singers[i] for i in idx["val"]]
        for seed in cfg.seeds:
            record = FitRecord(k, seed, *([examples[i].clip_id for i in idx[name]] for name in ("train", "val", "test")))
            res = fit(
                cfg,
                seed,
                maps,
                pack(idx["train"]),
                pack(idx["val"]) if idx["val"] else None,
                audio_dim,
                vocab,
                val_groups=val_groups,
                probe=probe if cfg.model.probe else None,
            )
            kept.append(res.net.probe is not None and res.best_epoch == 0)
            p = predict_proba(res.net, *pack(idx["test"])[:2], cfg.eval_max_frames, device)
            for t in cfg.tasks:
                probs[seed][t][idx["test"]] = p[t]
            epoch_secs.append(res.seconds_per_epoch)
            epochs.append(len(res.history))
            records.append(record)
            if on_fit:
                on_fit(record)
    per_seed = [{"seed": s} | {t: task_metrics(ys[t], probs[s][t].argmax(1), maps[t]) for t in cfg.tasks} for s in cfg.seeds]
    return CVResult(
        cfg, folds, per_seed, aggregate(per_seed, cfg.tasks), probs=probs, probe_probs=probe_probs,
        kept_probe=float(np.mean(kept)) if kept else 0.0, seconds_per_epoch=float(np.mean(epoch_secs)),
        epochs_run=float(np.mean(epochs)), fits=records,
    )  # fmt: skip


def singer_strata(examples: list[Example], task: str) -> dict[str, str]:
    """Each singer's majority label of `task` ("" when unlabelled): what validation is stratified by."""
    votes: dict[str, Counter] = {}
    for e in examples:
        votes.setdefault(e.singer, Counter())[e.labels.get(task) or ""] += 1
    return {s: c.most_common(1)[0][0] for s, c in votes.items()}


def validation_singers(candidates: list[str], strata: dict[str, str], n: int, seed: int) -> list[str]:
    """n singers for early stopping, taking the strata in turn (rarest first) so that validation
    macro-F1 sees every class where the data allows: with one style's singers only, early stopping
    would chase a score that cannot measure the other style."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for s in rng.permutation(sorted(candidates)).tolist():
        groups.setdefault(strata.get(s, ""), []).append(s)
    queues = sorted(groups.values(), key=len)
    picked: list[str] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def with_overrides(cfg: TrainConfig, **model_over) -> TrainConfig:
    return replace(cfg, model=replace(cfg.model, **model_over))
