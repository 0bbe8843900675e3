"""Run configuration: one dataclass, saved beside every model so a run can be reproduced."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.settings import validate

TASKS = ("style", "emotion")
ENCODERS = ("audio", "lyrics", "audio+lyrics")
AUDIO_ENCODERS = ("cnn", "transformer", "whisper")
LYRICS_ENCODERS = ("textcnn", "transformer", "minilm")  # or a path to a transformers checkpoint
VARIANTS = ("shared", "concat", "oneway", "coattn")
FEATURE_NORMS = ("global", "singer", "clip", "none")


@dataclass
class ModelConfig:
    encoder: str = "audio+lyrics"  # the paper's future work, fused into one sequence
    audio_encoder: str = "cnn"
    lyrics_encoder: str = "minilm"
    variant: str = "coattn"
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.2
    pool: str = "mean"  # mean | cls
    whisper_model: str = "base"
    whisper_tune_layers: int = 0  # Whisper's top encoder blocks trained with the model (0 = frozen states)
    freeze_pretrained: bool = True  # the pretrained lyrics backbone
    # Audio frames averaged in groups of k before the interaction (4: 25 → 6.25 frames/s, co-attention ~6× cheaper);
    # for frozen Whisper states before their per-frame projection too (k× less of it). The probe path keeps every frame.
    # Default 1: k = 4 cost the trained path −0.041 [−0.065, −0.014] accuracy on Whisper states (benchmarks/bench_frame_pool.py).
    frame_pool: int = 1
    pitch: bool = False  # a second audio stream: F0, voicing, vibrato, stability, glides (model.pitch), added to the audio states
    probe: bool = True  # pooled input features straight into each head beside the interaction path (contains the linear probe)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: tuple[str, ...] = TASKS  # one task = the single-task baseline
    lr: float = 1e-4
    pretrained_lr: float = 1e-5  # for tuned Whisper blocks and an unfrozen lyrics backbone: pretrained weights move slowly
    batch_size: int = 16
    epochs: int = 40
    patience: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    split_seed: int = 0
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    test_singers: tuple[str, ...] = ()  # fixed held-out singers (the retrain flow passes the champion's)
    loss: str = "weighted"  # weighted (λ-weighted CE) | uncertainty (Kendall et al. 2018)
    lambda_style: float = 1.0
    lambda_emotion: float = 1.0
    class_weights: bool = False
    oversample: bool = False
    feature_norm: str = "global"  # global | singer (per-singer standardization) | clip | none (required when tuning Whisper)
    max_frames: int = 256  # audio frames per training example (25 per second); longer clips are randomly cropped
    eval_max_frames: int = 750  # frames seen at evaluation and prediction (centre crop; 750 = 30 s)
    max_tokens: int = 48
    weight_decay: float = 0.0
    device: str = "auto"  # auto = cuda when present, else cpu
    threads: int = 1  # CPU threads; 1 is many times faster than 2 for these small models on a busy 2-core machine

    def validate(self) -> TrainConfig:
        m = self.model
        checks = [
            ("model.encoder", m.encoder, ENCODERS),
            ("model.audio_encoder", m.audio_encoder, AUDIO_ENCODERS),
            ("model.variant", m.variant, VARIANTS),
            ("model.pool", m.pool, ("mean", "cls")),
            ("loss", self.loss, ("weighted", "uncertainty")),
            ("feature_norm", self.feature_norm, FEATURE_NORMS),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        if m.lyrics_encoder not in LYRICS_ENCODERS and not Path(m.lyrics_encoder).is_dir():
            raise ConfigError(
                f"model.lyrics_encoder={m.lyrics_encoder!r}: not one of {', '.join(LYRICS_ENCODERS)} and not a folder "
                "holding a transformers checkpoint"
            )
        if m.whisper_tune_layers < 0:
            raise ConfigError(f"model.whisper_tune_layers={m.whisper_tune_layers} must be 0 (frozen) or more")
        if m.whisper_tune_layers and (m.audio_encoder != "whisper" or "audio" not in m.encoder):
            raise ConfigError("model.whisper_tune_layers needs an audio model with model.audio_encoder='whisper'")
        if m.whisper_tune_layers and self.feature_norm != "none":
            raise ConfigError(
                f"model.whisper_tune_layers={m.whisper_tune_layers} needs feature_norm='none' (not {self.feature_norm!r}): "
                "the tuned blocks expect the states Whisper's lower blocks give, not standardized ones"
            )
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ConfigError(f"tasks={list(self.tasks)!r}: choose one or both of {', '.join(TASKS)}")
        _check_ranges(self)
        if m.d_model % m.heads:
            raise ConfigError(f"model.d_model={m.d_model} must be a multiple of model.heads={m.heads}")
        if abs(sum(self.split) - 1.0) > 1e-6 or len(self.split) != 3:
            raise ConfigError(f"split={list(self.split)!r} must be three fractions (train, validation, test) summing to 1")
        return self

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainConfig:
        """Types, nesting, list→tuple and unknown keys by pipeline.settings (pydantic); the choices,
        ranges and cross-field rules by `validate`. Errors name the field (`lr: Input should be a valid number`)."""
        return validate(cls, data, strict=True).validate()

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the training config ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config is a JSON object, not {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def _check_ranges(cfg: TrainConfig) -> None:
    """Numbers that would train nothing, or something meaningless, stop the run before it starts."""
    m = cfg.model
    at_least_one = {"epochs": cfg.epochs, "patience": cfg.patience, "batch_size": cfg.batch_size, "max_frames": cfg.max_frames,
                    "eval_max_frames": cfg.eval_max_frames, "max_tokens": cfg.max_tokens, "model.d_model": m.d_model,
                    "model.layers": m.layers, "model.heads": m.heads, "model.frame_pool": m.frame_pool}  # fmt: skip
    for name, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"{name}={value} must be 1 or more")
    for name, value in {"lr": cfg.lr, "pretrained_lr": cfg.pretrained_lr}.items():
        if not value > 0:
            raise ConfigError(f"{name}={value} must be a positive learning rate")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"model.dropout={m.dropout} must be in [0, 1)")
    if cfg.weight_decay < 0 or cfg.lambda_style < 0 or cfg.lambda_emotion < 0:
        raise ConfigError("weight_decay, lambda_style and lambda_emotion must not be negative")
    if not cfg.seeds:
        raise ConfigError("seeds=[] : give at least one seed, e.g. seeds: [0, 1, 2]")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds={list(cfg.seeds)} lists a seed twice")
    if any(not 0 <= f <= 1 for f in cfg.split):
        raise ConfigError(f"split={list(cfg.split)!r}: each fraction must be between 0 and 1")
