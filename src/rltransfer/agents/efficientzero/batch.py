"""The learner's batch: what replay + reanalysis (:class:`~rltransfer.agents.efficientzero.
reanalyse.Reanalyser`) produce and the learner (:class:`~rltransfer.agents.efficientzero.
learner.EfficientZeroLearner`) consumes: ``B`` sampled positions, each with ``K`` unroll steps
of actions and targets (EfficientZero, Ye et al. 2021, Sec. 4; MuZero's unrolled targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BatchError", "EZBatch"]


class BatchError(ValueError):
    """An :class:`EZBatch` has wrong shapes, dtypes or non-finite values."""


@dataclass
class EZBatch:
    """One learner batch (``B`` samples, ``K`` unroll steps, ``A`` actions, stacked
    observations ``(C*S, H, W)``)."""

    obs: torch.Tensor  # [B, C*S, H, W] uint8, stacked observation at t
    future_obs: torch.Tensor  # [B, K, C*S, H, W] uint8, stacked observations at t+1..t+K
    actions: torch.Tensor  # int64 [B, K], a_t .. a_{t+K-1}
    target_value_prefixes: torch.Tensor  # float32 [B, K], value-prefix targets for steps 1..K
    target_values: torch.Tensor  # float32 [B, K+1], scalar value targets for steps 0..K
    target_policies: torch.Tensor  # float32 [B, K+1, A]
    mask: torch.Tensor  # float32 [B, K+1], 1 where step k lies inside the episode
    weights: torch.Tensor  # float32 [B], importance-sampling weights
    indices: np.ndarray  # int64 [B], replay indices (for priority updates)

    def check(self, obs_shape: tuple[int, int, int], unroll_steps: int,
              num_actions: int) -> None:
        """Check the shapes above for ``K = unroll_steps``, ``A = num_actions`` and
        ``obs_shape``, integer actions, a non-empty batch and finite targets and weights.

        Raises:
            BatchError: every shape problem in one message, or the first non-finite field.
        """
        k, a = int(unroll_steps), int(num_actions)
        b = int(self.obs.shape[0]) if self.obs.ndim > 0 else -1
        expected = {
            "obs": (b, *obs_shape),
            "future_obs": (b, k, *obs_shape),
            "actions": (b, k),
            "target_value_prefixes": (b, k),
            "target_values": (b, k + 1),
            "target_policies": (b, k + 1, a),
            "mask": (b, k + 1),
            "weights": (b,),
        }
        problems = [
            f"{name} is {list(getattr(self, name).shape)}, expected {list(shape)}"
            for name, shape in expected.items() if tuple(getattr(self, name).shape) != shape
        ]
        if np.asarray(self.indices).shape != (b,):
            problems.append(f"indices is {list(np.asarray(self.indices).shape)}, expected [{b}]")
        if b < 1:
            problems.append("the batch is empty")
        if self.actions.dtype.is_floating_point:
            problems.append(f"actions must be integers, got {self.actions.dtype}")
        if problems:
            raise BatchError(
                f"EZBatch does not fit this learner (K={k}, A={a}, obs {list(obs_shape)}): "
                + "; ".join(problems)
            )
        for name in ("target_value_prefixes", "target_values", "target_policies", "mask",
                     "weights"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise BatchError(f"EZBatch.{name} contains NaN/inf; fix the target computation")
