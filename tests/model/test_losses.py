"""Masked multi-task loss: a missing label adds nothing; uncertainty weights learn."""

import torch
from torch.nn import functional as F

from model.losses import MultiTaskLoss, inverse_frequency


def test_missing_style_is_masked():
    torch.manual_seed(0)
    logits = {"style": torch.randn(4, 2, requires_grad=True), "emotion": torch.randn(4, 6, requires_grad=True)}
    targets = {"style": torch.tensor([-1, -1, 1, 0]), "emotion": torch.tensor([0, 5, 2, 3])}
    loss, parts = MultiTaskLoss(("style", "emotion"))(logits, targets)
    expected = F.cross_entropy(logits["style"][2:], targets["style"][2:]) + F.cross_entropy(logits["emotion"], targets["emotion"])
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits["style"].grad[:2].abs().sum() == 0  # clips without style get no style gradient
    assert logits["style"].grad[2:].abs().sum() > 0


def test_a_batch_without_any_style_trains_emotion_alone():
    logits = {"style": torch.randn(3, 2, requires_grad=True), "emotion": torch.randn(3, 6, requires_grad=True)}
    targets = {"style": torch.tensor([-1, -1, -1]), "emotion": torch.tensor([1, 2, 3])}
    loss, parts = MultiTaskLoss(("style", "emotion"))(logits, targets)
    assert set(parts) == {"emotion"} and torch.isfinite(loss)


def test_lambda_weights_and_uncertainty_weighting():
    logits = {"style": torch.randn(4, 2), "emotion": torch.randn(4, 6)}
    targets = {"style": torch.tensor([0, 1, 1, 0]), "emotion": torch.tensor([0, 1, 2, 3])}
    plain, parts = MultiTaskLoss(("style", "emotion"))(logits, targets)
    weighted, _ = MultiTaskLoss(("style", "emotion"), lambdas={"style": 0.0})(logits, targets)
    assert torch.allclose(weighted, torch.tensor(parts["emotion"]))
    unc = MultiTaskLoss(("style", "emotion"), mode="uncertainty")
    loss, _ = unc(logits, targets)
    assert torch.allclose(loss, plain)  # s_t = 0 at the start: exp(0)·CE + 0
    loss.backward()
    assert unc.log_vars.grad.abs().sum() > 0


def test_inverse_frequency_favours_the_rare_class():
    w = inverse_frequency(torch.tensor([0, 0, 0, 1, -1]), 2)
    assert w[1] > w[0] and torch.isclose(w.mean(), torch.tensor(1.0))


def test_class_weights_scale_each_clip_by_its_class():
    """Weighted cross-entropy: Σ w_y·CE / Σ w_y, so a rare class's errors count more than a common one's."""
    torch.manual_seed(1)
    logits = {"emotion": torch.randn(8, 2)}
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, -1])
    w = inverse_frequency(y, 2)
    assert torch.allclose(w, torch.tensor([2 / 7, 12 / 7]))  # counts 6 and 1, mean 1
    weighted, _ = MultiTaskLoss(("emotion",), class_weights={"emotion": w})(logits, {"emotion": y})
    plain, _ = MultiTaskLoss(("emotion",))(logits, {"emotion": y})
    ce = F.cross_entropy(logits["emotion"][:7], y[:7], reduction="none")
    assert torch.allclose(weighted, (w[y[:7]] * ce).sum() / w[y[:7]].sum())
    assert torch.allclose(plain, ce.mean()) and not torch.allclose(weighted, plain)
