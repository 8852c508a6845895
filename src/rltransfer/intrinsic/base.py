"""The intrinsic-reward seam used by reward-free pretraining (and NGU later).

An :class:`IntrinsicReward` scores transitions of B environments during acting
(:meth:`~IntrinsicReward.compute`), trains its own networks on batches of observations
(:meth:`~IntrinsicReward.update`, e.g. the next frames of replay samples) and saves its state
as plain tensors (nothing pickled) for checkpoints.

Observations here are **single frames** ``uint8[B, C, H, W]`` (the newest frame of the
agent's stack), as RND uses the last frame only (Burda et al. 2019).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["IntrinsicInputError", "IntrinsicReward", "check_frames"]


class IntrinsicInputError(ValueError):
    """Bad input to an intrinsic reward (shape, dtype, batch size)."""


@runtime_checkable
class IntrinsicReward(Protocol):
    """A per-step intrinsic reward for B environments."""

    def reset(self, done_mask: np.ndarray) -> None:
        """Forget per-episode state (e.g. NGU's episodic memory) where ``done_mask[B]``.
        RND's intrinsic returns are non-episodic and are kept."""
        ...

    def compute(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Reward of the transitions ``(obs, action, next_obs)``.

        Args:
            obs: ``uint8[B, C, H, W]`` newest frame before the step.
            action: ``int64[B]`` environment actions.
            next_obs: ``uint8[B, C, H, W]`` newest frame after the step.

        Returns:
            ``float32[B]`` intrinsic rewards.
        """
        ...

    def update(self, obs_batch: np.ndarray) -> dict[str, float]:
        """Train on ``uint8[N, C, H, W]`` observations; return scalar metrics by name."""
        ...

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """All state needed to resume, as named tensors."""
        ...

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors`."""
        ...


def check_frames(frames: np.ndarray, frame_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Check ``frames`` is ``[N, *frame_shape]``; return it as a numpy array.

    Raises:
        IntrinsicInputError: on a wrong rank or frame shape (the message names the fix: pass
            the newest frame only, not the stacked observation).
    """
    arr = np.asarray(frames)
    if arr.ndim != len(frame_shape) + 1 or tuple(arr.shape[1:]) != tuple(frame_shape):
        raise IntrinsicInputError(
            f"{name} must have shape [N, {', '.join(map(str, frame_shape))}] (single newest "
            f"frame, channels first), got {arr.shape}; pass the last frame of the stack only"
        )
    return arr
