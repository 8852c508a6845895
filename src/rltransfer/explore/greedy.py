"""epsilon-greedy and ez-greedy explorers (vectorised over B environments)."""

from __future__ import annotations

import numpy as np

from rltransfer.explore.base import (
    LengthSampler,
    Selection,
    check_prior,
    check_probability,
    check_q_first,
    epsilon_greedy_actions,
    per_env,
)
from rltransfer.explore.zeta import DEFAULT_MAX_LENGTH, sample_durations, sample_zeta

__all__ = ["EZGreedy", "EpsilonGreedy"]


class EpsilonGreedy:
    """epsilon-greedy over the agent's action set, optionally with BT's extra action ``a+``.

    With probability ``epsilon`` the agent action is uniform over all ``num_agent_actions``
    (``A+`` when ``extra_action``), else ``argmax_a Q(s, a)`` (first maximum on ties). If the
    chosen agent action is ``a+`` (index ``num_env_actions = num_agent_actions - 1``), the
    environment executes the pretrained policy's action ``prior_actions`` and ``extra`` is
    true (Campos et al. 2021, Sec. 3 "Extra action"; Algorithm 1 outside flights).

    Args:
        epsilon: exploration probability, a scalar or one value per env (``float[B]``, e.g.
            :func:`~rltransfer.explore.base.actor_epsilons`).
        num_agent_actions: ``|A|``, or ``|A| + 1`` when ``extra_action``.
        rng: numpy random generator (owned by the explorer from now on).
        extra_action: the last agent action is ``a+``.

    Raises:
        ValueError: on ``epsilon`` outside ``[0, 1]`` or too few actions; at ``select`` on
            a wrong ``q_values`` column count or missing ``prior_actions`` with ``extra_action``.
    """

    def __init__(
        self,
        epsilon: float | np.ndarray,
        num_agent_actions: int,
        rng: np.random.Generator,
        extra_action: bool = False,
    ) -> None:
        self.epsilon = check_probability("epsilon", epsilon)
        self.extra_action = bool(extra_action)
        minimum = 2 if self.extra_action else 1
        if num_agent_actions < minimum:
            raise ValueError(
                f"num_agent_actions must be >= {minimum} (extra_action={self.extra_action}), "
                f"got {num_agent_actions}"
            )
        self.num_agent_actions = int(num_agent_actions)
        self.num_env_actions = self.num_agent_actions - int(self.extra_action)
        self.rng = rng

    def reset(self, num_envs: int) -> None:
        """No per-env state; checks a per-env ``epsilon`` has ``num_envs`` entries."""
        per_env("epsilon", self.epsilon, num_envs)

    def select(
        self,
        q_values: np.ndarray,
        obs: np.ndarray,
        first: np.ndarray,
        prior_actions: np.ndarray | None,
    ) -> Selection:
        """Choose actions for B envs; see the class docstring. ``in_flight`` is all false."""
        q, _ = check_q_first(
            q_values, first, self.num_agent_actions, f"extra_action={self.extra_action}"
        )
        num_envs = q.shape[0]
        eps = per_env("epsilon", self.epsilon, num_envs)
        agent = epsilon_greedy_actions(q, eps, self.rng)
        if self.extra_action:
            prior = check_prior(prior_actions, num_envs, self.num_env_actions)
            extra = agent == self.num_env_actions
            env = np.where(extra, prior, agent)
        else:
            extra = np.zeros(num_envs, dtype=bool)
            env = agent
        return Selection(
            env_actions=env,
            agent_actions=agent,
            extra=extra,
            in_flight=np.zeros(num_envs, dtype=bool),
        )


class EZGreedy:
    """ez-greedy: temporally-extended epsilon-greedy (Dabney et al., ICLR 2021, Algorithm 1).

    Per env, when no repeat is running: with probability ``epsilon`` sample a duration
    ``n ~ Zeta(mu)`` (truncated at ``max_length``, see :mod:`rltransfer.explore.zeta`) and a
    uniform action ``w``, and execute ``w`` for ``n`` steps, the current step included;
    otherwise act greedily. Repeats end at episode start (``first``). ``in_flight`` is true
    on every step of a repeat.

    Args:
        epsilon: probability of starting a repeat, scalar or ``float[B]``.
        num_env_actions: ``|A|`` (``q_values`` must have this many columns).
        mu: Zeta exponent (2.0 in the paper).
        max_length: truncation of the repeat duration, in env steps.
        rng: numpy random generator.
        length_sampler: optional ``sampler(rng, count) -> int64[count]`` replacing the Zeta
            draw (tests, other duration distributions).

    Raises:
        ValueError: on bad probabilities / action counts, or a wrong ``q_values`` shape.
    """

    def __init__(
        self,
        epsilon: float | np.ndarray,
        num_env_actions: int,
        rng: np.random.Generator,
        mu: float = 2.0,
        max_length: int = DEFAULT_MAX_LENGTH,
        length_sampler: LengthSampler | None = None,
    ) -> None:
        self.epsilon = check_probability("epsilon", epsilon)
        if num_env_actions < 1:
            raise ValueError(f"num_env_actions must be >= 1, got {num_env_actions}")
        self.num_env_actions = int(num_env_actions)
        self.rng = rng
        self.mu = float(mu)
        self.max_length = int(max_length)
        sample_zeta(rng, 0, self.mu, self.max_length)  # validates mu / max_length now
        self.length_sampler = length_sampler
        self.remaining_steps = np.zeros(0, dtype=np.int64)
        self.repeat_actions = np.zeros(0, dtype=np.int64)

    def reset(self, num_envs: int) -> None:
        """Cancel all repeats; allocate state for ``num_envs`` envs."""
        per_env("epsilon", self.epsilon, num_envs)
        self.remaining_steps = np.zeros(num_envs, dtype=np.int64)
        self.repeat_actions = np.zeros(num_envs, dtype=np.int64)

    def select(
        self,
        q_values: np.ndarray,
        obs: np.ndarray,
        first: np.ndarray,
        prior_actions: np.ndarray | None,
    ) -> Selection:
        """Choose actions for B envs; ``prior_actions`` is ignored. ``extra`` is all false."""
        q, first_b = check_q_first(q_values, first, self.num_env_actions, "|A|, no extra action")
        num_envs = q.shape[0]
        if self.remaining_steps.shape[0] != num_envs:
            if self.remaining_steps.shape[0] == 0:
                self.reset(num_envs)
            else:
                raise ValueError(
                    f"explorer was reset for {self.remaining_steps.shape[0]} envs but got "
                    f"{num_envs}; call reset(num_envs) first"
                )
        eps = per_env("epsilon", self.epsilon, num_envs)
        remaining = self.remaining_steps
        remaining[first_b] = 0
        start = (remaining == 0) & (self.rng.random(num_envs) < eps)
        uniform = np.asarray(
            self.rng.integers(0, self.num_env_actions, size=num_envs), dtype=np.int64
        )
        num_start = int(start.sum())
        if num_start:
            remaining[start] = sample_durations(
                    self.rng, num_start, self.mu, self.max_length, self.length_sampler
                )
            self.repeat_actions[start] = uniform[start]
        in_flight = remaining > 0
        remaining[in_flight] -= 1
        greedy = np.asarray(np.argmax(q, axis=1), dtype=np.int64)
        actions = np.where(in_flight, self.repeat_actions, greedy)
        return Selection(
            env_actions=actions,
            agent_actions=actions.copy(),
            extra=np.zeros(num_envs, dtype=bool),
            in_flight=in_flight,
        )
