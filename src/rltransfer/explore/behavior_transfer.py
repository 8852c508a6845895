"""Behavior Transfer's experience-collection policy (Campos et al. 2021, Algorithm 1)."""

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

__all__ = ["BehaviorTransferExplorer"]


class BehaviorTransferExplorer:
    """Algorithm 1 of Behavior Transfer, vectorised over B environments.

    Per env a flight counter ``n`` (0 at episode start)::

        if n == 0 and u < eps_levy: n ~ Zeta(mu)             # start a flight (if flights)
        if n > 0:  n -= 1; a ~ pi_p(s)                        # agent action a, extra False
        else:      a = Uniform(A+) w.p. eps else argmax_{A+} Q(s, .)
                   if a == a+: execute a' ~ pi_p(s), extra True

    ``pi_p(s)`` is supplied as ``prior_actions``. A flight of length ``n`` hands control to
    the pretrained policy for exactly ``n`` steps, counting the step it starts on, unless the
    episode ends first. Both parts are switchable (the paper's ablations): flights only
    (``extra_action=False``, ``q_values`` has ``|A|`` columns), extra action only
    (``flights=False``), both; with both off this is plain epsilon-greedy.

    The algorithm's ``random() <= eps`` is implemented as ``u < eps`` with ``u ~ U[0, 1)``,
    which has probability exactly ``eps``.

    Args:
        epsilon: probability of a uniform action over ``A+`` outside flights, scalar or
            ``float[B]`` (e.g. R2D2's :func:`~rltransfer.explore.base.actor_epsilons`).
        epsilon_levy: probability of starting a flight on a step with no flight running,
            scalar or ``float[B]``.
        num_env_actions: ``|A|``; the extra action ``a+`` has index ``num_env_actions``.
        rng: numpy random generator.
        flights: enable temporally-extended flights with ``pi_p``.
        extra_action: enable the extra action ``a+`` (``q_values`` has ``|A| + 1`` columns).
        mu: Zeta exponent of the flight length (2 in the paper).
        max_flight_length: truncation of the flight length, in env steps (see
            :mod:`rltransfer.explore.zeta`).
        length_sampler: optional ``sampler(rng, count) -> int64[count]`` replacing the Zeta
            draw (tests, other flight-length distributions).

    Raises:
        ValueError: on probabilities outside ``[0, 1]`` or ``num_env_actions < 1``; at
            ``select``, if the ``q_values`` column count does not match ``extra_action`` or
            ``prior_actions`` is missing / invalid while flights or the extra action are on.
    """

    def __init__(
        self,
        epsilon: float | np.ndarray,
        epsilon_levy: float | np.ndarray,
        num_env_actions: int,
        rng: np.random.Generator,
        flights: bool = True,
        extra_action: bool = True,
        mu: float = 2.0,
        max_flight_length: int = DEFAULT_MAX_LENGTH,
        length_sampler: LengthSampler | None = None,
    ) -> None:
        self.epsilon = check_probability("epsilon", epsilon)
        self.epsilon_levy = check_probability("epsilon_levy", epsilon_levy)
        if num_env_actions < 1:
            raise ValueError(f"num_env_actions must be >= 1, got {num_env_actions}")
        self.num_env_actions = int(num_env_actions)
        self.flights = bool(flights)
        self.extra_action = bool(extra_action)
        self.num_agent_actions = self.num_env_actions + int(self.extra_action)
        self.rng = rng
        self.mu = float(mu)
        self.max_flight_length = int(max_flight_length)
        sample_zeta(rng, 0, self.mu, self.max_flight_length)  # validates mu / max length now
        self.length_sampler = length_sampler
        self.flight_steps_left = np.zeros(0, dtype=np.int64)

    @property
    def uses_prior(self) -> bool:
        """Whether ``select`` needs ``prior_actions`` (flights or extra action on)."""
        return self.flights or self.extra_action

    def reset(self, num_envs: int) -> None:
        """End all flights; allocate the counters for ``num_envs`` envs."""
        per_env("epsilon", self.epsilon, num_envs)
        per_env("epsilon_levy", self.epsilon_levy, num_envs)
        self.flight_steps_left = np.zeros(num_envs, dtype=np.int64)

    def select(
        self,
        q_values: np.ndarray,
        obs: np.ndarray,
        first: np.ndarray,
        prior_actions: np.ndarray | None,
    ) -> Selection:
        """One step of Algorithm 1 for B envs; see the class docstring.

        Args:
            q_values: ``float[B, |A| + extra_action]``.
            obs: unused (``pi_p`` is evaluated by the caller into ``prior_actions``).
            first: ``bool[B]``, true where an episode just began (flights are cancelled).
            prior_actions: ``int64[B]`` in ``[0, |A|)``, ``pi_p(s)``; required when
                flights or the extra action are on.

        Returns:
            :class:`Selection`; inside a flight ``agent_actions == env_actions == prior``.
        """
        q, first_b = check_q_first(
            q_values, first, self.num_agent_actions, f"extra_action={self.extra_action}"
        )
        num_envs = q.shape[0]
        prior = None
        if self.uses_prior:
            prior = check_prior(prior_actions, num_envs, self.num_env_actions)
        if self.flight_steps_left.shape[0] != num_envs:
            if self.flight_steps_left.shape[0] == 0:
                self.reset(num_envs)
            else:
                raise ValueError(
                    f"explorer was reset for {self.flight_steps_left.shape[0]} envs but got "
                    f"{num_envs}; call reset(num_envs) first"
                )
        n = self.flight_steps_left
        n[first_b] = 0
        if self.flights:
            eps_levy = per_env("epsilon_levy", self.epsilon_levy, num_envs)
            start = (n == 0) & (self.rng.random(num_envs) < eps_levy)
            num_start = int(start.sum())
            if num_start:
                n[start] = sample_durations(
                    self.rng, num_start, self.mu, self.max_flight_length, self.length_sampler
                )
        in_flight = n > 0
        n[in_flight] -= 1

        eps = per_env("epsilon", self.epsilon, num_envs)
        agent = epsilon_greedy_actions(q, eps, self.rng)
        if self.extra_action:
            extra = (agent == self.num_env_actions) & ~in_flight
        else:
            extra = np.zeros(num_envs, dtype=bool)
        if prior is not None:
            agent = np.where(in_flight, prior, agent)
            env = np.where(extra, prior, agent)
        else:
            env = agent
        return Selection(env_actions=env, agent_actions=agent, extra=extra, in_flight=in_flight)
