"""Model test fixtures: small real datasets (a handful of singers), a private feature cache, tiny
transformers checkpoints built locally (GPT-2 and T5 weights cannot be downloaded here)."""

from __future__ import annotations

import os

import pytest

from model.config import ModelConfig, TrainConfig
from tests.model.datasets import build_dataset, pick


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    old = os.environ.get("CANTOLAB_FEATURE_CACHE")
    path = tmp_path_factory.mktemp("feature-cache")
    os.environ["CANTOLAB_FEATURE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CANTOLAB_FEATURE_CACHE", None)
    else:
        os.environ["CANTOLAB_FEATURE_CACHE"] = old


@pytest.fixture(scope="session")
def gt_small(gtsinger, tmp_path_factory):
    """6 GTSinger singers (both styles), 4 clips each; reference lyrics stand in for transcripts."""
    return build_dataset(
        tmp_path_factory.mktemp("gt-small") / "dataset", pick(gtsinger, 6, 4, by="style"), "gtsinger", with_transcript=True
    )


@pytest.fixture(scope="session")
def mixed_small(gtsinger, ravdess, tmp_path_factory):
    """4 GTSinger singers (style + emotion) and 2 RAVDESS singers (emotion only: style missing)."""
    root = tmp_path_factory.mktemp("mixed-small") / "dataset"
    build_dataset(root, pick(gtsinger, 4, 3, by="style"), "gtsinger")
    rav = ravdess[ravdess["emotion"].isin(["happy", "sad"])]
    return build_dataset(root, pick(rav, 2, 4), "ravdess_song")


def tiny_config(**over) -> TrainConfig:
    """A model small enough for 2 shared cores: seconds per run."""
    model = {"encoder": "audio", "d_model": 16, "layers": 1, "heads": 2, "dropout": 0.0} | over.pop("model", {})
    base = {"lr": 3e-3, "epochs": 12, "patience": 12, "seeds": (0,), "max_frames": 48, "batch_size": 8, "split": (0.5, 0.17, 0.33)}
    return TrainConfig(model=ModelConfig(**model), **(base | over)).validate()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Random GPT-2 and T5 checkpoints (with MiniLM's tokenizer) saved as local folders."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model, T5Config, T5Model

    from model.text import minilm_path

    root = tmp_path_factory.mktemp("hf")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    out = {}
    gpt2 = GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128))
    t5 = T5Model(T5Config(vocab_size=len(tok), d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, decoder_start_token_id=0))
    for name, net in (("gpt2", gpt2), ("t5", t5)):
        net.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    return out


@pytest.fixture(scope="session", autouse=True)
def tracking_off():
    """MLflow tracking is tested in test_tracking.py and tests/flows/test_retrain.py; elsewhere a fresh
    local store per models folder would only add seconds to every run."""
    old = os.environ.get("CANTOLAB_TRACKING")
    os.environ["CANTOLAB_TRACKING"] = "off"
    yield
    if old is None:
        os.environ.pop("CANTOLAB_TRACKING", None)
    else:
        os.environ["CANTOLAB_TRACKING"] = old
