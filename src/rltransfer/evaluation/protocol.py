"""Evaluation episodes on the task reward, for any :class:`~rltransfer.core.policy.Policy`
(discrete actions) or :class:`~rltransfer.core.policy.ContinuousPolicy` (Box actions).

The same function scores a policy being trained, a finished run, and the zero-shot
performance of a pretrained policy on a task it never saw a reward for. Returns are sums of
``info["task_reward"]`` (the task's reward even in a reward-free environment), unclipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from gymnasium.spaces import Box, Discrete
from gymnasium.vector import VectorEnv

from rltransfer.core.policy import (
    ContinuousPolicy,
    Policy,
    SpaceMismatchError,
    checked_box_actions,
    observe_step,
)
from rltransfer.envs import env_spec, make_env
from rltransfer.replay import FrameStacker

EVAL_ENV_OVERRIDES: Mapping[str, Any] = MappingProxyType({
    "terminal_on_life_loss": False,
    "reward_free": False,
})
"""The :func:`~rltransfer.envs.make_env` settings evaluation sets whatever training used:
a life loss never ends an evaluation episode (Atari training may end its episodes there, as
DQN / R2D2 / EfficientZero do; Machado et al. 2018 score whole games), and the env returns the
task reward (a reward-free pretraining run is still scored on its task's reward)."""

PROTOCOL_DIFFERENCES: tuple[str, ...] = (
    "terminal_on_life_loss=False: a life loss never ends an evaluation episode",
    "reward_free=False: the task reward is returned (evaluation sums info['task_reward'])",
    "no reward clipping: returns are sums of the unclipped info['task_reward'] (clipping, "
    "e.g. EfficientZero's clip_rewards, is applied by the learner, never by the env)",
)
"""Every deliberate difference between a run's training env and its evaluation env (the
first two are :data:`EVAL_ENV_OVERRIDES`; the third is learner-side). Everything else
(sticky actions, episode frame cap, frame size, grayscale, task, MiniGrid observability,
DMC action repeat, render size and distraction) is the training env's."""


def eval_env_kwargs(train_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation env's :func:`~rltransfer.envs.make_env` keyword arguments, from the
    training env's.

    The one place where training and evaluation envs may differ: every training loop builds
    its training env from ``train_kwargs`` and evaluates on ``eval_env_kwargs(train_kwargs)``,
    which is ``train_kwargs`` with :data:`EVAL_ENV_OVERRIDES` applied (life-loss terminals and
    reward-free off). Settings absent from ``train_kwargs`` stay absent, so ``make_env``'s
    suite default applies to both (e.g. ``sticky_action_prob`` unset: 0.25 on ALE v5 in both).

    Args:
        train_kwargs: keyword arguments of ``make_env`` after ``(env_id, num_envs, seed)``
            that built the training env (e.g. ``{"sticky_action_prob": 0.0,
            "terminal_on_life_loss": True, "max_episode_frames": 108_000}``).

    Returns:
        A new dict (``train_kwargs`` is not changed).

    Raises:
        TypeError: ``train_kwargs`` names ``env_id``, ``num_envs`` or ``seed`` (chosen by each
            loop, not env settings).
    """
    positional = {"env_id", "num_envs", "seed"} & set(train_kwargs)
    if positional:
        raise TypeError(f"train_kwargs must hold env settings only, not {sorted(positional)}")
    out = dict(train_kwargs)
    out.update(EVAL_ENV_OVERRIDES)
    return out


EnvBuilder = Callable[[int, int], VectorEnv]
"""``(num_envs, seed) -> VectorEnv`` building the evaluation envs (the env contract of
:func:`rltransfer.envs.make_env`: NEXT_STEP autoreset, ``info["task_reward"]``)."""


def evaluate_policy(
    policy: Policy | ContinuousPolicy,
    env_id: str,
    num_episodes: int,
    seed: int,
    task: str | None = None,
    frame_stack: int | None = None,
    num_envs: int = 8,
    max_episode_frames: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    make_envs: EnvBuilder | None = None,
) -> np.ndarray:
    """Run exactly ``num_episodes`` episodes and return their task returns.

    Episodes are spread over ``n = min(num_envs, num_episodes)`` parallel envs, env ``i``
    running episodes ``i, i + n, i + 2n, ...``, so the episodes counted are fixed in advance
    and the result does not favour short episodes. The envs are built with seed ``seed`` and
    reset once with ``seed``. Episode length is capped by the environment itself (MiniGrid's
    ``max_steps``, Atari's 108k frames, DMC's time limit).

    Discrete and continuous actions: on a ``Discrete`` action space ``policy`` is a
    :class:`~rltransfer.core.policy.Policy` (``num_actions`` must match) and is told the executed
    actions and rewards (:func:`~rltransfer.core.policy.observe_step`); on a ``Box`` action space
    it is a :class:`~rltransfer.core.policy.ContinuousPolicy` (``action_shape`` must match) whose
    actions are checked to lie in the env's bounds (:func:`~rltransfer.core.policy.
    checked_box_actions`).

    Args:
        policy: acts on stacked ``uint8[B, C*S, H, W]`` observations.
        env_id: environment id (see :func:`rltransfer.envs.make_env`); with ``make_envs``
            only used in messages and for the default ``frame_stack``.
        num_episodes: episodes to run (>= 1).
        seed: seed of the evaluation envs (use one distinct from training).
        task: task variant whose reward is summed (or ``env_kwargs["task"]``; None and absent:
            the env's first task).
        frame_stack: frames per agent observation (default: the suite's).
        num_envs: parallel envs (at most ``num_episodes`` are built).
        max_episode_frames: episode cap (Atari: emulator frames; others: env steps), or
            ``env_kwargs["max_episode_frames"]``; None and absent: 108,000. Life loss never
            ends an evaluation episode.
        env_kwargs: the training env's :func:`rltransfer.envs.make_env` settings, passed
            through :func:`eval_env_kwargs` here (so a run's training kwargs or their
            :func:`eval_env_kwargs` give the same env), e.g. ``sticky_action_prob``,
            ``frame_size=96, grayscale=False`` for EfficientZero on Atari.
        make_envs: builds the evaluation envs as ``make_envs(n, seed)`` instead of
            ``make_env(env_id, n, seed, **eval_env_kwargs(env_kwargs))`` (a caller's own env,
            e.g. a training loop's env factory already given :func:`eval_env_kwargs`).

    Returns:
        ``float64[num_episodes]`` undiscounted task returns.

    Raises:
        SpaceMismatchError: the policy's action count or action shape differs from the env's,
            or a discrete policy on continuous actions (or the reverse).
        ValueError: ``num_episodes < 1``; ``task`` / ``max_episode_frames`` given both as an
            argument and, with another value, in ``env_kwargs``; ``make_envs`` given with
            ``task`` / ``max_episode_frames`` / ``env_kwargs``; a continuous action outside
            the env's bounds (or NaN).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    n = min(num_envs, num_episodes)
    stack = frame_stack or env_spec(env_id).frame_stack
    if make_envs is not None:
        given = [name for name, value in (("task", task), ("env_kwargs", env_kwargs),
                                          ("max_episode_frames", max_episode_frames))
                 if value is not None]
        if given:
            raise ValueError(f"make_envs builds the evaluation env itself; {given} would be "
                             "ignored (give them to the env factory)")
        envs = make_envs(n, seed)
    else:
        settings = eval_env_kwargs(env_kwargs or {})
        for name, value in (("task", task), ("max_episode_frames", max_episode_frames)):
            if value is None:
                continue
            if name in settings and settings[name] != value:
                raise ValueError(f"{name}={value!r} conflicts with env_kwargs[{name!r}]="
                                 f"{settings[name]!r}")
            settings[name] = value
        settings.setdefault("max_episode_frames", 108_000)
        envs = make_env(env_id, n, seed, **settings)
    try:
        act = _actor(policy, envs.single_action_space, env_id, n)
        discrete = isinstance(envs.single_action_space, Discrete)
        # Env i runs episodes i, i + n, i + 2n, ... so exactly num_episodes are run.
        quota = np.array([len(range(i, num_episodes, n)) for i in range(n)])
        frame_shape = envs.single_observation_space.shape
        assert frame_shape is not None
        stacker = FrameStacker(n, tuple(frame_shape), stack)
        obs, _ = envs.reset(seed=seed)
        state = policy.reset(n)
        first = np.ones(n, dtype=bool)
        autoreset = np.zeros(n, dtype=bool)
        running = np.zeros(n)
        finished: list[float] = []
        counted = np.zeros(n, dtype=np.int64)
        while (counted < quota).any():
            stacked = stacker.push(obs, first)
            actions, state = act(stacked, state, first)
            obs, reward, terminated, truncated, info = envs.step(actions)
            if discrete:
                # A recurrent policy's next previous-action / reward inputs (no intrinsic
                # reward).
                state = observe_step(policy, state, actions, reward)
            active = ~autoreset & (counted < quota)
            running += np.where(active, np.asarray(info["task_reward"], dtype=np.float64), 0.0)
            done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
            for i in np.flatnonzero(done & active):
                finished.append(float(running[i]))
                counted[i] += 1
            running[done] = 0.0
            first = autoreset
            autoreset = done
        return np.asarray(finished[:num_episodes], dtype=np.float64)
    finally:
        envs.close()


def _actor(
    policy: Policy | ContinuousPolicy, space: Any, env_id: str, num_envs: int
) -> Callable[[np.ndarray, Any, np.ndarray], tuple[np.ndarray, Any]]:
    """``policy.act`` after checking that ``policy`` fits the action ``space``; on a ``Box``
    space the returned function also checks each batch of actions against the bounds."""
    if isinstance(space, Discrete):
        num_actions = getattr(policy, "num_actions", None)
        if num_actions is None:
            raise SpaceMismatchError(
                f"{env_id} has {int(space.n)} discrete actions but the policy has no "
                f"num_actions (a continuous policy with action_shape "
                f"{getattr(policy, 'action_shape', None)})"
            )
        if int(num_actions) != int(space.n):
            raise SpaceMismatchError(
                f"policy acts in {num_actions} actions but {env_id} has {int(space.n)}"
            )
        return policy.act
    if isinstance(space, Box):
        shape = getattr(policy, "action_shape", None)
        if shape is None:
            raise SpaceMismatchError(
                f"{env_id} has continuous Box actions of shape {space.shape} but the policy "
                f"has no action_shape (a discrete policy with num_actions "
                f"{getattr(policy, 'num_actions', None)})"
            )
        if tuple(shape) != tuple(space.shape):
            raise SpaceMismatchError(
                f"policy acts with actions of shape {tuple(shape)} but {env_id}'s actions "
                f"have shape {tuple(space.shape)}"
            )
        low = np.asarray(space.low, np.float32)
        high = np.asarray(space.high, np.float32)

        def act_box(obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
            actions, state = policy.act(obs, state, first)
            return checked_box_actions(actions, num_envs, low, high,
                                       f"policy {type(policy).__name__}"), state

        return act_box
    raise SpaceMismatchError(f"{env_id}: evaluation supports Discrete and Box action spaces, "
                             f"not {space}")
