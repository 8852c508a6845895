"""Wrappers shared by the suites: channels-first uint8 observations, task-reward logging with
the reward-free option, and seeding of the first reset."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper


class ChannelsFirstUint8(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """Per-env observation wrapper: ``[H, W, C]`` (or MiniGrid's ``[X, Y, C]``) -> uint8
    ``[C, H, W]``.

    Args:
        env: an env whose observation space is a 3-d Box with channels last.
        xy_order: True for MiniGrid encodings, which are indexed ``[x, y, c]``; the output is
            then ``[c, y, x]`` so that rows are y as in an image.

    Raises:
        ValueError: the observation space is not a 3-d Box.
    """

    def __init__(self, env: gym.Env[Any, Any], *, xy_order: bool = False) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 3:
            raise ValueError(f"ChannelsFirstUint8 needs a 3-d Box observation space, got {space}")
        self._axes = (2, 1, 0) if xy_order else (2, 0, 1)
        shape = tuple(int(space.shape[a]) for a in self._axes)
        self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Return the observation as a contiguous uint8 ``[C, H, W]`` array."""
        return np.ascontiguousarray(np.transpose(observation, self._axes), dtype=np.uint8)


class TaskRewardInfo(VectorWrapper):
    """Vector wrapper that writes the task reward to ``info["task_reward"]`` (float64 ``[B]``)
    and returns float64 rewards; with ``reward_free=True`` the returned reward is all zeros
    (the reward-free pretraining setting of Campos et al. 2021: the task reward is hidden from
    the learner but still logged).

    Reset infos also get ``task_reward`` (zeros) so the key is always present.
    """

    def __init__(self, env: VectorEnv, *, reward_free: bool) -> None:
        super().__init__(env)
        self.reward_free = bool(reward_free)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all envs; ``info["task_reward"]`` is zeros float64 ``[B]``."""
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["task_reward"] = np.zeros(self.num_envs, dtype=np.float64)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step all envs; see the class docstring for the reward and ``task_reward``."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        task_reward = np.asarray(reward, dtype=np.float64).reshape(self.num_envs)
        info = dict(info)
        info["task_reward"] = task_reward
        out_reward = np.zeros_like(task_reward) if self.reward_free else task_reward.copy()
        return (
            obs,
            out_reward,
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            info,
        )


class SeedOnFirstReset(VectorWrapper):
    """Vector wrapper that seeds env ``i`` with ``seed + i`` on the first reset when the caller
    passes no seed, and seeds the action space with ``seed``. Later unseeded resets continue
    the envs' own random streams. An explicit ``reset(seed=...)`` is always honoured."""

    def __init__(self, env: VectorEnv, seed: int) -> None:
        super().__init__(env)
        self._initial_seed: int | None = int(seed)
        self.env.action_space.seed(int(seed))
        self.env.single_action_space.seed(int(seed))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all envs, using the make-time seed the first time when ``seed`` is None."""
        if seed is None and self._initial_seed is not None:
            seed = self._initial_seed
        self._initial_seed = None
        return self.env.reset(seed=seed, options=options)
