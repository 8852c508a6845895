"""Constant intrinsic reward: the "constant reward" pretraining baseline.

Behavior Transfer (Campos et al. 2021) compares reward-free pretraining objectives; a constant
per-step reward (``c > 0``) makes every step equally valuable, so the pretrained policy is
biased towards long episodes (survival) rather than novelty.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ConstantReward"]


class ConstantReward:
    """Returns ``value`` for every transition; has no networks to train.

    Args:
        value: the per-step reward (default 1.0).
    """

    def __init__(self, value: float = 1.0) -> None:
        if not np.isfinite(value):
            raise ValueError(f"constant reward must be finite, got {value!r}")
        self.value = float(value)

    def reset(self, done_mask: np.ndarray) -> None:
        """No per-episode state."""

    def compute(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``float32[B]`` filled with ``value``, ``B = next_obs.shape[0]``."""
        return np.full(np.asarray(next_obs).shape[0], self.value, dtype=np.float32)

    def update(self, obs_batch: np.ndarray) -> dict[str, float]:
        """Nothing to train; returns ``{}``."""
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``{"value": float64 scalar}``."""
        return {"value": torch.tensor(self.value, dtype=torch.float64)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore ``value``."""
        self.value = float(tensors["value"].item())
