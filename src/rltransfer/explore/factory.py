"""Build an :class:`~rltransfer.explore.base.Explorer` by name."""

from __future__ import annotations

import numpy as np

from rltransfer.errors import UserError
from rltransfer.explore.base import Explorer
from rltransfer.explore.greedy import EpsilonGreedy, EZGreedy
from rltransfer.explore.zeta import DEFAULT_MAX_LENGTH
from rltransfer.methods.behavior_transfer import BehaviorTransferExplorer

__all__ = ["EXPLORER_KINDS", "UnknownExplorerError", "make_explorer"]

EXPLORER_KINDS = ("epsilon_greedy", "ez_greedy", "behavior_transfer")


class UnknownExplorerError(UserError):
    """The explorer kind is not one of :data:`EXPLORER_KINDS`."""


def make_explorer(
    kind: str,
    *,
    num_env_actions: int,
    epsilon: float | np.ndarray,
    rng: np.random.Generator,
    epsilon_levy: float | np.ndarray = 0.0,
    flights: bool = True,
    extra_action: bool = True,
    mu: float = 2.0,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> Explorer:
    """Build an explorer.

    Args:
        kind: ``"epsilon_greedy"`` (:class:`EpsilonGreedy` over ``A``), ``"ez_greedy"``
            (:class:`EZGreedy`, ``epsilon`` starts repeats) or ``"behavior_transfer"``
            (:class:`BehaviorTransferExplorer`; ``epsilon_levy``, ``flights``,
            ``extra_action`` apply to it only).
        num_env_actions: ``|A|``.
        epsilon: scalar or ``float[B]``.
        rng: numpy random generator.
        epsilon_levy: BT flight-start probability.
        flights: BT flights on.
        extra_action: BT extra action ``a+`` on.
        mu: Zeta exponent of repeat / flight lengths.
        max_length: truncation of repeat / flight lengths, in env steps.

    Raises:
        UnknownExplorerError: for an unknown ``kind`` (lists the known ones).
    """
    if kind == "epsilon_greedy":
        return EpsilonGreedy(epsilon, num_env_actions, rng)
    if kind == "ez_greedy":
        return EZGreedy(epsilon, num_env_actions, rng, mu=mu, max_length=max_length)
    if kind == "behavior_transfer":
        return BehaviorTransferExplorer(
            epsilon,
            epsilon_levy,
            num_env_actions,
            rng,
            flights=flights,
            extra_action=extra_action,
            mu=mu,
            max_flight_length=max_length,
        )
    raise UnknownExplorerError(f"unknown explorer kind {kind!r}; choose one of {EXPLORER_KINDS}")
