"""The Policy seam: anything that maps a batch of observations to a batch of actions.

Behavior Transfer (Campos et al. 2021, Sec. 3) treats the pretrained policy as a black box,
"agnostic to how the pre-trained behavior is encoded". Everything that can act is a
:class:`Policy`: a trained agent, a checkpoint on disk
(:func:`rltransfer.agents.agent_policy.load_policy`), a plain Python function
(:class:`CallablePolicy`), or a Stable-Baselines3 model the user loaded
(:class:`rltransfer.sb3.SB3Policy`).

A recurrent policy (R2D2's LSTM takes the previous action and rewards, Kapturowski et al.
2019) must also learn what was *executed*, which is not always what it proposed: as BT's
pi_p it proposes an action on every step, but the learner's action is executed on most of
them. The optional :meth:`ObservingPolicy.observe` receives, after each env step, the
executed actions and the step's rewards; callers go through :func:`observe_step`, which
leaves a policy without ``observe`` (a stateless one, or a custom one written before
``observe`` existed) untouched.

A policy for continuous (Box) actions, such as pixel SAC's actor, is a
:class:`ContinuousPolicy`: the same ``reset`` / ``act`` with ``action_shape`` in place of
``num_actions``, returning float actions already in the env's bounds. The evaluation protocol
(:func:`rltransfer.evaluation.protocol.evaluate_policy`) accepts both kinds and checks
continuous actions with :func:`checked_box_actions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rltransfer.errors import UserError


class SpaceMismatchError(UserError):
    """A pretrained policy or network was made for other observation or action spaces."""


@runtime_checkable
class Policy(Protocol):
    """A batched, possibly recurrent policy.

    Attributes:
        num_actions: size of the discrete action set the policy acts in.

    A policy may also define ``observe`` (see :class:`ObservingPolicy`); it is optional.
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


