"""Q-value heads.

:class:`DuelingHead` is the dueling architecture of Wang et al. 2016 ("Dueling Network
Architectures for Deep RL", Eq. 9): ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``, used by
R2D2 with 512-unit hidden layers. :class:`QHead` is the plain (non-dueling) alternative.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _check(in_dim: int, hidden: int, num_actions: int) -> None:
    if min(in_dim, hidden, num_actions) < 1:
        raise ValueError(
            f"head sizes must be positive, got in_dim={in_dim} hidden={hidden} "
            f"num_actions={num_actions}"
        )


class DuelingHead(nn.Module):
    """Dueling Q head: value and advantage MLPs (one hidden ReLU layer each).

    Args:
        in_dim: input width (the core's ``out_dim``).
        hidden: hidden width of both streams (R2D2: 512).
        num_actions: number of Q outputs (|A|, or |A|+1 with Behavior Transfer's a+).

    Forward:
        ``float32[B, in_dim]`` -> ``float32[B, num_actions]``,
        ``Q = V + A - mean(A)`` (Wang et al. 2016, Eq. 9).
    """

    def __init__(self, in_dim: int, hidden: int, num_actions: int) -> None:
        super().__init__()
        _check(in_dim, hidden, num_actions)
        self.num_actions = int(num_actions)
        self.value = _mlp(in_dim, hidden, 1)
        self.advantage = _mlp(in_dim, hidden, num_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adv = self.advantage(x)
        return self.value(x) + adv - adv.mean(dim=1, keepdim=True)


class QHead(nn.Module):
    """Plain Q head: ``Linear(in_dim, hidden) + ReLU + Linear(hidden, num_actions)``.

    Forward: ``float32[B, in_dim]`` -> ``float32[B, num_actions]``.
    """

    def __init__(self, in_dim: int, hidden: int, num_actions: int) -> None:
        super().__init__()
        _check(in_dim, hidden, num_actions)
        self.num_actions = int(num_actions)
        self.net = _mlp(in_dim, hidden, num_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
