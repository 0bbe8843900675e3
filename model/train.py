"""Training: singer-wise split → features → seeds × (train with early stopping) → test metrics.

`train_run` is the one call behind `cantolab train`, the retrain flow and the demo; `fit` trains one
network on given examples (the benchmark's leave-singers-out folds call it directly).
"""

from __future__ import annotations

import copy
import itertools
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
    best_epoch: int = 0  # 0 with a probe: no trained epoch beat the probe on validation
    probe_score: float | None = None  # the probe's validation macro-F1 (epoch 0)
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


def _score(net, feats, texts, ys, cfg, device, maps) -> tuple[float, dict]:
    probs = predict_proba(net, feats, texts, cfg.eval_max_frames, device)
    metrics = {t: task_metrics(ys[t], probs[t].argmax(1), maps[t]) for t in cfg.tasks}
    f1s = [m["macro_f1"] for m in metrics.values() if m]
    return (float(np.mean(f1s)) if f1s else float("nan")), metrics


def fit(
    cfg: TrainConfig,
    seed: int,
    maps: dict[str, list[str]],
    train: tuple[list | None, list[str], dict[str, np.ndarray]],
    val: tuple[list | None, list[str], dict[str, np.ndarray]] | None,
    audio_dim: int | None,
    vocab: Vocab | None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Adam, batches of cfg.batch_size, early stopping on validation macro-F1 (mean over tasks)."""
    device = pick_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    set_seed(seed)
    rng = np.random.default_rng(seed)
    feats, texts, ys = train
    ys = {t: ys[t] for t in cfg.tasks}
    net = MultiTaskNet(cfg.model, {t: len(maps[t]) for t in cfg.tasks}, audio_dim, vocab, cfg.max_tokens).to(device)
    if net.probe is not None:
        # Fit on every clip outside the test singers (training and validation), as the baseline is: the
        # probe starts as that baseline exactly, and a trained epoch must beat it on validation singers
        # the probe has seen (a conservative bias: the network falls back to the baseline unless the
        # trained path clearly does better).
        if val is not None and len(val[1]):
            both = {t: np.concatenate([ys[t], val[2][t]]) for t in cfg.tasks}
            fit_probe(net, _joined(feats, val[0]), both, cfg.eval_max_frames)
        else:
            fit_probe(net, feats, ys, cfg.eval_max_frames)
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
    if net.probe is not None and val is not None and len(val[1]):
        # Epoch 0 is the probe itself: if no trained epoch beats it on validation, the probe is kept.
        score, _ = _score(net, val[0], val[1], val[2], cfg, device, maps)
        if not np.isnan(score):
            result.best_score, best_state, result.probe_score = score, copy.deepcopy(net.state_dict()), score
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
        if val is not None and len(val[1]):
            score, _ = _score(net, val[0], val[1], val[2], cfg, device, maps)
            record["val_macro_f1"] = score
        else:
            score = -record["train_loss"]
        if np.isnan(score):
            score = -record["train_loss"]
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if score > result.best_score + 1e-9:
            result.best_score, result.best_epoch, stale = score, epoch, 0
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


def _joined(a, b):
    """Two splits' features as one sequence (a FrameStore's splits stay one lazy view)."""
    if hasattr(a, "store") and hasattr(b, "store") and a.store is b.store:
        return a.store.subset(a.indices + b.indices)
    return itertools.chain(a, b)


def pooled_features(feats, max_frames: int | None = None) -> np.ndarray:
    """Each clip's frame mean (centre crop of max_frames, as the network sees at evaluation)."""
    if hasattr(feats, "clip_means"):  # a FrameStore: streamed, one clip at a time
        return feats.clip_means(None, max_frames)
    out = []
    for f in feats:
        if max_frames and len(f) > max_frames:
            start = (len(f) - max_frames) // 2
            f = f[start : start + max_frames]
        out.append(np.asarray(f, dtype=np.float32).mean(0))
    return np.stack(out)


def fit_probe(net: MultiTaskNet, feats, ys: dict[str, np.ndarray], max_frames: int | None = None) -> None:
    """Set the network's probe to a logistic regression on the pooled training features (standardized,
    L2, the Whisper-mean + LR baseline's recipe) and zero the heads' output layers, so the untrained
    network predicts exactly what the probe does. A class absent from training gets a very low bias."""
    from sklearn.linear_model import LogisticRegression

    x = pooled_features(feats, max_frames)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    for task, layer in net.probe.items():
        y = ys[task]
        known = y >= 0
        n_classes = layer.out_features
        weight = np.zeros((n_classes, x.shape[1]), dtype=np.float64)
        bias = np.full(n_classes, -30.0)
        present = np.unique(y[known])
        if len(present) >= 2:
            clf = LogisticRegression(max_iter=2000).fit(z[known], y[known])
            coef, inter = clf.coef_, clf.intercept_
            if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: logit of the second
                coef, inter = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], inter])
            for row, cls in enumerate(clf.classes_):
                weight[cls], bias[cls] = coef[row] / sd, inter[row] - (coef[row] * mu / sd).sum()
        elif len(present) == 1:
            bias[present[0]] = 0.0
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight).float())
            layer.bias.copy_(torch.from_numpy(bias).float())
            out = net.heads[task][-1]
            out.weight.zero_()
            out.bias.zero_()


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
        per_seed, histories, fits = [], {}, {}
        for seed in cfg.seeds:
            tick = bar.task(f"seed {seed}: epochs", cfg.epochs)
            res = fit(cfg, seed, maps, train_p, val_p if val_p[1] else None, audio_dim, vocab, on_epoch=tick)
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
        dataset={"uri": ds.root, "versions": ds.version} if ds is not None else {},
    )
