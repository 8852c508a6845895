"""MiniGrid suite: grid-encoding observations and object-event task variants.

Observation: the (object, colour, state) encoding of the grid as uint8 ``[3, H, W]``
(MiniGrid's ``Grid.encode``; indices are at most 10). ``full_obs=True`` uses the fully
observable grid (minigrid's ``FullyObsWrapper``, whose agent cell holds the agent's direction
in the state channel), ``full_obs=False`` the agent's egocentric ``7x7`` view
(``ImgObsWrapper``). The mission string is dropped.

Task variants (one environment, several reward functions, so that a task-agnostic pretrained
policy can be transferred to several tasks, as in Behavior Transfer, Campos et al. 2021):

* ``"goal"`` (default): the env's own reward, ``1 - 0.9 * steps / max_steps`` on reaching the goal.
* ``"key"``: reward 1 and termination on the step the agent picks up a key.
* ``"door"``: reward 1 and termination on the step a closed door becomes open.

In the ``key`` and ``door`` variants every other reward is removed (the episode still ends if
the agent reaches the goal, with reward 0). Events are read from the env state
(``env.unwrapped.carrying``, the doors' ``is_open``), never from the reward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rltransfer.envs.spec import MINIGRID_TASKS, EnvOptionError, _unknown, require
from rltransfer.envs.wrappers import ChannelsFirstUint8

_TASK_OBJECT = {"key": "Key", "door": "Door"}


def _grid_object_types(unwrapped: Any) -> set[str]:
    return {type(obj).__name__ for obj in unwrapped.grid.grid if obj is not None}


def _make_base(env_id: str) -> gym.Env[Any, Any]:
    require("minigrid")
    try:
        return gym.make(env_id)
    except gym.error.Error as err:
        raise _unknown(env_id, f"not a registered MiniGrid env: {err}") from err


@functools.lru_cache(maxsize=64)
def minigrid_available_tasks(env_id: str) -> tuple[str, ...]:
    """Task variants available in ``env_id``: ``"goal"`` always, ``"key"`` / ``"door"`` when the
    grid after ``reset(seed=0)`` holds a key / door.

    Raises:
        UnknownEnvError: not a registered MiniGrid id.
        ImportError: minigrid is not installed.
    """
    env = _make_base(env_id)
    try:
        env.reset(seed=0)
        present = _grid_object_types(env.unwrapped)
    finally:
        env.close()
    return tuple(t for t in MINIGRID_TASKS if t == "goal" or _TASK_OBJECT[t] in present)


class MiniGridEventTask(gym.Wrapper[Any, Any, Any, Any]):
    """Replace a MiniGrid env's reward with an event reward: 1 and ``terminated=True`` on the
    step the event first happens, 0 otherwise (the env's own reward is discarded).

    Args:
        env: a MiniGrid env (any wrapper stack around a ``MiniGridEnv``).
        event: ``"key"`` (the agent starts carrying a key) or ``"door"`` (a door that was
            closed after the previous step is open now; a door already open at reset does
            not count).

    Raises:
        ValueError: ``event`` is neither ``"key"`` nor ``"door"``.
    """

    def __init__(self, env: gym.Env[Any, Any], event: str) -> None:
        super().__init__(env)
        if event not in _TASK_OBJECT:
            raise ValueError(f"event must be 'key' or 'door', got {event!r}")
        self.event = event
        self._doors: list[Any] = []
        self._door_open = np.zeros(0, dtype=bool)
        self._had_key = False

    def _carrying_key(self) -> bool:
        carrying = self.env.unwrapped.carrying  # type: ignore[attr-defined]
        return carrying is not None and type(carrying).__name__ == "Key"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env and record the doors / carried object the events are measured from."""
        obs, info = self.env.reset(seed=seed, options=options)
        grid = self.env.unwrapped.grid  # type: ignore[attr-defined]
        self._doors = [o for o in grid.grid if o is not None and type(o).__name__ == "Door"]
        self._door_open = np.array([d.is_open for d in self._doors], dtype=bool)
        self._had_key = self._carrying_key()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; reward 1.0 and terminated on the event, else reward 0.0."""
        obs, _, terminated, truncated, info = self.env.step(action)
        if self.event == "key":
            has_key = self._carrying_key()
            fired = has_key and not self._had_key
            self._had_key = has_key
        else:
            now_open = np.array([d.is_open for d in self._doors], dtype=bool)
            fired = bool(np.any(now_open & ~self._door_open))
            self._door_open = now_open
        return obs, 1.0 if fired else 0.0, bool(terminated or fired), bool(truncated), info


_EMPTY_CELL = (1, 0, 0)  # OBJECT_TO_IDX["empty"], colour 0, state 0 (minigrid Grid.encode)
_AGENT_OBJECT_IDX = 10  # OBJECT_TO_IDX["agent"]
_RED_COLOUR_IDX = 0  # COLOR_TO_IDX["red"], the colour FullyObsWrapper gives the agent


class FullGridEncoding(gym.Wrapper[np.ndarray, Any, Any, Any]):
    """Fully observable grid encoding as uint8 ``[3, H, W]`` (row = y, column = x).

    Same values as minigrid's ``FullyObsWrapper`` image (``Grid.encode()`` with the agent's
    cell set to ``(agent, red, direction)``), transposed to channels first. For speed the
    wrapped env's egocentric ``gen_obs`` (rotations and visibility of the 7x7 view, about two
    thirds of a step's cost) is replaced by a stub returning a blank (all-zero) view, since
    its output is discarded here.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        u = env.unwrapped
        u.gen_obs = self._skip_egocentric_obs  # type: ignore[attr-defined]
        height, width = int(u.height), int(u.width)  # type: ignore[attr-defined]
        view = int(u.agent_view_size)  # type: ignore[attr-defined]
        self._view_shape = (view, view, 3)
        self.observation_space = spaces.Box(0, 255, shape=(3, height, width), dtype=np.uint8)

    def _skip_egocentric_obs(self) -> dict[str, Any]:
        u: Any = self.env.unwrapped
        blank = np.zeros(self._view_shape, dtype=np.uint8)
        return {"image": blank, "direction": u.agent_dir, "mission": u.mission}

    def _encode(self) -> np.ndarray:
        u: Any = self.env.unwrapped
        cells = [_EMPTY_CELL if obj is None else obj.encode() for obj in u.grid.grid]
        grid = np.asarray(cells, dtype=np.uint8).reshape(u.height, u.width, 3)
        x, y = u.agent_pos
        grid[y, x] = (_AGENT_OBJECT_IDX, _RED_COLOUR_IDX, u.agent_dir)
        return np.ascontiguousarray(grid.transpose(2, 0, 1))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset and return the full grid encoding."""
        _, info = self.env.reset(seed=seed, options=options)
        return self._encode(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step and return the full grid encoding."""
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._encode(), reward, terminated, truncated, info


