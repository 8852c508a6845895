"""Behavior Transfer plumbing around the pretrained policy pi_p (Campos et al. 2021, Sec. 3).

BT treats the pretrained policy as a frozen black box mapping observations to actions. The
explorer (:class:`rltransfer.explore.BehaviorTransferExplorer`) decides *when* pi_p acts
(flights, extra action ``a+``); this module keeps pi_p running alongside the learner:

* :func:`validate_prior` checks that pi_p acts in the task's action set before training;
* :class:`PriorPolicyDriver` evaluates pi_p on every step for all B envs, carrying its
  recurrent state, hands ``prior_actions`` to the explorer, and after the env step tells
  pi_p the executed actions and the step's rewards (:meth:`PriorPolicyDriver.observe`), so
  a recurrent pi_p's previous-action input is the action that was really taken.

pi_p is any :class:`rltransfer.policy.Policy`: a checkpoint loaded with
:func:`rltransfer.agents.agent_policy.load_policy`, a :class:`rltransfer.policy.CallablePolicy`, a
Stable-Baselines3 model wrapped in :class:`rltransfer.sb3.SB3Policy`, or a custom object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rltransfer.policy import Policy, SpaceMismatchError, observe_step

__all__ = ["EpsilonPolicy", "PriorPolicyDriver", "SpaceMismatchError", "validate_prior",
           "with_epsilon"]


def validate_prior(
    policy: Policy,
    num_env_actions: int,
    obs_shape: tuple[int, ...] | None = None,
) -> None:
    """Check that a pretrained policy can act in the task.

    Args:
        policy: the pretrained policy pi_p (:class:`~rltransfer.policy.Policy`).
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
                "implement rltransfer.policy.Policy"
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
        policy: any :class:`~rltransfer.policy.Policy`.
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
        """Passed on to the wrapped policy (:func:`rltransfer.policy.observe_step`)."""
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
        policy: pi_p, a :class:`~rltransfer.policy.Policy` (frozen; never trained here).
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
        ``observe``, see :func:`rltransfer.policy.observe_step`).

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
