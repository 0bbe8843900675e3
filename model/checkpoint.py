"""models/<run>/: safetensors weights, config, label maps, metrics, report, plots — and loading back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import ConfigError, TrainConfig
from model.data import Example
from model.net import MultiTaskNet
from model.text import Vocab
from pipeline.errors import InputError
from pipeline.fsio import replace_dir, staging_dir

WEIGHTS, CONFIG, LABELS, METRICS, REPORT = "model.safetensors", "config.json", "labels.json", "metrics.json", "report.md"
FORMAT_VERSION = 1


class CheckpointError(InputError):
    """A run folder that cannot be loaded or does not fit the data it is used on."""


def _frozen_prefixes(cfg: TrainConfig) -> tuple[str, ...]:
    """A frozen pretrained backbone is not copied into every run; it is reloaded from its path."""
    if "lyrics" in cfg.model.encoder and cfg.model.freeze_pretrained and cfg.model.lyrics_encoder not in ("textcnn", "transformer"):
        return ("encoder.lyrics.backbone.",)
    return ()


def save_run(run, out_dir: str | Path, metrics: dict) -> Path:
    """Write a run folder atomically: built beside it, then swapped in, so a reader always finds the old
    folder or the new one, never none (pipeline.fsio.replace_dir)."""
    out = Path(out_dir)
    tmp = staging_dir(out)
    skip = _frozen_prefixes(run.config)
    tensors = {k: v.detach().cpu().contiguous() for k, v in run.best.net.state_dict().items() if not k.startswith(skip)}
    if run.norm_ref is not None:
        tensors["feature_norm.mean"] = torch.from_numpy(np.asarray(run.norm_ref[0], dtype=np.float32))
        tensors["feature_norm.std"] = torch.from_numpy(np.asarray(run.norm_ref[1], dtype=np.float32))
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
    meta = {
        "format_version": FORMAT_VERSION,
        "train_config": run.config.to_dict(),
        "audio_dim": run.audio_dim,
        "feature": run.feature if run.audio_dim else None,
        "best_seed": run.best_seed,
        "split": run.split.to_dict(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    (tmp / CONFIG).write_text(json.dumps(meta, indent=2))
    labels = {"classes": run.maps, "vocab": run.vocab.itos if run.vocab else None}
    (tmp / LABELS).write_text(json.dumps(labels, indent=2, ensure_ascii=False))
    (tmp / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
    replace_dir(tmp, out)
    return out


@dataclass
class LoadedModel:
    path: Path
    net: MultiTaskNet
    config: TrainConfig
    maps: dict[str, list[str]]
    vocab: Vocab | None
    feature: str | None
    norm_ref: tuple[np.ndarray, np.ndarray] | None
    meta: dict

    def check_labels(self, examples: list[Example]) -> None:
        """Refuse data whose classes this model never learned (its label maps would mislabel them)."""
        for task, classes in self.maps.items():
            seen = {e.labels.get(task) for e in examples} - {None}
            unknown = sorted(seen - set(classes))
            if unknown:
                raise CheckpointError(
                    f"model {self.path} knows {task} classes {classes} but the data has {unknown}; "
                    "its label maps differ from the dataset's — retrain on this dataset"
                )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the run folder is damaged") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


# Model settings added after checkpoints were first saved: an older checkpoint was trained without the
# probe path and with every frame (frame_pool 1), whatever the defaults are now.
BEFORE_THE_KEY = {"probe": False, "frame_pool": 1}


def load_run(path: str | Path, device: str = "cpu") -> LoadedModel:
    path = Path(path)
    for name in (WEIGHTS, CONFIG, LABELS):
        if not (path / name).exists():
            raise CheckpointError(f"{path} is not a model run folder: {name} is missing")
    meta = _read_json(path / CONFIG)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format_version')} is not {FORMAT_VERSION}")
    saved_cfg = meta.get("train_config")
    if not isinstance(saved_cfg, dict):
        raise CheckpointError(f"{path / CONFIG}: no train_config object")
    saved_cfg = dict(saved_cfg)
    if isinstance(saved_cfg.get("model"), dict):  # keys a checkpoint older than them lacks: what it was trained with, not today's default
        saved_cfg["model"] = BEFORE_THE_KEY | saved_cfg["model"]
    try:
        cfg = TrainConfig.from_dict(saved_cfg)
    except ConfigError as exc:
        raise CheckpointError(f"{path / CONFIG}: {exc}") from exc
    labels = _read_json(path / LABELS)
    maps = labels.get("classes")
    if not isinstance(maps, dict) or not all(isinstance(c, list) and len(c) >= 2 for c in maps.values()):
        raise CheckpointError(f"{path / LABELS}: 'classes' must map each task to its list of classes")
    vocab = Vocab(labels["vocab"][3:]) if labels.get("vocab") else None
    net = MultiTaskNet(cfg.model, {t: len(c) for t, c in maps.items()}, meta.get("audio_dim"), vocab, cfg.max_tokens)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:  # truncated or random bytes
        raise CheckpointError(
            f"{path / WEIGHTS}: not a readable safetensors file ({exc}); the run folder is damaged — retrain or restore it"
        ) from exc
    norm_ref = None
    if "feature_norm.mean" in tensors:
        norm_ref = (tensors.pop("feature_norm.mean").numpy(), tensors.pop("feature_norm.std").numpy())
    try:
        missing, unexpected = net.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"{path / WEIGHTS}: weights do not fit the saved config ({str(exc).splitlines()[-1].strip()})") from exc
    allowed = _frozen_prefixes(cfg)
    missing = [k for k in missing if not k.startswith(allowed)] if allowed else missing
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the saved config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.to(device).eval()
    return LoadedModel(path, net, cfg, maps, vocab, meta.get("feature"), norm_ref, meta)
