"""Evaluation episodes on the task reward, for any :class:`~rltransfer.policy.Policy`.

The same function scores a policy being trained, a finished run, and the zero-shot
performance of a pretrained policy on a task it never saw a reward for. Returns are sums of
``info["task_reward"]`` (the task's reward even in a reward-free environment), unclipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from rltransfer.envs import env_spec, make_env
from rltransfer.policy import Policy, SpaceMismatchError, observe_step
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


def evaluate_policy(
    policy: Policy,
    env_id: str,
    num_episodes: int,
    seed: int,
    task: str | None = None,
    frame_stack: int | None = None,
    num_envs: int = 8,
    max_episode_frames: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Run exactly ``num_episodes`` episodes and return their task returns.

    Episodes are spread over ``num_envs`` parallel envs, env ``i`` running episodes
    ``i, i + n, i + 2n, ...``, so the episodes counted are fixed in advance and the result does
    not favour short episodes. Episode length is capped by the environment itself (MiniGrid's
    ``max_steps``, Atari's 108k frames).

    Args:
        policy: acts on stacked ``uint8[B, C*S, H, W]`` observations.
        env_id: environment id (see :func:`rltransfer.envs.make_env`).
        num_episodes: episodes to run (>= 1).
        seed: seed of the evaluation envs (use one distinct from training).
        task: task variant whose reward is summed (or ``env_kwargs["task"]``; None and absent:
            the env's first task).
        frame_stack: frames per agent observation (default: the suite's).
        max_episode_frames: episode cap (Atari: emulator frames; others: env steps), or
            ``env_kwargs["max_episode_frames"]``; None and absent: 108,000. Life loss never
            ends an evaluation episode.
        env_kwargs: the training env's :func:`rltransfer.envs.make_env` settings, passed
            through :func:`eval_env_kwargs` here (so a run's training kwargs or their
            :func:`eval_env_kwargs` give the same env), e.g. ``sticky_action_prob``,
            ``frame_size=96, grayscale=False`` for EfficientZero on Atari.

    Returns:
        ``float64[num_episodes]`` undiscounted task returns.

    Raises:
        SpaceMismatchError: the policy's action count differs from the env's.
        ValueError: ``num_episodes < 1``, or ``task`` / ``max_episode_frames`` given both as
            an argument and, with another value, in ``env_kwargs``.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    settings = eval_env_kwargs(env_kwargs or {})
    for name, value in (("task", task), ("max_episode_frames", max_episode_frames)):
        if value is None:
            continue
        if name in settings and settings[name] != value:
            raise ValueError(f"{name}={value!r} conflicts with env_kwargs[{name!r}]="
                             f"{settings[name]!r}")
        settings[name] = value
    settings.setdefault("max_episode_frames", 108_000)
    n = min(num_envs, num_episodes)
    spec = env_spec(env_id)
    stack = frame_stack or spec.frame_stack
    envs = make_env(env_id, n, seed, **settings)
    try:
        num_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]
        if policy.num_actions != num_actions:
            raise SpaceMismatchError(
                f"policy acts in {policy.num_actions} actions but {env_id} has {num_actions}"
            )
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
            actions, state = policy.act(stacked, state, first)
            obs, reward, terminated, truncated, info = envs.step(actions)
            # A recurrent policy's next previous-action / reward inputs (no intrinsic reward).
            state = observe_step(policy, state, actions, reward)
            active = ~autoreset & (counted < quota)
            running += np.where(active, np.asarray(info["task_reward"], dtype=np.float64), 0.0)
            done = terminated | truncated
            for i in np.flatnonzero(done & active):
                finished.append(float(running[i]))
                counted[i] += 1
            running[done] = 0.0
            first = autoreset
            autoreset = done
        return np.asarray(finished[:num_episodes], dtype=np.float64)
    finally:
        envs.close()
