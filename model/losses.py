"""Multi-task loss: λ-weighted cross-entropy or learned uncertainty weighting; missing labels masked."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MultiTaskLoss(nn.Module):
    """λ_s CE_s + λ_e CE_e, or Σ_t exp(−s_t) CE_t + s_t with s_t = log σ_t² learned (Kendall et al. 2018).

    A label of −1 is missing (RAVDESS has no style): that clip adds nothing to that task's loss, so a
    dataset with only one task's labels still trains both heads together.
    """

    def __init__(
        self, tasks, mode: str = "weighted", lambdas: dict[str, float] | None = None, class_weights: dict[str, torch.Tensor] | None = None
    ):
        super().__init__()
        self.tasks = tuple(tasks)
        self.mode = mode
        self.lambdas = {t: 1.0 for t in self.tasks} | (lambdas or {})
        self.class_weights = class_weights or {}
        if mode == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total = next(iter(logits.values())).new_zeros(())
        parts = {}
        for i, task in enumerate(self.tasks):
            y = targets[task]
            known = y >= 0
            if not bool(known.any()):
                continue
            weight = self.class_weights.get(task)
            ce = F.cross_entropy(logits[task][known], y[known], weight=None if weight is None else weight.to(logits[task].device))
            parts[task] = float(ce.detach())
            if self.mode == "uncertainty":
                total = total + torch.exp(-self.log_vars[i]) * ce + self.log_vars[i]
            else:
                total = total + self.lambdas[task] * ce
        return total, parts


def inverse_frequency(y, n_classes: int) -> torch.Tensor:
    """Class weights ∝ 1/frequency over known labels, normalized to mean 1."""
    y = torch.as_tensor(y)
    counts = torch.bincount(y[y >= 0], minlength=n_classes).float().clamp_min(1.0)
    w = 1.0 / counts
    return w * n_classes / w.sum()
