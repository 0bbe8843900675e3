"""Training: singer-wise split → features → seeds × (train with early stopping) → test metrics.

`train_run` is the one call behind `cantolab train`, the retrain flow and the demo; `fit` trains one
network on given examples (the benchmark's leave-singers-out folds call it directly).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from model.config import TrainConfig
from model.data import Example, encode_labels, label_maps, load_examples
from model.evaluate import aggregate, task_metrics
from model.features import FeatureStats, feature_name, feature_store
from model.losses import MultiTaskLoss, inverse_frequency
from model.net import MultiTaskNet
from model.probe import LinearProbe, fit_linear_probe, fit_probe_for, guard_bound, pooled_features, probe_metrics
from model.splits import SingerSplit, check_examples, singer_split
from model.text import Vocab
from pipeline.dataset import Dataset
from pipeline.errors import InputError
from pipeline.vocabulary import load_label_sets


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class Batch:
    audio: torch.Tensor | None
    mask: torch.Tensor | None
    texts: list[str]
    targets: dict[str, torch.Tensor]


def make_batch(feats, texts, ys, idx, max_frames, device, rng: np.random.Generator | None) -> Batch:
    """Pad to the longest clip (cropped to max_frames: randomly in training, centred otherwise).

    From a FrameStore (model.framestore) only each crop's frames are read; either way the batch is
    filled into one preallocated array and handed to torch without another copy."""
    audio = mask = None
    if feats is not None:
        stored = hasattr(feats, "window")
        lengths = [feats.length(i) if stored else len(feats[i]) for i in idx]
        windows = []
        for n in lengths:
            start = 0
            if n > max_frames:
                start = int(rng.integers(0, n - max_frames + 1)) if rng is not None else (n - max_frames) // 2
            windows.append((start, min(n, max_frames)))
        width = max(count for _, count in windows)
        dim = feats.dim if stored else feats[idx[0]].shape[1]
        arr = np.zeros((len(idx), width, dim), dtype=np.float32)
        keep = np.zeros((len(idx), width), dtype=bool)
        for j, (i, (start, count)) in enumerate(zip(idx, windows)):
            arr[j, :count] = feats.window(i, start, count) if stored else feats[i][start : start + count]
            keep[j, :count] = True
        audio, mask = torch.from_numpy(arr).to(device), torch.from_numpy(keep).to(device)
    targets = {t: torch.as_tensor(y[idx], dtype=torch.long, device=device) for t, y in ys.items()}
    return Batch(audio, mask, [texts[i] for i in idx], targets)


def prefetched(make: Callable[[np.ndarray], Batch], batches: list[np.ndarray]):
    """Yield make(idx) for each batch, the next one built on a background thread while the caller
    trains on this one: reading and standardizing frames (numpy, os.pread; both release the GIL)
    overlaps the network's step, so a 2-core machine uses its second core for data. Batches are made
    one after another in order, so a seeded random crop is the same as without prefetching."""
    if len(batches) < 2:
        yield from (make(idx) for idx in batches)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="cantolab-batches") as pool:
        future = pool.submit(make, batches[0])
        for nxt in [*batches[1:], None]:
            batch = future.result()
            if nxt is not None:
                future = pool.submit(make, nxt)
            yield batch


@dataclass
class FitResult:
    net: MultiTaskNet
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0  # 0 with a probe: no trained epoch beat the probe on validation (by the guard)
    probe_score: float | None = None  # the probe's validation macro-F1 (epoch 0)
    guard: dict | None = None  # the kept trained epoch's bound over the probe (model.probe.guard_bound)
    guard_rejected: int = 0  # epochs whose validation score beat the kept state but whose bound over the probe did not clear the margin
    best_score: float = float("-inf")
    seconds_per_epoch: float = 0.0
    cpu_seconds_per_epoch: float = 0.0  # process CPU time: the figure a busy shared machine does not distort


def predict_proba(net: MultiTaskNet, feats, texts, max_frames: int, device, batch_size: int = 32) -> dict[str, np.ndarray]:
    net.eval()
    n = len(texts)
    out: dict[str, list] = {t: [] for t in net.heads}
    dummy = {}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            b = make_batch(feats, texts, dummy, idx, max_frames, device, None)
            logits = net(b.audio, b.mask, b.texts)
            for t, lg in logits.items():
                out[t].append(torch.softmax(lg, -1).cpu().numpy())
    return {t: np.concatenate(v) if v else np.zeros((0, net.heads[t][-1].out_features)) for t, v in out.items()}


def _score(net, feats, texts, ys, cfg, device, maps) -> tuple[float, dict[str, np.ndarray]]:
    """Mean macro-F1 over tasks on these clips, and the predicted classes."""
    probs = predict_proba(net, feats, texts, cfg.eval_max_frames, device)
    preds = {t: probs[t].argmax(1) for t in cfg.tasks}
    metrics = {t: task_metrics(ys[t], preds[t], maps[t]) for t in cfg.tasks}
    f1s = [m["macro_f1"] for m in metrics.values() if m]
    return (float(np.mean(f1s)) if f1s else float("nan")), preds


def fit(
    cfg: TrainConfig,
    seed: int,
    maps: dict[str, list[str]],
    train: tuple[list | None, list[str], dict[str, np.ndarray]],
    val: tuple[list | None, list[str], dict[str, np.ndarray]] | None,
    audio_dim: int | None,
    vocab: Vocab | None,
    on_epoch: Callable[[dict], None] | None = None,
    val_groups: list[str] | None = None,
    probe: LinearProbe | None = None,
    margin: float = 0.0,
) -> FitResult:
    """Adam, batches of cfg.batch_size, early stopping on validation macro-F1 (mean over tasks).

    With the probe path (model/probe.py): the network starts as the probe fit on the training and
    validation clips — the probe baseline — (epoch 0), and a trained epoch is kept only if it beats the
    kept state on validation *and* the paired bootstrap 95 % interval of its gain over the probe
    (validation clips resampled within `val_groups`, the validation singers; one group when not given)
    lies above `margin`. Otherwise the network ends as the probe and predicts what the baseline does.
    `probe` (model.probe.fit_probe_for) saves refitting it for every seed."""
    device = pick_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    set_seed(seed)
    rng = np.random.default_rng(seed)
    feats, texts, ys = train
    ys = {t: ys[t] for t in cfg.tasks}
    net = MultiTaskNet(cfg.model, {t: len(maps[t]) for t in cfg.tasks}, audio_dim, vocab, cfg.max_tokens).to(device)
    has_val = val is not None and len(val[1]) > 0
    if net.probe is not None:
        if probe is None:
            v_ys = {t: val[2][t] for t in cfg.tasks} if has_val else None
            probe = fit_probe_for(feats, ys, val[0] if has_val else None, v_ys, cfg.eval_max_frames, {t: len(maps[t]) for t in cfg.tasks})
        set_probe(net, probe)
    weights = {t: inverse_frequency(ys[t], len(maps[t])) for t in cfg.tasks} if cfg.class_weights else None
    loss_fn = MultiTaskLoss(cfg.tasks, cfg.loss, {"style": cfg.lambda_style, "emotion": cfg.lambda_emotion}, weights).to(device)
    pretrained = {id(p) for p in net.encoder.pretrained()}
    params = [p for p in list(net.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in pretrained]}]
    if pretrained:
        groups.append({"params": [p for p in params if id(p) in pretrained], "lr": cfg.pretrained_lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(texts)
    sample_p = None
    if cfg.oversample:  # minority oversampling: each clip drawn ∝ mean over its known tasks of 1/class count
        w = np.zeros(n)
        for t in cfg.tasks:
            y = ys[t]
            counts = np.bincount(y[y >= 0], minlength=len(maps[t])).astype(float)
            w += np.where(y >= 0, 1.0 / np.maximum(counts[np.clip(y, 0, None)], 1), 0.0)
        sample_p = w / w.sum()
    result = FitResult(net)
    best_state, stale, t_total, cpu_total = None, 0, 0.0, 0.0
    probe_preds = None
    if net.probe is not None and has_val:
        # Epoch 0 is the probe itself: kept unless a trained epoch beats it by the guard.
        score, probe_preds = _score(net, val[0], val[1], val[2], cfg, device, maps)
        if not np.isnan(score):
            result.best_score, best_state, result.probe_score = score, copy.deepcopy(net.state_dict()), score
        else:
            probe_preds = None
    groups = list(val_groups) if val_groups is not None and has_val else ["validation"] * (len(val[1]) if has_val else 0)
    for epoch in range(1, cfg.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        net.train()
        order = rng.choice(n, size=n, replace=True, p=sample_p) if sample_p is not None else rng.permutation(n)
        losses = []
        starts = range(0, n, cfg.batch_size)
        batches = [order[s : s + cfg.batch_size] for s in starts]
        batches = [idx for idx in batches if not (len(idx) < 2 and n > 2)]  # a lone example would upset batch normalization
        for b in prefetched(lambda idx: make_batch(feats, texts, ys, idx, cfg.max_frames, device, rng), batches):
            loss, _ = loss_fn(net(b.audio, b.mask, b.texts), b.targets)
            if not loss.requires_grad:
                continue
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            losses.append(float(loss.detach()))
        t_total += time.perf_counter() - t0
        cpu_total += time.process_time() - c0
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        preds = None
        if has_val:
            score, preds = _score(net, val[0], val[1], val[2], cfg, device, maps)
            record["val_macro_f1"] = score
        else:
            score = -record["train_loss"]
        if np.isnan(score):
            score = -record["train_loss"]
        better = score > result.best_score + 1e-9
        if better and probe_preds is not None:  # the guard: is the gain over the probe more than validation noise?
            bound = guard_bound({t: val[2][t] for t in cfg.tasks}, preds, probe_preds, groups, margin)
            record["val_minus_probe_low"] = bound["low"]
            if not bound["passed"]:
                better = False
                result.guard_rejected += 1
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if better:
            result.best_score, result.best_epoch, stale = score, epoch, 0
            result.guard = bound if probe_preds is not None else None
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    result.seconds_per_epoch = t_total / max(1, len(result.history))
    result.cpu_seconds_per_epoch = cpu_total / max(1, len(result.history))
    return result


def set_probe(net: MultiTaskNet, probe: LinearProbe) -> None:
    """Put the probe's linear maps into the network's probe layers and zero the heads' output layers,
    so the network predicts exactly what the probe does until training moves the heads."""
    with torch.no_grad():
        for task, layer in net.probe.items():
            layer.weight.copy_(torch.from_numpy(probe.weight[task]).float())
            layer.bias.copy_(torch.from_numpy(probe.bias[task]).float())
            out = net.heads[task][-1]
            out.weight.zero_()
            out.bias.zero_()


def fit_probe(net: MultiTaskNet, feats, ys: dict[str, np.ndarray], max_frames: int | None = None) -> LinearProbe:
    """Fit the probe (model.probe: pooled features → standardized LR) on these clips and set it."""
    probe = fit_linear_probe(pooled_features(feats, max_frames), ys, {t: layer.out_features for t, layer in net.probe.items()})
    set_probe(net, probe)
    return probe


@dataclass
class RunResult:
    config: TrainConfig
    split: SingerSplit
    maps: dict[str, list[str]]
    per_seed: list[dict]  # seed → {task: metrics}
    summary: dict  # task → mean ± std over seeds
    best: FitResult
    best_seed: int
    vocab: Vocab | None
    audio_dim: int | None
    feature: str
    norm_ref: tuple[np.ndarray, np.ndarray] | None
    test_examples: list[Example]
    test_probs: dict[str, np.ndarray]
    feature_stats: FeatureStats
    histories: dict[int, list[dict]]
    seconds_per_epoch: float
    test_feats: list | None = None  # standardized, as the network reads them (a FrameStore view from train_run)
    raw_feats: tuple | None = None  # (train, test) features before standardization, for the baselines
    train_examples: list[Example] = field(default_factory=list)
    probe_baseline: dict = field(default_factory=dict)  # task → accuracy, macro-F1 of the probe alone on the test clips (model.probe)
    probe_probs: dict[str, np.ndarray] = field(default_factory=dict)  # its test probabilities: what a network that kept its probe predicts
    controls: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)  # {"uri", "versions": {table: version}} it was trained on


class _Bar:
    """A Rich progress bar, or nothing when quiet."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    def __enter__(self):
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int):
        if not self.progress:
            return lambda *_a, **_k: None
        tid = self.progress.add_task(description, total=total)
        return lambda *_a, **_k: self.progress.advance(tid)


