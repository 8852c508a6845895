"""MinAtar suite (Young & Tian 2019, minatar>=1.0.15) as a gymnasium env with uint8 ``[C, 10, 10]``
observations.

A small `gymnasium.Env` around ``minatar.Environment`` is used instead of minatar's own
gymnasium registration so that observations are uint8 channels-first, seeding goes through
``reset(seed=...)`` and the sticky-action memory is cleared at every reset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rltransfer.envs.spec import minatar_game, require


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """One MinAtar game.

    Observation: uint8 ``[C, 10, 10]`` with values 0/1 (C = game channels: Breakout 4,
    Asterix 4, Freeway 7, Seaquest 10, SpaceInvaders 6). Actions: ``Discrete(n)``, the minimal
    action set when ``minimal_action_set`` (ids ``-v1``), else all 6 MinAtar actions (``-v0``).
    Reward: the game's reward (float). Sticky actions: with probability
    ``sticky_action_prob`` the previous action is executed instead (MinAtar default 0.1).
    Difficulty ramping is on, as in MinAtar's default.

    Raises:
        ImportError: minatar is not installed.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self, game: str, *, minimal_action_set: bool = True, sticky_action_prob: float = 0.1
    ) -> None:
        minatar = require("minatar")
        self.game = minatar.Environment(
            env_name=game, sticky_action_prob=float(sticky_action_prob), difficulty_ramping=True
        )
        if minimal_action_set:
            self._action_set = np.asarray(self.game.minimal_action_set(), dtype=np.int64)
        else:
            self._action_set = np.arange(self.game.num_actions(), dtype=np.int64)
        height, width, channels = self.game.state_shape()
        self.action_space = spaces.Discrete(len(self._action_set))
        self.observation_space = spaces.Box(
            0, 255, shape=(channels, height, width), dtype=np.uint8
        )

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(self.game.state(), (2, 0, 1)), dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new game; ``seed`` reseeds the game's random stream (spawns, sticky actions)."""
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(int(seed))
        self.game.reset()
        self.game.last_action = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Execute one action; returns ``(obs, reward, terminated, False, {})``."""
        reward, done = self.game.act(int(self._action_set[int(action)]))
        return self._obs(), float(reward), bool(done), False, {}


def minatar_env_fn(
    env_id: str, *, sticky_action_prob: float, max_episode_steps: int
) -> Callable[[], gym.Env[Any, Any]]:
    """Return a thunk building the MinAtar env of ``env_id`` with a ``max_episode_steps``
    time limit (truncation).

    Raises:
        UnknownEnvError: not a MinAtar id; ImportError: minatar is not installed.
    """
    game, minimal = minatar_game(env_id)
    require("minatar")

    def thunk() -> gym.Env[Any, Any]:
        env = MinAtarEnv(game, minimal_action_set=minimal, sticky_action_prob=sticky_action_prob)
        return gym.wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)

    return thunk
