"""The exploration seam: :class:`Explorer` turns Q-values into actions for B environments.

Contract (docs/architecture.md, "Exploration"): ``select(q_values, obs, first, prior_actions)``
returns a :class:`Selection` with what the environment executes (``env_actions``, in ``A``),
what the learner is credited with (``agent_actions``, in ``A+``), whether the extra action
``a+`` was chosen (``extra``) and whether the action came from a flight / repeat
(``in_flight``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from rltransfer.explore.zeta import LengthSampler

__all__ = [
    "Explorer",
    "ExplorerInputError",
    "LengthSampler",
    "Selection",
    "actor_epsilons",
]



class ExplorerInputError(ValueError):
    """Bad arguments to an explorer (shapes, dtypes, missing ``prior_actions``)."""


@dataclass
class Selection:
    """The actions chosen for one step of B environments.

    Attributes:
        env_actions: ``int64[B]`` in ``A``: what the environment executes.
        agent_actions: ``int64[B]`` in ``A+``: what the learner is credited with (equals
            ``num_env_actions`` where the extra action ``a+`` was chosen).
        extra: ``bool[B]``: the agent chose ``a+``; the step's return is the target for both
            ``Q(s, a+)`` and ``Q(s, env_actions)`` (Campos et al. 2021, Sec. 3, "Extra action").
        in_flight: ``bool[B]``: the action came from a flight (BT) or an action repeat
            (ez-greedy), including the step the flight / repeat started on.
    """

    env_actions: np.ndarray
    agent_actions: np.ndarray
    extra: np.ndarray
    in_flight: np.ndarray


@runtime_checkable
class Explorer(Protocol):
    """Behaviour policy over Q-values for B environments (docs/architecture.md)."""

    def reset(self, num_envs: int) -> None:
        """Clear all per-environment state (flight / repeat counters) for ``num_envs`` envs."""
        ...

    def select(
        self,
        q_values: np.ndarray,
        obs: np.ndarray,
        first: np.ndarray,
        prior_actions: np.ndarray | None,
    ) -> Selection:
        """Choose actions.

        Args:
            q_values: ``float[B, |A+|]`` (last column is ``a+`` when the extra action is on).
            obs: the agent observation ``[B, ...]`` (unused by the explorers here).
            first: ``bool[B]``, true where an episode just began.
            prior_actions: ``int64[B]`` in ``A``, the pretrained policy's actions for ``obs``
                (Behavior Transfer only), else ``None``.
        """
        ...


def actor_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Per-actor exploration rates of Ape-X / R2D2 (Kapturowski et al. 2019).

    ``eps_i = base^(1 + alpha * i / (N - 1))`` for ``i = 0..N-1``; ``N = 1`` gives ``[base]``.

    Args:
        num_actors: ``N >= 1`` (e.g. one "actor" per vectorised environment).
        base: 0.4 in R2D2.
        alpha: 7 in R2D2.

    Returns:
        ``float64[N]``, decreasing from ``base`` to ``base^(1 + alpha)``.

    Raises:
        ValueError: if ``num_actors < 1`` or ``base`` is not in ``(0, 1]``.
    """
    if int(num_actors) != num_actors or num_actors < 1:
        raise ValueError(f"num_actors must be an integer >= 1, got {num_actors!r}")
    if not 0.0 < base <= 1.0:
        raise ValueError(f"base epsilon must be in (0, 1], got {base!r}")
    if num_actors == 1:
        return np.array([base], dtype=np.float64)
    i = np.arange(num_actors, dtype=np.float64)
    return np.power(base, 1.0 + alpha * i / (num_actors - 1))


# ---------------------------------------------------------------------------------------------
# Shared helpers for the explorers in this package.


def check_probability(name: str, value: float | np.ndarray) -> np.ndarray:
    """Return ``value`` as a float64 array after checking it lies in ``[0, 1]``.

    Raises:
        ExplorerInputError: if any entry is outside ``[0, 1]`` or not finite.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ExplorerInputError(f"{name} must be a scalar or a 1-D per-env array, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ExplorerInputError(f"{name} must lie in [0, 1], got {value!r}")
    return arr


def per_env(name: str, arr: np.ndarray, num_envs: int) -> np.ndarray:
    """Broadcast a scalar or ``[B]`` probability to ``float64[num_envs]``.

    Raises:
        ExplorerInputError: if a 1-D array's length is not ``num_envs``.
    """
    if arr.ndim == 0:
        return np.full(num_envs, float(arr), dtype=np.float64)
    if arr.shape[0] != num_envs:
        raise ExplorerInputError(
            f"{name} has {arr.shape[0]} per-env entries but there are {num_envs} envs; "
            "pass a scalar or one value per environment"
        )
    return arr


def check_q_first(
    q_values: np.ndarray, first: np.ndarray, num_columns: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``q_values[B, num_columns]`` and ``first[B]``; return them as numpy arrays.

    Raises:
        ExplorerInputError: on wrong ranks, column count or batch size.
    """
    q = np.asarray(q_values)
    if q.ndim != 2:
        raise ExplorerInputError(f"q_values must be [B, num_actions], got shape {q.shape}")
    if q.shape[1] != num_columns:
        raise ExplorerInputError(
            f"q_values has {q.shape[1]} columns but this explorer expects {num_columns} "
            f"({what}); check num_env_actions and the extra_action setting of agent and explorer"
        )
    f = np.asarray(first)
    if f.shape != (q.shape[0],):
        raise ExplorerInputError(f"first must be bool[{q.shape[0]}], got shape {f.shape}")
    return q, f.astype(bool, copy=False)


def check_prior(
    prior_actions: np.ndarray | None, num_envs: int, num_env_actions: int
) -> np.ndarray:
    """Validate the pretrained policy's actions: ``int[B]`` in ``[0, num_env_actions)``.

    Raises:
        ExplorerInputError: if missing, of the wrong shape or out of range.
    """
    if prior_actions is None:
        raise ExplorerInputError(
            "prior_actions is required when flights or the extra action are on; pass the "
            "pretrained policy's actions (e.g. from transfer.behavior.PriorPolicyDriver)"
        )
    p = np.asarray(prior_actions)
    if p.shape != (num_envs,):
        raise ExplorerInputError(f"prior_actions must be int64[{num_envs}], got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise ExplorerInputError(f"prior_actions must be integers, got dtype {p.dtype}")
    if num_envs and (p.min() < 0 or p.max() >= num_env_actions):
        raise ExplorerInputError(
            f"prior_actions must lie in [0, {num_env_actions}), got {p.min()}..{p.max()}"
        )
    return p.astype(np.int64, copy=False)


def epsilon_greedy_actions(
    q: np.ndarray, epsilon: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Uniform over the ``q.shape[1]`` columns with prob ``epsilon[i]``, else argmax (first max).

    Returns:
        ``int64[B]``. Draws exactly ``2 * B`` random numbers per call.
    """
    num_envs, num_columns = q.shape
    explore = rng.random(num_envs) < epsilon
    uniform = rng.integers(0, num_columns, size=num_envs, dtype=np.int64)
    greedy = np.asarray(np.argmax(q, axis=1), dtype=np.int64)
    return np.where(explore, uniform, greedy)
