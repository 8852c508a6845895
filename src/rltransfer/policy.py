"""The Policy seam: anything that maps a batch of observations to a batch of actions.

Behavior Transfer (Campos et al. 2021, Sec. 3) treats the pretrained policy as a black box,
"agnostic to how the pre-trained behavior is encoded". Everything that can act is a
:class:`Policy`: a trained agent, a checkpoint on disk
(:func:`rltransfer.agents.policy.load_policy`), a plain Python function
(:class:`CallablePolicy`), or a Stable-Baselines3 model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np


class SpaceMismatchError(ValueError):
    """A pretrained policy or network was made for other observation or action spaces."""


@runtime_checkable
class Policy(Protocol):
    """A batched, possibly recurrent policy.

    Attributes:
        num_actions: size of the discrete action set the policy acts in.
    """

    num_actions: int

    def reset(self, num_envs: int) -> Any:
        """Return the initial recurrent state for ``num_envs`` environments (or ``None``)."""
        ...

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """Choose actions.

        Args:
            obs: agent observations ``[B, ...]`` (stacked frames, ``uint8``).
            state: the recurrent state returned by :meth:`reset` or the previous call.
            first: ``bool[B]``, true where an episode just began (state is reset there).

        Returns:
            ``(actions, state)`` with ``actions`` ``int64[B]`` in ``[0, num_actions)``.
        """
        ...


class CallablePolicy:
    """Wrap a function ``fn(obs[B, ...]) -> actions[B]`` as a stateless :class:`Policy`.

    Raises:
        ValueError: at call time, if ``fn`` returns a wrong shape or out-of-range actions.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], num_actions: int) -> None:
        self.fn = fn
        self.num_actions = int(num_actions)

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        actions = np.asarray(self.fn(obs), dtype=np.int64).reshape(-1)
        if actions.shape[0] != obs.shape[0]:
            raise ValueError(
                f"policy function returned {actions.shape[0]} actions for {obs.shape[0]} envs"
            )
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(
                f"policy function returned actions outside [0, {self.num_actions}): "
                f"{actions.min()}..{actions.max()}"
            )
        return actions, None


class RandomPolicy:
    """Uniformly random actions; the usual zero-knowledge baseline."""

    def __init__(self, num_actions: int, seed: int = 0) -> None:
        self.num_actions = int(num_actions)
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        actions = self.rng.integers(0, self.num_actions, size=obs.shape[0], dtype=np.int64)
        return np.asarray(actions), None
