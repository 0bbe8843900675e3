"""Task projections and the co-interactive relation module (DESIGN.md, "The model").

Variants, from no interaction to the paper's full module:
- `shared`: H_s = W_s H, H_e = W_e H, pooled separately (shared encoder, no interaction);
- `concat`: both pooled, concatenated, one MLP feeds both heads;
- `oneway`: style queries emotion (A_s = softmax(Q_s K_eᵀ/√d) V_e), gated residual on the style side;
- `coattn`: bidirectional co-attention with gated residuals, the either-or filter and the matrix
  summarization of the score matrix (the full model).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(1).to(h.dtype)  # (B, 1, T) @ (B, T, d): no (B, T, d) temporary
    return (m @ h).squeeze(1) / m.sum(-1).clamp_min(1.0)


def pool(h: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    return h[:, 0] if how == "cls" else masked_mean(h, mask)


class EitherOrFilter(nn.Module):
    """F(x) = m ⊙ x + (1 − m) ⊙ x̃, m = σ(W_m x), x̃ = tanh(W_x x): keep a feature or its rewrite."""

    def __init__(self, d: int):
        super().__init__()
        self.gate = nn.Linear(d, d)
        self.alt = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.sigmoid(self.gate(x))
        return m * x + (1 - m) * torch.tanh(self.alt(x))


class CrossAttention(nn.Module):
    """softmax(Q_a K_bᵀ/√d) V_b with padding masked out; returns the output and the raw scores."""

    def forward(self, q, k, v, key_mask) -> tuple[torch.Tensor, torch.Tensor]:
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        masked = scores.masked_fill(~key_mask.unsqueeze(1), float("-inf"))
        return torch.softmax(masked, dim=-1) @ v, scores


class GatedResidual(nn.Module):
    """H' = LayerNorm(H + g ⊙ A), g = σ(W_g [H; A])."""

    def __init__(self, d: int):
        super().__init__()
        self.gate = nn.Linear(2 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, h, a):
        g = torch.sigmoid(self.gate(torch.cat([h, a], dim=-1)))
        return self.norm(h + g * a)


def summarize_scores(scores, mask_rows, mask_cols, hs, he) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrix summarization: row-wise and column-wise max of the score matrix, softmaxed over valid
    positions, weight the style and emotion states into two fixed-size descriptors."""
    neg = torch.finfo(scores.dtype).min
    valid = mask_rows.unsqueeze(2) & mask_cols.unsqueeze(1)
    s = scores.masked_fill(~valid, neg)
    row = s.max(dim=2).values.masked_fill(~mask_rows, float("-inf"))  # how much style position i finds in emotion
    col = s.max(dim=1).values.masked_fill(~mask_cols, float("-inf"))  # how much emotion position j is sought
    return (torch.softmax(row, -1).unsqueeze(-1) * hs).sum(1), (torch.softmax(col, -1).unsqueeze(-1) * he).sum(1)


class Interaction(nn.Module):
    def __init__(self, variant: str, d: int, pool_how: str = "mean", dropout: float = 0.1):
        super().__init__()
        self.variant = variant
        self.pool_how = pool_how
        self.w_s = nn.Linear(d, d)
        self.w_e = nn.Linear(d, d)
        self.out_dim = d
        if variant in ("oneway", "coattn"):
            self.q_s, self.k_s, self.v_s = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.q_e, self.k_e, self.v_e = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.attn = CrossAttention()
            self.res_s = GatedResidual(d)
            self.norm_e = nn.LayerNorm(d)
        if variant == "coattn":
            self.res_e = GatedResidual(d)
            self.filter_s, self.filter_e = EitherOrFilter(d), EitherOrFilter(d)
            self.out_dim = 2 * d
        if variant == "concat":
            self.mlp = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(dropout))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        hs, he = self.w_s(h), self.w_e(h)
        extras: dict = {}
        if self.variant == "shared":
            return pool(hs, mask, self.pool_how), pool(he, mask, self.pool_how), extras
        if self.variant == "concat":
            z = self.mlp(torch.cat([pool(hs, mask, self.pool_how), pool(he, mask, self.pool_how)], -1))
            return z, z, extras
        a_s, scores_se = self.attn(self.q_s(hs), self.k_e(he), self.v_e(he), mask)
        hs2 = self.res_s(hs, a_s)
        extras["style_to_emotion"] = torch.softmax(scores_se.masked_fill(~mask.unsqueeze(1), float("-inf")), -1)
        if self.variant == "oneway":
            return pool(hs2, mask, self.pool_how), pool(self.norm_e(he), mask, self.pool_how), extras
        a_e, scores_es = self.attn(self.q_e(he), self.k_s(hs), self.v_s(hs), mask)
        he2 = self.res_e(he, a_e)
        extras["emotion_to_style"] = torch.softmax(scores_es.masked_fill(~mask.unsqueeze(1), float("-inf")), -1)
        fs, fe = self.filter_s(hs2), self.filter_e(he2)
        sum_s, sum_e = summarize_scores(scores_se, mask, mask, fs, fe)
        return torch.cat([pool(fs, mask, self.pool_how), sum_s], -1), torch.cat([pool(fe, mask, self.pool_how), sum_e], -1), extras