def minigrid_env_fn(
    env_id: str, *, task: str, full_obs: bool, max_episode_steps: int
) -> Callable[[], gym.Env[Any, Any]]:
    """Return a thunk building one wrapped MiniGrid env: task variant, observation encoding
    (uint8 ``[3, H, W]``), and a time limit of ``max_episode_steps`` (the env's own
    ``max_steps`` truncation still applies).

    Raises:
        UnknownEnvError, ImportError: see `minigrid_available_tasks`.
    """
    require("minigrid")
    from minigrid.wrappers import ImgObsWrapper

    def thunk() -> gym.Env[Any, Any]:
        env: gym.Env[Any, Any] = _make_base(env_id)
        if task != "goal":
            env = MiniGridEventTask(env, task)
        if full_obs:
            env = FullGridEncoding(env)
        else:
            env = ChannelsFirstUint8(ImgObsWrapper(env), xy_order=True)
        return gym.wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)

    return thunk


def check_minigrid_task(env_id: str, task: str | None) -> str:
    """Validate ``task`` for ``env_id`` and return its canonical name (None -> ``"goal"``).

    Raises:
        EnvOptionError: unknown task name, or the env has no key / door for that task.
    """
    name = "goal" if task is None else task
    if name not in MINIGRID_TASKS:
        raise EnvOptionError(
            f"Unknown task {task!r} for {env_id!r}; valid MiniGrid tasks are {MINIGRID_TASKS}"
        )
    available = minigrid_available_tasks(env_id)
    if name not in available:
        raise EnvOptionError(
            f"Task {name!r} needs a {_TASK_OBJECT[name].lower()} in the grid but {env_id!r} has "
            f"none; tasks available for this env: {available} (try 'MiniGrid-DoorKey-5x5-v0')"
        )
    return name
