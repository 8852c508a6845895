"""Gradient-similarity task weights of XTRA's cross-task finetuning (Xu et al. 2023, Sec. 3.2,
Eq. 1, 2 and Appendix B Eq. 4).

Finetuning minimises (Eq. 1)::

    L = L_ez(target) + sum_i eta_i * L_ez(offline task i)

and re-weights each offline task by how often its loss gradient points the same way as the
target's. Learner updates are split into cycles of ``T`` updates starting at ``start``
(cycle ``k`` begins at update ``start + k*T``). During the first ``N`` updates of a cycle
("measuring") the cosine between each task's flattened gradient and the target's is computed
(Eq. 2) and a counter ``s_i`` counts the updates with cosine > 0.1 (Eq. 4). At update
``start + k*T + N`` the counters become the new weights, fixed until the next rewrite:

* ``"paper"`` (Appendix B): ``eta_i = s_i / N``;
* ``"public"`` (github mlpc-ucsd/XTRA ``core/train.py``; counters start at 1):
  ``eta_i = round((s_i + 1) / (N + 1), 2)``.

Before the first rewrite every ``eta_i`` is 1. With the paper's numbers (start 10,000, T 5,000,
N 500) measuring happens at updates 10,000-10,499, 15,000-15,499, ... and the weights change at
10,500, 15,500, ...; because ``start`` is a multiple of ``T`` this equals the public code's
``step >= 10000 and step % 5000 < 500``. Here cycles are counted from ``start`` so a schedule
scaled to a smaller update budget keeps ``N`` measuring updates per cycle whatever ``start``.

Gradients follow the public code: one backward per task over all trainable parameters (a
parameter the loss does not reach contributes zeros), flattened and concatenated, each element
clamped to ``[-clamp, clamp]`` (the public code's ``max_grad_norm`` = 5) before the cosine.
These gradients only measure; the update itself is a separate backward of the combined loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rltransfer.errors import UserError

__all__ = [
    "EtaFormula",
    "TaskWeightError",
    "TaskWeightSchedule",
    "TaskWeights",
    "combined_loss",
    "flat_gradient",
    "gradient_cosine",
    "task_gradient_cosines",
    "task_weight",
]

EtaFormula = Literal["paper", "public"]
"""How counters become weights: ``"paper"`` ``s/N`` or ``"public"`` ``round((s+1)/(N+1), 2)``."""


class TaskWeightError(UserError):
    """A task-weight schedule, formula or saved state that cannot be used; the message names
    the field and the fix."""


@dataclass(frozen=True)
class TaskWeightSchedule:
    """When task weights are measured and rewritten, in learner updates.

    Attributes:
        start_updates: first measuring update (paper: 10,000). Weights stay 1 before
            ``start_updates + measure_updates``.
        cycle_updates: ``T``, updates per cycle (paper: 5,000).
        measure_updates: ``N``, measuring updates at the start of each cycle (paper: 500);
            ``1 <= N < T`` (with ``N = T`` no update would be left to use the weights).
        threshold: a cosine above this counts as a hit (paper: 0.1).
        clamp: each gradient element is clamped to ``[-clamp, clamp]`` before the cosine
            (public code: 5.0); ``math.inf`` disables clamping.
        formula: ``"paper"`` or ``"public"`` (see the module docstring).

    Raises:
        TaskWeightError: a count below its minimum, ``N >= T``, a non-positive clamp or an
            unknown formula.
    """

    start_updates: int = 10_000
    cycle_updates: int = 5_000
    measure_updates: int = 500
    threshold: float = 0.1
    clamp: float = 5.0
    formula: EtaFormula = "paper"

    def __post_init__(self) -> None:
        if self.start_updates < 0:
            raise TaskWeightError(
                f"start_updates must be >= 0, got {self.start_updates}")
        if not 1 <= self.measure_updates < self.cycle_updates:
            raise TaskWeightError(
                "need 1 <= measure_updates < cycle_updates, got "
                f"measure_updates={self.measure_updates}, cycle_updates={self.cycle_updates}")
        if not self.clamp > 0:
            raise TaskWeightError(f"clamp must be > 0 (math.inf: no clamping), got {self.clamp}")
        if self.formula not in ("paper", "public"):
            raise TaskWeightError(
                f"formula must be 'paper' or 'public', got {self.formula!r}")

    @classmethod
    def scaled(cls, total_updates: int, *, cycles: int = 18, measure_fraction: float = 0.1,
               start_fraction: float = 0.1, **kwargs: Any) -> TaskWeightSchedule:
        """A schedule scaled to a smaller update budget with the paper's ratios.

        The paper runs 100k updates with start 10k (10%), T = 5k (18 cycles after the start)
        and N = 500 (10% of T). ``scaled(total_updates)`` keeps those ratios:
        ``start = round(start_fraction * total)``, ``T = max(1, (total - start) // cycles)``,
        ``N = max(1, round(measure_fraction * T))``, then at least ``T = 2`` and at most
        ``N = T - 1`` so every cycle both measures and uses its weights (a budget under
        ``2 * cycles`` updates after the start gets fewer, 2-update cycles).
        ``scaled(100_000)`` gives the paper's 10,000 / 5,000 / 500.

        Raises:
            TaskWeightError: ``total_updates < 1``, ``cycles < 1`` or a fraction outside
                ``(0, 1]`` (``start_fraction`` in ``[0, 1)``).
        """
        if total_updates < 1 or cycles < 1:
            raise TaskWeightError(
                f"total_updates and cycles must be >= 1, got {total_updates}, {cycles}")
        if not 0 < measure_fraction <= 1 or not 0 <= start_fraction < 1:
            raise TaskWeightError(
                "need 0 < measure_fraction <= 1 and 0 <= start_fraction < 1, got "
                f"{measure_fraction}, {start_fraction}")
        start = round(start_fraction * total_updates)
        cycle = max(2, (total_updates - start) // cycles)
        measure = min(cycle - 1, max(1, round(measure_fraction * cycle)))
        return cls(start_updates=start, cycle_updates=cycle, measure_updates=measure,
                   **kwargs)

    def measures(self, update: int) -> bool:
        """True when update number ``update`` (0-based learner updates) is a measuring one:
        ``update >= start`` and ``(update - start) % T < N``."""
        return update >= self.start_updates and (
            (update - self.start_updates) % self.cycle_updates < self.measure_updates)

    def rewrites(self, update: int) -> bool:
        """True when the weights are rewritten just before update ``update``:
        ``update >= start + N`` and ``(update - start) % T == N``."""
        return update >= self.start_updates + self.measure_updates and (
            (update - self.start_updates) % self.cycle_updates == self.measure_updates)


def task_weight(hits: int | np.ndarray, num_measured: int,
                formula: EtaFormula = "paper") -> np.ndarray:
    """``eta`` from hit counters (Appendix B, Eq. 4; public code's variant).

    Args:
        hits: ``s_i``, updates with cosine above the threshold (scalar or ``int[m]``).
        num_measured: ``N``, updates measured (>= 1).
        formula: ``"paper"``: ``s / N``; ``"public"``: ``round((s + 1) / (N + 1), 2)``.

    Returns:
        ``float64[m]`` (or a 0-d array for a scalar ``hits``), in ``[0, 1]``.

    Raises:
        TaskWeightError: ``num_measured < 1``, hits outside ``[0, N]`` or an unknown formula.
    """
    s = np.asarray(hits, dtype=np.float64)
    if num_measured < 1:
        raise TaskWeightError(f"num_measured must be >= 1, got {num_measured}")
    if np.any(s < 0) or np.any(s > num_measured):
        raise TaskWeightError(f"hits must lie in [0, {num_measured}], got {hits}")
    if formula == "paper":
        return s / num_measured
    if formula == "public":
        return np.round((s + 1.0) / (num_measured + 1.0), 2)
    raise TaskWeightError(f"formula must be 'paper' or 'public', got {formula!r}")


def flat_gradient(loss: torch.Tensor, params: Sequence[torch.nn.Parameter], *,
                  clamp: float = math.inf, retain_graph: bool = True) -> torch.Tensor:
    """The gradient of a scalar ``loss`` over ``params``, flattened and concatenated.

    A parameter the loss does not reach contributes zeros (the public code's "missing grads
    as zeros"). Nothing is written to ``.grad``.

    Args:
        loss: scalar tensor.
        params: the parameters, in a fixed order (``P`` elements in all).
        clamp: each element is clamped to ``[-clamp, clamp]`` (``math.inf``: none).
        retain_graph: keep the graph for further backwards (the update's own backward).

    Returns:
        ``float32[P]`` (the parameters' dtype), detached.

    Raises:
        ValueError: ``loss`` is not a scalar or ``params`` is empty.
    """
    if loss.dim() != 0:
        raise ValueError(f"loss must be a scalar, got shape {tuple(loss.shape)}")
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass the trainable parameters")
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    flat = torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1)
        for g, p in zip(grads, params, strict=True)
    ]).detach()
    if math.isfinite(clamp):
        flat = flat.clamp(-clamp, clamp)
    return flat


def gradient_cosine(g_target: torch.Tensor, g_task: torch.Tensor, *,
                    clamp: float = math.inf) -> float:
    """Cosine similarity of two flattened gradients (Eq. 2), after clamping each element to
    ``[-clamp, clamp]``.

    Example (the clamp matters): ``g_T = [100, 4]``, ``g = [0, 1]`` give 0.040 raw and
    0.625 with ``clamp = 5`` (``g_T`` becomes ``[5, 4]``).

    Args:
        g_target, g_task: ``[P]`` tensors of equal size.
        clamp: elementwise clamp (``math.inf``: none).

    Returns:
        The cosine in ``[-1, 1]``; 0.0 when either (clamped) gradient is all zeros.

    Raises:
        ValueError: different sizes.
    """
    a, b = g_target.reshape(-1).double(), g_task.reshape(-1).double()
    if a.shape != b.shape:
        raise ValueError(f"gradients differ in size: {a.numel()} vs {b.numel()}")
    if math.isfinite(clamp):
        a, b = a.clamp(-clamp, clamp), b.clamp(-clamp, clamp)
    denom = float(a.norm() * b.norm())
    if denom == 0.0:
        return 0.0
    return float(torch.dot(a, b)) / denom


def task_gradient_cosines(target_loss: torch.Tensor, task_losses: Sequence[torch.Tensor],
                          params: Sequence[torch.nn.Parameter], *,
                          clamp: float = 5.0) -> np.ndarray:
    """Cosine between each offline task's loss gradient and the target's (Eq. 2), as the
    public code measures them: one backward per loss over ``params``, flattened, clamped.

    The graphs are retained so the caller can still backward the combined loss.

    Args:
        target_loss: scalar ``L_ez(target)``.
        task_losses: ``m`` scalars ``L_ez(task i)``.
        params: all trainable parameters (the public code: every optimizer parameter).
        clamp: elementwise clamp (public code: 5.0).

    Returns:
        ``float64[m]`` cosines.
    """
    g_target = flat_gradient(target_loss, params, clamp=clamp)
    return np.array([gradient_cosine(g_target, flat_gradient(loss, params, clamp=clamp))
                     for loss in task_losses], dtype=np.float64)


def combined_loss(target_loss: torch.Tensor, task_losses: Sequence[torch.Tensor],
                  eta: Sequence[float] | np.ndarray) -> torch.Tensor:
    """Eq. 1: ``L = L_target + sum_i eta_i * L_i``.

    A task with ``eta_i == 0`` is left out of the sum (not multiplied by 0), so its loss
    contributes exactly nothing to the gradient, even a non-finite one: the gradient equals
    the target-only gradient of the same forward pass.

    The public code instead scales each task's importance weights by ``eta_i`` inside one
    mean over the concatenated batch (effectively ``0.5 * (L_T + mean_i eta_i L_i)``); this
    function implements the paper's scale.

    Args:
        target_loss: scalar.
        task_losses: ``m`` scalars.
        eta: ``m`` non-negative weights.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: ``len(eta) != m`` or a negative / non-finite weight.
    """
    w = np.asarray(eta, dtype=np.float64).reshape(-1)
    if w.shape[0] != len(task_losses):
        raise ValueError(f"{len(task_losses)} task losses but {w.shape[0]} weights")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"task weights must be finite and >= 0, got {w.tolist()}")
    total = target_loss
    for weight, loss in zip(w.tolist(), task_losses, strict=True):
        if weight != 0.0:
            total = total + weight * loss
    return total


class TaskWeights:
    """The weights ``eta_i`` of ``m`` offline tasks over a run, with their counters.

    Per learner update ``u`` (0-based), in this order:

    1. ``eta = weights.begin_update(u)``: rewrites the weights if ``schedule.rewrites(u)``,
       then returns the weights to use in this update's loss.
    2. if ``weights.schedule.measures(u)``: compute the cosines
       (:func:`task_gradient_cosines`) and call ``weights.observe(u, cosines)``.

    Args:
        task_names: the ``m`` offline tasks (for metrics), unique.
        schedule: see :class:`TaskWeightSchedule`.

    Raises:
        TaskWeightError: no tasks or duplicate names.
    """

    def __init__(self, task_names: Iterable[str], schedule: TaskWeightSchedule) -> None:
        self.task_names = tuple(str(n) for n in task_names)
        if not self.task_names or len(set(self.task_names)) != len(self.task_names):
            raise TaskWeightError(
                f"task_names must be non-empty and unique, got {list(self.task_names)}")
        self.schedule = schedule
        m = len(self.task_names)
        self.eta = np.ones(m, dtype=np.float64)
        self.hits = np.zeros(m, dtype=np.int64)
        self.num_measured = 0

    def begin_update(self, update: int) -> np.ndarray:
        """Rewrite the weights if ``update`` is a rewrite point (``eta`` from the counters of
        the measuring window that just ended, counters reset), then return a copy of the
        weights for this update (``float64[m]``)."""
        if self.schedule.rewrites(update) and self.num_measured > 0:
            self.eta = task_weight(self.hits, self.num_measured, self.schedule.formula)
            self.hits[:] = 0
            self.num_measured = 0
        return self.eta.copy()

    def observe(self, update: int, cosines: Sequence[float] | np.ndarray) -> None:
        """Count the hits of one measuring update (Eq. 4: ``s_i += [cos_i > threshold]``).

        Raises:
            TaskWeightError: ``update`` is not a measuring update, or ``m`` cosines were not
                given.
        """
        if not self.schedule.measures(update):
            raise TaskWeightError(
                f"update {update} is not a measuring update of {self.schedule}")
        cos = np.asarray(cosines, dtype=np.float64).reshape(-1)
        if cos.shape[0] != len(self.task_names):
            raise TaskWeightError(
                f"{len(self.task_names)} tasks but {cos.shape[0]} cosines")
        self.hits += cos > self.schedule.threshold
        self.num_measured += 1

    def metrics(self) -> dict[str, float]:
        """``{"eta/<task>": eta_i}`` for the metrics log and TensorBoard."""
        return {f"eta/{name}": float(w) for name, w in zip(self.task_names, self.eta,
                                                            strict=True)}

    def state_tensors(self) -> dict[str, np.ndarray]:
        """``eta`` (``float64[m]``), ``hits`` (``int64[m]``), ``num_measured`` (``int64[1]``)
        for a checkpoint."""
        return {"eta": self.eta.copy(), "hits": self.hits.copy(),
                "num_measured": np.array([self.num_measured], dtype=np.int64)}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` output (numpy arrays or CPU torch tensors).

        Raises:
            TaskWeightError: missing keys or another number of tasks.
        """
        arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                  for k, v in tensors.items()}
        m = len(self.task_names)
        missing = {"eta", "hits", "num_measured"} - arrays.keys()
        if missing:
            raise TaskWeightError(f"task-weight state lacks {sorted(missing)}")
        if arrays["eta"].shape != (m,) or arrays["hits"].shape != (m,):
            raise TaskWeightError(
                f"task-weight state holds {arrays['eta'].shape[0]} tasks, this run has {m} "
                f"({list(self.task_names)})")
        self.eta = arrays["eta"].astype(np.float64).copy()
        self.hits = arrays["hits"].astype(np.int64).copy()
        self.num_measured = int(arrays["num_measured"].reshape(-1)[0])
