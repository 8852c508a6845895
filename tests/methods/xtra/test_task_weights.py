"""XTRA's gradient-similarity task weights: formulas, schedule, clamping, Eq. 1 (hand-computed
values from issue 12)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
import torch

from rltransfer.errors import UserError
from rltransfer.methods.xtra.task_weights import (
    EtaFormula,
    TaskWeightError,
    TaskWeights,
    TaskWeightSchedule,
    combined_loss,
    flat_gradient,
    gradient_cosine,
    task_gradient_cosines,
    task_weight,
)

COSINES = [0.2, 0.05, 0.11, -0.3, 0.1]  # 2 hits above 0.1 (0.1 itself is not above)


@pytest.mark.parametrize(("formula", "eta"), [("paper", 0.4), ("public", 0.5)])
def test_five_measured_cosines_give_the_papers_and_the_public_codes_eta(
        formula: EtaFormula, eta: float) -> None:
    assert task_weight(2, 5, formula) == pytest.approx(eta)
    weights = TaskWeights(["a"], TaskWeightSchedule(
        start_updates=0, cycle_updates=10, measure_updates=5, formula=formula))
    for u, cos in enumerate(COSINES):
        assert weights.begin_update(u) == pytest.approx([1.0])
        weights.observe(u, [cos])
    assert weights.hits.tolist() == [2]
    assert weights.begin_update(5) == pytest.approx([eta])
    assert weights.metrics() == {"eta/a": pytest.approx(eta)}


def test_public_formula_rounds_to_two_decimals() -> None:
    # (1 + 1) / (7 + 1) = 0.25 exactly; (2 + 1) / (7 + 1) = 0.375 -> 0.38 (numpy rounds
    # half to even on the binary value 0.375 -> 0.38)
    assert task_weight(np.array([1, 2, 0]), 7, "public").tolist() == [0.25, 0.38, 0.12]
    assert task_weight(np.array([0, 7]), 7, "paper").tolist() == [0.0, 1.0]


def test_schedule_measures_and_rewrites_at_the_papers_updates() -> None:
    s = TaskWeightSchedule(start_updates=10_000, cycle_updates=5_000, measure_updates=500)
    assert [s.measures(u) for u in (10_000, 10_499, 15_000)] == [True, True, True]
    assert [s.measures(u) for u in (9_999, 10_500, 14_999)] == [False, False, False]
    assert [u for u in range(0, 21_000) if s.rewrites(u)] == [10_500, 15_500, 20_500]
    assert TaskWeightSchedule.scaled(100_000) == s


def test_scaled_schedule_rewrites_even_on_tiny_budgets() -> None:
    # 20 updates, start 2, 18 cycles: (20 - 2) // 18 = 1 -> raised to T = 2, N = 1, so the
    # weights are rewritten every other update from update 3 (a 1-update cycle never would be).
    s = TaskWeightSchedule.scaled(20)
    assert (s.start_updates, s.cycle_updates, s.measure_updates) == (2, 2, 1)
    assert [u for u in range(20) if s.rewrites(u)] == [3, 5, 7, 9, 11, 13, 15, 17, 19]
    # 2,250 updates (xtra-minatar's finetuning): start 225, T = 112, N = 11.
    s = TaskWeightSchedule.scaled(2_250)
    assert (s.start_updates, s.cycle_updates, s.measure_updates) == (225, 112, 11)


def test_eta_changes_exactly_at_10500_and_15500() -> None:
    s = TaskWeightSchedule(start_updates=10_000, cycle_updates=5_000, measure_updates=500)
    weights = TaskWeights(["a", "b"], s)
    history = {}
    for u in range(9_000, 16_000):
        history[u] = weights.begin_update(u)
        if s.measures(u):
            first_cycle = u < 15_000
            # a: every other update a hit in the first window, none in the second; b: always.
            a = 0.5 if (first_cycle and u % 2 == 0) else -0.5
            weights.observe(u, [a, 0.9])
    changes = [u for u in range(9_001, 16_000)
               if not np.array_equal(history[u], history[u - 1])]
    assert changes == [10_500, 15_500]
    assert history[10_499].tolist() == [1.0, 1.0]
    assert history[10_500].tolist() == [0.5, 1.0]
    assert history[15_500].tolist() == [0.0, 1.0]


def test_clamping_changes_the_cosine() -> None:
    g_target, g_task = torch.tensor([100.0, 4.0]), torch.tensor([0.0, 1.0])
    assert gradient_cosine(g_target, g_task) == pytest.approx(4 / math.sqrt(10_016))
    assert round(gradient_cosine(g_target, g_task), 3) == 0.040
    assert gradient_cosine(g_target, g_task, clamp=5.0) == pytest.approx(4 / math.sqrt(41))
    assert round(gradient_cosine(g_target, g_task, clamp=5.0), 3) == 0.625
    assert gradient_cosine(torch.zeros(2), g_task) == 0.0


def test_cosines_of_real_losses_use_clamped_flat_gradients() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    unused = torch.nn.Parameter(torch.ones(3))
    target = 100.0 * w[0] + 4.0 * w[1]  # gradient [100, 4]
    task = 1.0 * w[1]  # gradient [0, 1]
    g = flat_gradient(target, [w, unused])
    assert g.tolist() == [100.0, 4.0, 0.0, 0.0, 0.0]  # unreached parameter: zeros
    assert flat_gradient(target, [w], clamp=5.0).tolist() == [5.0, 4.0]
    cos = task_gradient_cosines(target, [task, -task], [w, unused], clamp=5.0)
    assert cos == pytest.approx([4 / math.sqrt(41), -4 / math.sqrt(41)])
    assert w.grad is None  # measuring writes no .grad
    with pytest.raises(ValueError, match="scalar"):
        flat_gradient(torch.stack([target, task]), [w])


def _net_and_losses() -> tuple[torch.nn.Module, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 1))
    x = torch.randn(12, 4)
    out = net(x).squeeze(-1)  # one forward pass over target + 2 tasks' samples
    target = out[:4].pow(2).mean()
    tasks = [(out[4:8] - 1).pow(2).mean(), out[8:].abs().mean() * float("nan")]
    return net, target, tasks


def test_zero_weights_give_exactly_the_target_only_gradient() -> None:
    net, target, tasks = _net_and_losses()
    params = list(net.parameters())
    expected = torch.autograd.grad(target, params, retain_graph=True)
    combined_loss(target, tasks, [0.0, 0.0]).backward()
    for p, g in zip(params, expected, strict=True):
        assert p.grad is not None
        assert torch.equal(p.grad, g)  # exactly, even with a NaN task loss


def test_combined_loss_is_eq1() -> None:
    _, target, tasks = _net_and_losses()
    total = combined_loss(target, tasks[:1], np.array([0.25]))
    assert total.item() == pytest.approx(target.item() + 0.25 * tasks[0].item())
    with pytest.raises(ValueError, match="2 task losses but 1 weights"):
        combined_loss(target, tasks, [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        combined_loss(target, tasks[:1], [-1.0])


def test_state_round_trip_and_errors() -> None:
    s = TaskWeightSchedule(start_updates=0, cycle_updates=4, measure_updates=2)
    a = TaskWeights(["x", "y"], s)
    a.observe(0, [0.5, 0.0])
    b = TaskWeights(["x", "y"], s)
    b.load_state_tensors({k: torch.from_numpy(v) for k, v in a.state_tensors().items()})
    assert (b.hits.tolist(), b.num_measured, b.eta.tolist()) == ([1, 0], 1, [1.0, 1.0])
    with pytest.raises(TaskWeightError, match="holds 2 tasks, this run has 1"):
        TaskWeights(["x"], s).load_state_tensors(a.state_tensors())
    with pytest.raises(TaskWeightError, match="not a measuring update"):
        a.observe(2, [0.0, 0.0])
    with pytest.raises(TaskWeightError, match="2 tasks but 1 cosines"):
        a.observe(1, [0.0])
    with pytest.raises(UserError, match="measure_updates < cycle_updates"):
        TaskWeightSchedule(cycle_updates=10, measure_updates=11)
    with pytest.raises(UserError, match="measure_updates < cycle_updates"):
        TaskWeightSchedule(cycle_updates=10, measure_updates=10)  # would never rewrite
    with pytest.raises(TaskWeightError, match="formula"):
        TaskWeightSchedule(formula=cast(Any, "mean"))
    with pytest.raises(TaskWeightError, match="unique"):
        TaskWeights(["x", "x"], s)
