"""Tiny deterministic pixel environments for the pretraining tests (NEXT_STEP autoreset
vector envs, like ``make_env``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

MOVES = np.array([[0, 0], [-2, 0], [2, 0], [0, -2], [0, 2]])
"""Discrete SquareEnv moves (dy, dx): stay, up, down, left, right."""


class SquareEnv(gym.Env[np.ndarray, Any]):
    """A ``side`` x ``side`` white square on a ``size`` x ``size`` black torus; the action moves it.

    Discrete(5): moves by :data:`MOVES`. Box(-1, 1, (2,)): moves by ``round(3 * a)`` pixels
    (dy, dx). The inverse dynamics are identifiable from two consecutive frames (the torus
    has no walls), so a good model is far above chance.
    """

    def __init__(
        self, continuous: bool = False, episode_len: int = 1000, size: int = 20, side: int = 6
    ) -> None:
        self.size, self.side = size, side
        self.continuous = continuous
        self.episode_len = episode_len
        self.observation_space = gym.spaces.Box(0, 255, (1, self.size, self.size), np.uint8)
        self.action_space: gym.Space[Any] = (
            gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else gym.spaces.Discrete(5)
        )
        self.pos = np.zeros(2, dtype=np.int64)
        self.t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros((1, self.size, self.size), np.uint8)
        rows = (self.pos[0] + np.arange(self.side)) % self.size
        cols = (self.pos[1] + np.arange(self.side)) % self.size
        obs[0, rows[:, None], cols[None, :]] = 255
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = self.np_random.integers(0, self.size, size=2)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.continuous:
            move = np.rint(3 * np.asarray(action, dtype=np.float64)).astype(np.int64)
        else:
            move = MOVES[int(action)]
        self.pos = (self.pos + move) % self.size
        self.t += 1
        return self._obs(), 0.0, False, self.t >= self.episode_len, {}


class CounterEnv(gym.Env[np.ndarray, Any]):
    """Frames that say where they come from: every pixel of channel 0 is the number of steps
    since the last reset plus 1; channel 1 holds the env's id; channel 2 the reset count.
    Truncates after ``episode_len`` steps."""

    def __init__(self, env_id: int = 0, episode_len: int = 10_000) -> None:
        self.env_id = env_id
        self.episode_len = episode_len
        self.observation_space = gym.spaces.Box(0, 255, (3, 4, 4), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0
        self.resets = 0
        self.actions: list[int] = []

    def _obs(self) -> np.ndarray:
        obs = np.zeros((3, 4, 4), np.uint8)
        obs[0] = self.t + 1
        obs[1] = self.env_id
        obs[2] = self.resets
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.resets += 1
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        self.actions.append(int(action))
        return self._obs(), 0.0, False, self.t >= self.episode_len, {}


def vector_env(fns: list[Any]) -> SyncVectorEnv:
    """A NEXT_STEP-autoreset SyncVectorEnv of ``fns``."""
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)


def square_vector_env(
    num_envs: int, continuous: bool = False, seed: int = 0, size: int = 20, side: int = 6
) -> SyncVectorEnv:
    env = vector_env([lambda: SquareEnv(continuous, size=size, side=side) for _ in range(num_envs)])
    env.reset(seed=seed)
    return env


def counter_envs(env: SyncVectorEnv) -> list[CounterEnv]:
    """The CounterEnv instances inside ``env`` (typed access for the tests)."""
    envs = [e for e in env.envs if isinstance(e, CounterEnv)]
    assert len(envs) == env.num_envs
    return envs


def counter_vector_env(num_envs: int, episode_len: int = 10_000) -> SyncVectorEnv:
    return vector_env(
        [lambda i=i: CounterEnv(i, episode_len) for i in range(num_envs)]
    )
