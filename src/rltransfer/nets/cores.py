"""Cores: the part between the torso and the head (R2D2's LSTM; feedforward here).

Every core shares one interface so a recurrent core (R2D2's ``LSTM(512)``, Kapturowski et al.
2019, Sec. 2) replaces :class:`FeedforwardCore` without changing the agent:

``core(features [B, F], state) -> (out [B, out_dim], next_state)``, ``core.initial_state(B)``,
``core.out_dim``, ``core.is_recurrent``. The state is ``None`` for feedforward cores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FeedforwardCore(nn.Module):
    """``Linear(in_dim, hidden) + ReLU``, or the identity when ``hidden`` is ``None``.

    Args:
        in_dim: feature width from the torso.
        hidden: output width, or ``None`` for the identity (``out_dim = in_dim``).

    Forward:
        ``features`` ``float32[B, in_dim]``, ``state`` ignored (pass ``None``).
        Returns ``(float32[B, out_dim], None)``.

    Raises:
        ValueError: non-positive sizes; (forward) a feature width other than ``in_dim``.
    """

    is_recurrent = False

    def __init__(self, in_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        if in_dim < 1 or (hidden is not None and hidden < 1):
            raise ValueError(f"core sizes must be positive, got in_dim={in_dim} hidden={hidden}")
        self.in_dim = int(in_dim)
        self.out_dim = int(hidden) if hidden is not None else int(in_dim)
        self.net: nn.Module = (
            nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU()) if hidden is not None
            else nn.Identity()
        )

    def initial_state(self, batch_size: int) -> None:
        """The recurrent state at an episode start: ``None`` for a feedforward core."""
        return None

    def forward(self, features: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, None]:
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(
                f"core expects features [B, {self.in_dim}], got {list(features.shape)}"
            )
        return self.net(features), None
