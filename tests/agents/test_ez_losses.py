"""EfficientZero's loss terms as pure functions (agents/efficientzero/losses.py): hand
values of each term, the EZ Eq. 5 weights (Ye et al. 2021), and the two gradient-scale
modes."""

from __future__ import annotations

import math

import pytest
import torch

from rltransfer.agents.efficientzero.config import EfficientZeroConfig
from rltransfer.agents.efficientzero.losses import (
    LossWeights,
    UnrollLosses,
    categorical_cross_entropy,
    consistency_loss,
    negative_cosine,
    policy_loss,
    scale_gradient,
    value_loss,
    value_prefix_loss,
    weighted_loss,
)


def test_weights_are_ez_eq5_and_the_config_passes_its_own() -> None:
    w = LossWeights()
    assert (w.value_prefix, w.policy, w.value, w.consistency) == (1.0, 1.0, 0.25, 2.0)
    assert EfficientZeroConfig().loss_weights == w
    custom = EfficientZeroConfig(value_loss_coef=0.5, consistency_loss_coef=0.0)
    assert custom.loss_weights == LossWeights(value=0.5, consistency=0.0)


def test_cross_entropy_terms_hand_values() -> None:
    logits = torch.zeros(2, 4)  # uniform: CE against any distribution is log 4
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    expected = torch.full((2,), math.log(4))
    for term in (categorical_cross_entropy, value_loss, value_prefix_loss):
        out = term(logits, target)
        assert out.shape == (2,)
        torch.testing.assert_close(out, expected)
    # CE(p, one-hot(0)) with p = log([0.5, 0.25, 0.25]): -log 0.5
    peaked = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    torch.testing.assert_close(categorical_cross_entropy(peaked, torch.tensor([[1.0, 0, 0]])),
                               torch.tensor([math.log(2)]))
    masked = policy_loss(logits, target, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(masked, torch.tensor([math.log(4), 0.0]))


def test_scale_gradient_and_negative_cosine_hand_values() -> None:
    x = torch.tensor([2.0, -3.0], requires_grad=True)
    y = scale_gradient(x, 0.5)
    assert y.tolist() == [2.0, -3.0]
    (y * torch.tensor([1.0, 4.0])).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.5, 2.0]
    out = negative_cosine(torch.tensor([[1.0, 0.0], [3.0, 0.0]]),
                          torch.tensor([[1.0, 1.0], [-2.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([-1 / math.sqrt(2), 1.0]))


def test_consistency_loss_is_masked_negative_cosine() -> None:
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    target = torch.tensor([[5.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    out = consistency_loss(pred, target, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 0.0]))


def _constant_terms(k: int, b: int = 2) -> UnrollLosses:
    def full(v: float) -> torch.Tensor:
        return torch.full((b,), v)

    return UnrollLosses(value=[full(1.0)] * (k + 1), policy=[full(2.0)] * (k + 1),
                        value_prefix=[full(3.0)] * k, consistency=[full(-1.0)] * k)


def test_weighted_loss_and_gradient_scale_modes_hand_computed() -> None:
    terms = _constant_terms(k=2)
    w = LossWeights()
    # step 0: 0.25 * 1 + 1 * 2 = 2.25; each of steps 1, 2: 2.25 + 1 * 3 + 2 * (-1) = 3.25
    torch.testing.assert_close(terms.per_sample(0, 0, w), torch.full((2,), 2.25))
    torch.testing.assert_close(terms.per_sample(1, 2, w), torch.full((2,), 6.5))
    importance = torch.tensor([1.0, 0.0])
    loss, objective = weighted_loss(terms, importance, w, "efficientzero")
    assert loss.item() == pytest.approx((2.25 + 6.5) / 2)  # mean over B = 2
    assert objective.item() == pytest.approx(loss.item() / 2)  # whole loss / K
    loss_mz, objective_mz = weighted_loss(terms, importance, w, "muzero")
    assert loss_mz.item() == pytest.approx(loss.item())  # the reported loss is unscaled
    assert objective_mz.item() == pytest.approx((2.25 + 6.5 / 2) / 2)  # recurrent / K only
    with pytest.raises(ValueError, match="gradient_scale_mode"):
        weighted_loss(terms, importance, w, "other")


def test_summaries_sum_steps_then_average_the_batch() -> None:
    terms = _constant_terms(k=3)
    terms.value[0] = torch.tensor([0.0, 2.0])  # batch mean 1, as the others
    assert terms.summaries() == {"value_prefix_loss": pytest.approx(9.0),
                                 "policy_loss": pytest.approx(8.0),
                                 "value_loss": pytest.approx(4.0),
                                 "consistency_loss": pytest.approx(-3.0)}
