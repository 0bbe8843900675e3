"""The multi-task network: shared encoder → interaction → style head and emotion head."""

from __future__ import annotations

import torch
from torch import nn

from model.config import ModelConfig
from model.encoders import SharedEncoder
from model.interaction import Interaction, masked_mean
from model.text import Vocab


class MultiTaskNet(nn.Module):
    def __init__(self, cfg: ModelConfig, n_classes: dict[str, int], audio_dim: int | None, vocab: Vocab | None, max_tokens: int = 48):
        super().__init__()
        self.cfg = cfg
        self.encoder = SharedEncoder(cfg, audio_dim, vocab, max_tokens)
        if cfg.pool == "cls":
            self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.interaction = Interaction(cfg.variant, cfg.d_model, cfg.pool, cfg.dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.interaction.out_dim, n)) for task, n in n_classes.items()}
        )

        # The linear probe inside the network: pooled input features → logits, added to each head's.
        # fit() sets it to the logistic regression on the training clips and zero-starts the heads, so
        # the network begins as the probe and early stopping can fall back to it (never worse than it
        # on validation singers); the interaction path learns what the probe misses.
        self.probe = None
        if cfg.probe and audio_dim:
            self.probe = nn.ModuleDict({task: nn.Linear(audio_dim, n) for task, n in n_classes.items()})
            self.probe.requires_grad_(False)

    def forward(self, audio, audio_mask, texts, return_extras: bool = False):
        h, mask = self.encoder(audio, audio_mask, texts)
        if self.cfg.pool == "cls":
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], 1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        zs, ze, extras = self.interaction(h, mask)
        logits = {task: head(zs if task == "style" else ze) for task, head in self.heads.items()}
        if self.probe is not None:
            pooled = masked_mean(audio, audio_mask)
            logits = {task: lg + self.probe[task](pooled) for task, lg in logits.items()}
        return (logits, extras) if return_extras else logits