@runtime_checkable
class ContinuousPolicy(Protocol):
    """A batched, possibly recurrent policy over a continuous (gymnasium ``Box``) action space.

    Attributes:
        action_shape: shape of one action, equal to the env's ``single_action_space.shape``
            (e.g. ``(6,)`` on DMC walker).

    Its actions are in the env's own units: a policy whose actor outputs ``[-1, 1]`` maps them
    to the env's ``[low, high]`` itself (pixel SAC: :class:`rltransfer.agents.sac.train.SACPolicy`).
    Unlike a discrete :class:`Policy` it is never told the executed actions (``observe`` is
    not called on it).
    """

    action_shape: tuple[int, ...]

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
            ``(actions, state)`` with ``actions`` float ``[B, *action_shape]`` inside the env's
            ``[low, high]`` bounds.
        """
        ...


@runtime_checkable
class ObservingPolicy(Policy, Protocol):
    """A :class:`Policy` that is told what happened after each step it acted on."""

    def observe(
        self,
        actions: np.ndarray,
        rewards_extrinsic: np.ndarray,
        rewards_intrinsic: np.ndarray,
        state: Any,
    ) -> Any:
        """Record the step just taken; called after every env step, after :meth:`act`.

        Args:
            actions: ``int64[B]`` the actions the envs executed this step (the policy's own
                where it was followed, another's elsewhere).
            rewards_extrinsic: ``float[B]`` the env's reward of this step (0 in a reward-free
                env).
            rewards_intrinsic: ``float[B]`` the intrinsic reward of this step (0 without one).
            state: the state :meth:`act` returned for this step.

        Returns:
            The state to pass to the next :meth:`act` (where the next step is an episode's
            first, :meth:`act` resets it anyway).
        """
        ...


def observe_step(
    policy: Any,
    state: Any,
    actions: np.ndarray,
    rewards_extrinsic: np.ndarray | None = None,
    rewards_intrinsic: np.ndarray | None = None,
) -> Any:
    """Tell ``policy`` the executed ``actions`` and the step's rewards, if it listens.

    Args:
        policy: any :class:`Policy`; one without ``observe`` gets nothing.
        state: the state its :meth:`Policy.act` returned for this step.
        actions: ``int[B]`` executed actions.
        rewards_extrinsic, rewards_intrinsic: ``float[B]`` rewards of this step (``None``: 0).

    Returns:
        The policy's next state (``state`` unchanged for a policy without ``observe``).
    """
    observe = getattr(policy, "observe", None)
    if observe is None:
        return state
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    b = acts.shape[0]

    def rewards(r: np.ndarray | None) -> np.ndarray:
        out = np.zeros(b, np.float32) if r is None else np.asarray(r, np.float32).reshape(-1)
        if out.shape != (b,):
            raise ValueError(f"rewards must be float[{b}] like the actions, got {out.shape}")
        return out

    return observe(acts, rewards(rewards_extrinsic), rewards(rewards_intrinsic), state)


def checked_actions(actions: Any, num_envs: int, num_actions: int, source: str) -> np.ndarray:
    """``actions`` as ``int64[num_envs]``, checked to lie in ``[0, num_actions)``.

    Args:
        actions: array-like of any shape holding ``num_envs`` actions.
        num_envs: expected batch size ``B``.
        num_actions: size of the action set.
        source: who produced the actions, for the error message.

    Raises:
        ValueError: not exactly ``num_envs`` actions, or an action out of range.
    """
    out = np.asarray(actions).reshape(-1).astype(np.int64)
    if out.shape[0] != num_envs:
        raise ValueError(f"{source} returned {out.shape[0]} actions for {num_envs} envs")
    if out.size and (out.min() < 0 or out.max() >= num_actions):
        raise ValueError(
            f"{source} returned actions outside [0, {num_actions}): {out.min()}..{out.max()}"
        )
    return out


def checked_box_actions(
    actions: Any, num_envs: int, low: np.ndarray, high: np.ndarray, source: str
) -> np.ndarray:
    """``actions`` as ``float32[num_envs, *low.shape]``, checked to lie in ``[low, high]``.

    The continuous counterpart of :func:`checked_actions`: an env would silently clip (DMC)
    or misbehave on out-of-range actions, so they are refused instead.

    Args:
        actions: array-like holding ``num_envs * low.size`` numbers (``[B, *shape]``, or
            ``[B, prod(shape)]``).
        num_envs: expected batch size ``B``.
        low, high: the env's ``Box`` bounds, both of the action's shape.
        source: who produced the actions, for the error message.

    Raises:
        ValueError: wrong number of actions, a NaN / infinite action, or one outside
            ``[low, high]`` (the message names the first such env and action dimension).
    """
    low = np.asarray(low, np.float32)
    high = np.asarray(high, np.float32)
    arr = np.asarray(actions, dtype=np.float32)
    if arr.size != num_envs * low.size or (arr.ndim and arr.shape[0] != num_envs):
        raise ValueError(f"{source} returned actions of shape {arr.shape} for {num_envs} envs "
                         f"with actions of shape {low.shape}")
    out = arr.reshape((num_envs, *low.shape))
    bad = ~np.isfinite(out) | (out < low) | (out > high)
    if bad.any():
        env, *dim = (int(i) for i in np.argwhere(bad)[0])
        where = tuple(dim)
        raise ValueError(
            f"{source} returned action {float(out[(env, *where)])!r} for env {env}, dimension "
            f"{where}, outside the env's bounds [{float(low[where])}, {float(high[where])}] "
            f"(continuous actions must be in the env's units; map [-1, 1] actions with e.g. "
            f"rltransfer.agents.sac.train.to_env_action)"
        )
    return out


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
        return checked_actions(self.fn(obs), obs.shape[0], self.num_actions,
                               "policy function"), None

    def observe(self, actions: np.ndarray, rewards_extrinsic: np.ndarray,
                rewards_intrinsic: np.ndarray, state: Any) -> Any:
        """Stateless: nothing to record; returns ``state``."""
        return state


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

    def observe(self, actions: np.ndarray, rewards_extrinsic: np.ndarray,
                rewards_intrinsic: np.ndarray, state: Any) -> Any:
        """Stateless: nothing to record; returns ``state``."""
        return state
