"""The SAC learner's input: observations and replay batches checked and moved to tensors.

A batch is what :meth:`rltransfer.replay.TransitionReplay.sample` returns for continuous
actions (``TransitionReplay(..., action_shape=(A,), action_dtype=np.float32)``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["BATCH_KEYS", "SACBatch", "batch_tensors", "obs_tensor"]

BATCH_KEYS: tuple[str, ...] = ("obs", "action", "next_obs", "n_step_return",
                               "bootstrap_discount")
"""The keys :meth:`~rltransfer.agents.sac.learner.SACAgent.update` reads from a batch."""


class SACBatch(NamedTuple):
    """One replay batch on the learner's device.

    Attributes:
        obs, next_obs: ``[B, *obs_shape]`` as stored (uint8 pixels or float states).
        action: float32 ``[B, A]`` in ``[-1, 1]``.
        n_step_return: float32 ``[B]``, the discounted sum of the n rewards.
        bootstrap_discount: float32 ``[B]``, ``gamma^n`` (0 at a termination).
    """

    obs: torch.Tensor
    action: torch.Tensor
    next_obs: torch.Tensor
    n_step_return: torch.Tensor
    bootstrap_discount: torch.Tensor


def obs_tensor(obs: Any, obs_shape: tuple[int, ...], device: torch.device, what: str
               ) -> torch.Tensor:
    """``obs`` (array or tensor) as a ``[B, *obs_shape]`` tensor on ``device``, dtype kept.

    Raises:
        ValueError: another shape; the message names ``what`` and the settings to check.
    """
    t = torch.as_tensor(np.asarray(obs) if not torch.is_tensor(obs) else obs)
    if t.dim() != len(obs_shape) + 1 or tuple(t.shape[1:]) != obs_shape:
        raise ValueError(
            f"{what} must be [B, {', '.join(map(str, obs_shape))}], got "
            f"{tuple(t.shape)}; check frame_stack / render_size / augmentation"
        )
    return t.to(device)


def batch_tensors(batch: dict[str, Any], obs_shape: tuple[int, ...], action_dim: int,
                  device: torch.device) -> SACBatch:
    """Check a replay batch (:data:`BATCH_KEYS`) and move it to ``device``.

    Raises:
        KeyError: a missing key.
        ValueError: observations of another shape, actions other than ``[B, action_dim]``,
            or returns / discounts with other than ``B`` entries.
    """
    for key in BATCH_KEYS:
        if key not in batch:
            raise KeyError(f"SAC update batch lacks {key!r} (use TransitionReplay.sample)")
    obs = obs_tensor(batch["obs"], obs_shape, device, "batch['obs']")
    next_obs = obs_tensor(batch["next_obs"], obs_shape, device, "batch['next_obs']")
    b = obs.shape[0]
    action = torch.as_tensor(np.asarray(batch["action"]), dtype=torch.float32)
    if tuple(action.shape) != (b, action_dim):
        raise ValueError(
            f"batch['action'] must be float [{b}, {action_dim}], got "
            f"{tuple(action.shape)}; build the replay with action_shape=({action_dim},)"
        )
    scalars = []
    for key in ("n_step_return", "bootstrap_discount"):
        t = torch.as_tensor(np.asarray(batch[key]), dtype=torch.float32).reshape(-1)
        if t.shape[0] != b:
            raise ValueError(f"batch[{key!r}] has {t.shape[0]} entries, obs has {b}")
        scalars.append(t.to(device))
    return SACBatch(obs, action.to(device), next_obs, scalars[0], scalars[1])
