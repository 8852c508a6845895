"""Evaluation episodes on the task reward, for any :class:`~rltransfer.policy.Policy`.

The same function scores a policy being trained, a finished run, and the zero-shot
performance of a pretrained policy on a task it never saw a reward for. Returns are sums of
``info["task_reward"]`` (the task's reward even in a reward-free environment), unclipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rltransfer.envs import env_spec, make_env
from rltransfer.policy import Policy, observe_step
from rltransfer.replay import FrameStacker


def evaluate_policy(
    policy: Policy,
    env_id: str,
    num_episodes: int,
    seed: int,
    task: str | None = None,
    frame_stack: int | None = None,
    num_envs: int = 8,
    max_episode_frames: int = 108_000,
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
        task: task variant whose reward is summed.
        frame_stack: frames per agent observation (default: the suite's).
        max_episode_frames: episode cap (Atari: emulator frames; others: env steps). Life
            loss never ends an evaluation episode.
        env_kwargs: further keyword arguments of :func:`rltransfer.envs.make_env` that must
            match training (e.g. ``frame_size=96, grayscale=False`` for EfficientZero on Atari,
            ``sticky_action_prob``).

    Returns:
        ``float64[num_episodes]`` undiscounted task returns.

    Raises:
        ValueError: ``num_episodes < 1``, or the policy's action count differs from the env's.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    n = min(num_envs, num_episodes)
    spec = env_spec(env_id)
    stack = frame_stack or spec.frame_stack
    envs = make_env(env_id, n, seed, task=task, max_episode_frames=max_episode_frames,
                    **dict(env_kwargs or {}))
    try:
        num_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]
        if policy.num_actions != num_actions:
            raise ValueError(
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
