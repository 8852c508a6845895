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

from rltransfer.core.checkpoint_components import load_optimizer_state, optimizer_tensors

__all__ = [
    "IntrinsicInputError",
    "IntrinsicReward",
    "check_frames",
    "load_optimizer_state_tensors",
    "optimizer_state_tensors",
]


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


def _parameter_indices(optimizer: torch.optim.Optimizer) -> dict[int, str]:
    """``id(parameter) -> str(index)``, the index over all parameter groups in order."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {id(p): str(index) for index, p in enumerate(params)}


def optimizer_state_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optimizer."
) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state (e.g. Adam's ``exp_avg``, ``exp_avg_sq``,
    ``step``) as CPU tensors keyed ``<prefix><parameter index>.<field>``, the layout of the
    intrinsic rewards' checkpoints (written by
    :func:`rltransfer.core.checkpoint_components.optimizer_tensors`)."""
    return optimizer_tensors(optimizer, _parameter_indices(optimizer), prefix)


def load_optimizer_state_tensors(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    device: torch.device | str = "cpu",
    prefix: str = "optimizer.",
) -> None:
    """Restore :func:`optimizer_state_tensors` from ``tensors`` (keys without ``prefix`` are
    ignored; parameters without saved state start with none)."""
    saved: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix):].split(".", 1)
            saved.setdefault(index, {})[field] = value
    load_optimizer_state(optimizer, _parameter_indices(optimizer), saved, device)