def prepare_inputs(examples, cfg: TrainConfig, dataset=None, stats=None, on_clip=None):
    """Raw audio features for the examples as a FrameStore view in their order, read per batch
    (model.features.feature_store); None for a lyrics-only model."""
    if "audio" not in cfg.model.encoder:
        return None
    device = str(pick_device(cfg.device))
    return feature_store(examples, feature_name(cfg.model), dataset, on_clip, device, stats)


def needs_vocab(cfg: TrainConfig) -> bool:
    return "lyrics" in cfg.model.encoder and cfg.model.lyrics_encoder in ("textcnn", "transformer")


def train_run(
    dataset: Dataset | str, cfg: TrainConfig | None = None, progress: bool = True, examples: list[Example] | None = None
) -> RunResult:
    """Train cfg.seeds networks on one singer-wise split; evaluate each on the held-out test singers."""
    cfg = (cfg or TrainConfig()).validate()
    ds = dataset if isinstance(dataset, Dataset) or dataset is None else Dataset(dataset)
    if ds is not None and ds.version is None:  # one consistent snapshot, even while others write
        ds = Dataset(ds.root, version=ds.versions(), storage_options=ds.storage_options)
    vocabulary = load_label_sets()  # the one vocabulary (settings file [labels])
    examples = examples if examples is not None else load_examples(ds, cfg.tasks, vocabulary.field_values(), lazy_audio=True)
    maps = label_maps(examples, cfg.tasks, vocabulary)
    by_singer: dict[str, list] = {}
    for e in examples:
        by_singer.setdefault(e.singer, []).append(e.labels.get(cfg.tasks[0]))
    split = singer_split(by_singer, cfg.split, cfg.split_seed, cfg.test_singers)
    parts = {name: [e for e in examples if e.singer in getattr(split, name)] for name in ("train", "validation", "test")}
    check_examples(parts)
    if not parts["test"]:
        raise InputError("the singer-wise split has no test clips")
    stats = FeatureStats()
    with _Bar(progress) as bar:
        raw = prepare_inputs(examples, cfg, ds, stats, bar.task("features", len(examples)) if "audio" in cfg.model.encoder else None)
        index = {e.clip_id: i for i, e in enumerate(examples)}
        norm_ref = normed = None
        if raw is not None:  # statistics in one streaming pass; frames standardized as each batch is read
            norm_ref = raw.store.statistics([raw.indices[index[e.clip_id]] for e in parts["train"]])
            groups = [""] * len(raw.store)
            for i, e in zip(raw.indices, examples):
                groups[i] = e.singer
            normed = raw.store.normalized(cfg.feature_norm, groups, norm_ref).subset(raw.indices)
        audio_dim = raw.dim if raw is not None else None
        vocab = Vocab.build([e.transcript for e in parts["train"]]) if needs_vocab(cfg) else None

        def pack(exs, view=None):
            f = (view or normed).subset([index[e.clip_id] for e in exs]) if raw is not None else None
            return f, [e.transcript for e in exs], encode_labels(exs, maps)

        train_p, val_p, test_p = pack(parts["train"]), pack(parts["validation"]), pack(parts["test"])
        probe, probe_probs, probe_metrics_ = None, {}, {}
        if raw is not None:  # the probe baseline, once for every seed: the same fit the networks' probe paths get
            n_classes = {t: len(maps[t]) for t in cfg.tasks}
            probe = fit_probe_for(train_p[0], train_p[2], val_p[0] if val_p[1] else None, val_p[2], cfg.eval_max_frames, n_classes)
            x_test = pooled_features(test_p[0], cfg.eval_max_frames)
            probe_probs, probe_metrics_ = probe.probs(x_test), probe_metrics(probe, x_test, test_p[2], maps)
        val_groups = [e.singer for e in parts["validation"]]
        per_seed, histories, fits = [], {}, {}
        for seed in cfg.seeds:
            tick = bar.task(f"seed {seed}: epochs", cfg.epochs)
            res = fit(
                cfg,
                seed,
                maps,
                train_p,
                val_p if val_p[1] else None,
                audio_dim,
                vocab,
                on_epoch=tick,
                val_groups=val_groups,
                probe=probe if cfg.model.probe else None,
            )
            probs = predict_proba(res.net, test_p[0], test_p[1], cfg.eval_max_frames, pick_device(cfg.device))
            per_seed.append({"seed": seed} | {t: task_metrics(test_p[2][t], probs[t].argmax(1), maps[t]) for t in cfg.tasks})
            histories[seed] = res.history
            fits[seed] = (res, probs)
    best_seed = max(fits, key=lambda s: (fits[s][0].best_score, -s))
    best, probs = fits[best_seed]
    return RunResult(
        config=cfg,
        split=split,
        maps=maps,
        per_seed=per_seed,
        summary=aggregate(per_seed, cfg.tasks),
        best=best,
        best_seed=best_seed,
        vocab=vocab,
        audio_dim=audio_dim,
        feature=feature_name(cfg.model),
        norm_ref=norm_ref,
        test_examples=parts["test"],
        test_probs=probs,
        feature_stats=stats,
        histories=histories,
        seconds_per_epoch=float(np.mean([fits[s][0].seconds_per_epoch for s in fits])),
        test_feats=test_p[0],
        raw_feats=(pack(parts["train"], raw)[0], pack(parts["test"], raw)[0]) if raw is not None else None,
        train_examples=parts["train"],
        probe_baseline=probe_metrics_,
        probe_probs=probe_probs,
        dataset={"uri": ds.root, "versions": ds.version} if ds is not None else {},
    )
