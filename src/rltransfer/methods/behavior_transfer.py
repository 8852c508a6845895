"""Behavior Transfer's experience-collection policy (Campos et al. 2021, Algorithm 1).

Behavior Transfer plumbing around the pretrained policy pi_p (Campos et al. 2021, Sec. 3).

BT treats the pretrained policy as a frozen black box mapping observations to actions. The
explorer (:class:`rltransfer.explore.BehaviorTransferExplorer`) decides *when* pi_p acts
(flights, extra action ``a+``); this module keeps pi_p running alongside the learner:

* :func:`validate_prior` checks that pi_p acts in the task's action set before training;
* :class:`PriorPolicyDriver` evaluates pi_p on every step for all B envs, carrying its
  recurrent state, hands ``prior_actions`` to the explorer, and after the env step tells
  pi_p the executed actions and the step's rewards (:meth:`PriorPolicyDriver.observe`), so
  a recurrent pi_p's previous-action input is the action that was really taken.

pi_p is any :class:`rltransfer.core.policy.Policy`: a checkpoint loaded with
:func:`rltransfer.agents.agent_policy.load_policy`, a
:class:`rltransfer.core.policy.CallablePolicy`, a
Stable-Baselines3 model wrapped in :class:`rltransfer.sb3.SB3Policy`, or a custom object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rltransfer.core.policy import Policy, SpaceMismatchError, observe_step
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

__all__ = ["BehaviorTransferExplorer", "EpsilonPolicy", "PriorPolicyDriver", "SpaceMismatchError",
"validate_prior", "with_epsilon"]


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




def validate_prior(
    policy: Policy,
    num_env_actions: int,
    obs_shape: tuple[int, ...] | None = None,
) -> None:
    """Check that a pretrained policy can act in the task.

    Args:
        policy: the pretrained policy pi_p (:class:`~rltransfer.core.policy.Policy`).
        num_env_actions: ``|A|`` of the task (``env.single_action_space.n``).
        obs_shape: the agent observation shape ``(C*S, H, W)`` of the task; compared with
            ``policy.obs_shape`` when both are known (``obs_shape`` is optional on policies).

    Raises:
        SpaceMismatchError: if ``policy.num_actions != num_env_actions`` or the observation
            shapes differ; the message names both sides.
        TypeError: if ``policy`` has no ``num_actions`` / ``act`` / ``reset``.
    """
    for attribute in ("num_actions", "act", "reset"):
        if not hasattr(policy, attribute):
            raise TypeError(
                f"pretrained policy {type(policy).__name__} has no `{attribute}`; it must "
                "implement rltransfer.core.policy.Policy"
            )
    if int(policy.num_actions) != int(num_env_actions):
        raise SpaceMismatchError(
            f"pretrained policy acts in {policy.num_actions} actions but the task has "
            f"{num_env_actions}; Behavior Transfer needs the same action set (pretrain on an "
            "env with the same action space, e.g. the full Atari action set on both sides)"
        )
    policy_obs_shape = getattr(policy, "obs_shape", None)
    if obs_shape is not None and policy_obs_shape is not None:
        if tuple(policy_obs_shape) != tuple(obs_shape):
            raise SpaceMismatchError(
                f"pretrained policy expects observations of shape {tuple(policy_obs_shape)} "
                f"but the task gives {tuple(obs_shape)}; use the same env suite and frame stack"
            )


class EpsilonPolicy:
    """A policy that takes a uniformly random action with probability ``epsilon`` per env and
    step, else the wrapped policy's (``TrainConfig.prior_epsilon`` for a pi_p object).

    The wrapped policy acts on every step (its state stays current) and is told the executed
    actions through :meth:`observe`. ``num_actions`` and ``obs_shape`` are the wrapped
    policy's.

    Args:
        policy: any :class:`~rltransfer.core.policy.Policy`.
        epsilon: probability in ``[0, 1]``.
        seed: seed of the random draws.

    Raises:
        ValueError: ``epsilon`` outside ``[0, 1]``.
    """

    def __init__(self, policy: Policy, epsilon: float, seed: int = 0) -> None:
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.policy = policy
        self.epsilon = float(epsilon)
        self.num_actions = int(policy.num_actions)
        self.rng = np.random.default_rng(seed)
        obs_shape = getattr(policy, "obs_shape", None)
        if obs_shape is not None:
            self.obs_shape = tuple(obs_shape)

    def reset(self, num_envs: int) -> Any:
        """The wrapped policy's initial state."""
        return self.policy.reset(num_envs)

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """The wrapped policy's actions ``int64[B]``, each replaced by a uniform one with
        probability ``epsilon``."""
        actions, state = self.policy.act(obs, state, first)
        b = np.asarray(obs).shape[0]
        explore = self.rng.random(b) < self.epsilon
        random_actions = self.rng.integers(0, self.num_actions, size=b)
        return np.where(explore, random_actions, np.asarray(actions)).astype(np.int64), state

    def observe(self, actions: np.ndarray, rewards_extrinsic: np.ndarray,
                rewards_intrinsic: np.ndarray, state: Any) -> Any:
        """Passed on to the wrapped policy (:func:`rltransfer.core.policy.observe_step`)."""
        return observe_step(self.policy, state, actions, rewards_extrinsic, rewards_intrinsic)


