"""MiniGrid task variants fire exactly on their events (state-driven, scripted actions)."""

from __future__ import annotations

import numpy as np
import pytest

from rltransfer.envs import make_env

from .test_make import _face_object

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
ENV_ID = "MiniGrid-DoorKey-5x5-v0"


def _make(task: str):
    env = make_env(ENV_ID, 1, seed=0, task=task)
    env.reset()
    inner = env.unwrapped.envs[0].unwrapped  # type: ignore[attr-defined]
    return env, inner


def _step(env, action: int):
    _, reward, terminated, truncated, info = env.step(np.array([action]))
    return float(reward[0]), bool(terminated[0]), bool(truncated[0]), float(info["task_reward"][0])


def test_key_task_fires_on_pickup_only() -> None:
    env, u = _make("key")
    for action in (LEFT, RIGHT, DONE, TOGGLE):  # nothing picked up
        assert _step(env, action) == (0.0, False, False, 0.0)
    _face_object(u, "key")
    assert u.carrying is None
    assert _step(env, PICKUP) == (1.0, True, False, 1.0)
    assert u.carrying is not None and u.carrying.type == "key"


def test_key_task_pickup_of_other_object_does_not_fire() -> None:
    from minigrid.core.world_object import Ball

    env, u = _make("key")
    _face_object(u, "key")
    fx, fy = u.front_pos
    u.grid.set(int(fx), int(fy), Ball("blue"))
    assert _step(env, PICKUP) == (0.0, False, False, 0.0)
    assert u.carrying is not None and u.carrying.type == "ball"


def test_door_task_fires_on_opening_not_on_key() -> None:
    env, u = _make("door")
    _face_object(u, "key")
    assert _step(env, PICKUP) == (0.0, False, False, 0.0)  # key pickup is not the event
    _face_object(u, "door")
    door = u.grid.get(*u.front_pos)
    assert door.type == "door" and not door.is_open
    assert _step(env, TOGGLE) == (1.0, True, False, 1.0)
    assert door.is_open


def test_door_task_toggle_without_key_does_not_fire() -> None:
    env, u = _make("door")
    _face_object(u, "door")
    assert _step(env, TOGGLE) == (0.0, False, False, 0.0)  # locked door stays closed


def test_goal_task_is_env_reward_and_variants_remove_it() -> None:
    # Goal reward after 1 step: 1 - 0.9 * 1 / max_steps, max_steps = 10 * 5 * 5 = 250.
    expected = 1.0 - 0.9 * 1 / 250
    for task, reward in (("goal", expected), ("key", 0.0), ("door", 0.0)):
        env, u = _make(task)
        assert u.max_steps == 250
        _face_object(u, "goal")
        r, terminated, truncated, task_reward = _step(env, FORWARD)
        assert r == pytest.approx(reward, abs=1e-12)
        assert task_reward == pytest.approx(reward, abs=1e-12)
        assert terminated and not truncated


def test_variant_event_then_autoreset() -> None:
    env, u = _make("key")
    _face_object(u, "key")
    assert _step(env, PICKUP)[:2] == (1.0, True)
    # NEXT_STEP: the following step resets; the new episode starts without a key.
    assert _step(env, PICKUP) == (0.0, False, False, 0.0)
    assert u.carrying is None
    assert u.step_count == 0


class _StartWithKeyAndOpenDoor:
    """Test double: a DoorKey env whose reset hands the agent the key and opens the door."""

    @staticmethod
    def make():
        import gymnasium as gym

        class Wrapper(gym.Wrapper):
            def reset(self, **kwargs):
                obs, info = self.env.reset(**kwargs)
                u = self.env.unwrapped
                for j in range(u.grid.height):
                    for i in range(u.grid.width):
                        obj = u.grid.get(i, j)
                        if obj is not None and obj.type == "key":
                            u.carrying = obj
                            u.grid.set(i, j, None)
                        elif obj is not None and obj.type == "door":
                            obj.is_locked, obj.is_open = False, True
                return obs, info

        return Wrapper(gym.make(ENV_ID))


@pytest.mark.parametrize("event", ["key", "door"])
def test_state_present_at_reset_is_not_an_event(event: str) -> None:
    from rltransfer.envs.minigrid import MiniGridEventTask

    env = MiniGridEventTask(_StartWithKeyAndOpenDoor.make(), event)
    env.reset(seed=0)
    u = env.unwrapped
    assert u.carrying is not None and u.carrying.type == "key"
    for action in (DONE, LEFT, DONE):
        _, reward, terminated, _, _ = env.step(action)
        assert (reward, terminated) == (0.0, False)
    if event == "door":
        # Close the door again by hand: re-opening it later is an event.
        _face_object(u, "door")
        door = u.grid.get(*u.front_pos)
        assert _step_single(env, TOGGLE) == (0.0, False)  # closing is not an event
        assert not door.is_open
        assert _step_single(env, TOGGLE) == (1.0, True)


def _step_single(env, action: int) -> tuple[float, bool]:
    _, reward, terminated, _, _ = env.step(action)
    return float(reward), bool(terminated)


def test_unknown_event_rejected() -> None:
    import gymnasium as gym

    from rltransfer.envs.minigrid import MiniGridEventTask

    with pytest.raises(ValueError, match="key"):
        MiniGridEventTask(gym.make(ENV_ID), "ball")