def with_epsilon(policy: Policy, epsilon: float, seed: int = 0) -> Policy:
    """``policy`` itself for ``epsilon == 0``, else an :class:`EpsilonPolicy` around it."""
    return policy if float(epsilon) == 0.0 else EpsilonPolicy(policy, epsilon, seed)


class PriorPolicyDriver:
    """Runs the pretrained policy pi_p on every step for B envs and returns its actions.

    pi_p must see every step, whether or not its action is executed, so that a recurrent
    pi_p keeps a consistent state; ``first`` resets its state where an episode began. Call
    :meth:`act` before the env step and :meth:`observe` after it.

    Args:
        policy: pi_p, a :class:`~rltransfer.core.policy.Policy` (frozen; never trained here).
        num_envs: B; the state is created now if given, else on :meth:`reset`.
        num_env_actions: ``|A|`` of the task; if given, :func:`validate_prior` runs now.

    Raises:
        SpaceMismatchError: from :func:`validate_prior`.
    """

    def __init__(
        self,
        policy: Policy,
        num_envs: int | None = None,
        num_env_actions: int | None = None,
    ) -> None:
        if num_env_actions is not None:
            validate_prior(policy, num_env_actions)
        self.policy = policy
        self.num_envs = 0
        self.state: Any = None
        if num_envs is not None:
            self.reset(num_envs)

    def reset(self, num_envs: int) -> None:
        """Create pi_p's initial recurrent state for ``num_envs`` envs."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.state = self.policy.reset(self.num_envs)

    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        """pi_p's actions for this step (pass them to the explorer as ``prior_actions``).

        Args:
            obs: stacked agent observation ``[B, C*S, H, W]`` (``uint8``).
            first: ``bool[B]``, true where an episode just began.

        Returns:
            ``int64[B]`` in ``[0, policy.num_actions)``.

        Raises:
            ValueError: if B differs from :meth:`reset`'s, or pi_p returns a wrong shape or
                out-of-range actions.
        """
        obs_arr = np.asarray(obs)
        if self.num_envs == 0:
            self.reset(obs_arr.shape[0])
        if obs_arr.shape[0] != self.num_envs:
            raise ValueError(
                f"obs has {obs_arr.shape[0]} envs but the driver was reset for {self.num_envs}; "
                "call reset(num_envs) first"
            )
        first_arr = np.asarray(first, dtype=bool)
        if first_arr.shape != (self.num_envs,):
            raise ValueError(f"first must be bool[{self.num_envs}], got shape {first_arr.shape}")
        actions, self.state = self.policy.act(obs_arr, self.state, first_arr)
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"pretrained policy returned actions of shape {actions.shape} and dtype "
                f"{actions.dtype}; expected int64[{self.num_envs}]"
            )
        num_actions = int(self.policy.num_actions)
        if actions.min() < 0 or actions.max() >= num_actions:
            raise ValueError(
                f"pretrained policy returned actions outside [0, {num_actions}): "
                f"{actions.min()}..{actions.max()}"
            )
        return actions.astype(np.int64, copy=False)

    def observe(
        self,
        actions: np.ndarray,
        rewards_extrinsic: np.ndarray | None = None,
        rewards_intrinsic: np.ndarray | None = None,
    ) -> None:
        """Tell pi_p what was executed on the step just taken (a no-op for a policy without
        ``observe``, see :func:`rltransfer.core.policy.observe_step`).

        Args:
            actions: ``int[B]`` the env actions executed (the learner's, a+'s resolution, or
                pi_p's own in a flight).
            rewards_extrinsic: ``float[B]`` the env's reward of the step (``None``: 0).
            rewards_intrinsic: ``float[B]`` the run's intrinsic reward of the step
                (``None``: 0).

        Raises:
            ValueError: if B differs from :meth:`reset`'s.
        """
        acts = np.asarray(actions)
        if acts.shape != (self.num_envs,):
            raise ValueError(
                f"observe got actions of shape {acts.shape}; expected int[{self.num_envs}]"
            )
        self.state = observe_step(self.policy, self.state, acts, rewards_extrinsic,
                                  rewards_intrinsic)
