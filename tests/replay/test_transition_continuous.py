"""Continuous-action (SAC) mode of TransitionReplay: float actions, frames stored once."""

from __future__ import annotations

import numpy as np
import pytest

from rltransfer.replay import TransitionReplay


def _replay(**kw: object) -> TransitionReplay:
    args: dict[str, object] = dict(num_envs=2, capacity_per_env=20, frame_shape=(3, 4, 4),
                                   frame_stack=3, n_step=1, gamma=0.9, prioritized=False,
                                   action_shape=(2,), action_dtype=np.float32)
    args.update(kw)
    return TransitionReplay(**args)  # type: ignore[arg-type]


def _fill(replay: TransitionReplay, steps: int, trunc_at: int | None = None) -> None:
    for t in range(steps):
        obs = np.full((2, 3, 4, 4), t + 1, np.uint8)
        obs[1] += 100
        action = np.array([[t, -t], [t + 0.5, 0.25]], np.float32) / 10
        trunc = np.full(2, t == trunc_at)
        replay.add(obs, action, None, None, np.array([t, 10 + t], np.float64),
                   np.zeros(2, bool), trunc)


def test_float_actions_stored_and_sampled() -> None:
    replay = _replay()
    assert replay.continuous and replay.actions.shape == (2, 20, 2)
    assert replay.actions.dtype == np.float32
    _fill(replay, 6)
    idx = replay.eligible_indices()
    # 1-step: transitions t = 0..4 of both envs (t = 5 lacks its next frame).
    assert len(idx) == 10
    batch = replay.gather(idx)
    steps = replay.step_of_index(idx)
    env = idx // 20
    expected_action = np.stack([steps, -steps], 1).astype(np.float32) / 10
    expected_action[env == 1] = np.stack(
        [steps[env == 1] + 0.5, np.full((env == 1).sum(), 0.25)], 1
    ) / 10
    np.testing.assert_allclose(batch["action"], expected_action, rtol=1e-6)
    assert batch["action"].dtype == np.float32 and batch["action"].shape == (10, 2)
    np.testing.assert_array_equal(batch["agent_action"], batch["action"])
    np.testing.assert_allclose(batch["n_step_return"], steps + 10 * env)
    np.testing.assert_allclose(batch["bootstrap_discount"], 0.9)
    # next_obs's newest frame is the frame of step t + 1 (stored once, rebuilt at sampling).
    np.testing.assert_array_equal(batch["next_obs"][:, -1, 0, 0], steps + 2 + 100 * env)
    np.testing.assert_array_equal(batch["obs"][:, -1, 0, 0], steps + 1 + 100 * env)
    sampled = replay.sample(4, np.random.default_rng(0))
    assert sampled["action"].shape == (4, 2)


def test_truncation_bootstraps_from_final_frame() -> None:
    replay = _replay()
    _fill(replay, 6, trunc_at=2)
    # Step 2 truncated; step 3 is the autoreset slot holding the final frame (never sampled).
    batch = replay.gather(np.array([2]))
    assert batch["bootstrap_discount"][0] == pytest.approx(0.9)
    assert batch["next_obs"][0, -1, 0, 0] == 4
    assert 3 not in replay.step_of_index(replay.eligible_indices())


def test_memory_is_one_frame_per_transition() -> None:
    replay = TransitionReplay(1, 1000, (3, 84, 84), frame_stack=3, n_step=1, prioritized=False,
                              action_shape=(6,), action_dtype=np.float32)
    per = replay.nbytes / 1000
    assert 3 * 84 * 84 < per < 3 * 84 * 84 + 100  # 21,168 frame bytes + 24 action + flags/tree


def test_state_round_trip_and_mismatch() -> None:
    replay = _replay()
    _fill(replay, 7)
    state = replay.state_tensors()
    assert "agent_actions" not in state
    other = _replay()
    other.load_state_tensors(state)
    idx = replay.eligible_indices()
    for k, v in replay.gather(idx).items():
        np.testing.assert_array_equal(other.gather(idx)[k], v)
    with pytest.raises(ValueError, match="config_int"):
        _replay(action_shape=(3,)).load_state_tensors(state)


def test_continuous_errors() -> None:
    replay = _replay()
    obs = np.zeros((2, 3, 4, 4), np.uint8)
    z = np.zeros(2, bool)
    with pytest.raises(ValueError, match="float"):
        replay.add(obs, np.zeros((2, 3), np.float32), None, None, np.zeros(2), z, z)
    with pytest.raises(ValueError, match="float"):
        replay.add(obs, np.zeros(2, np.int64), None, None, np.zeros(2), z, z)
    with pytest.raises(ValueError, match="non-finite"):
        replay.add(obs, np.full((2, 2), np.nan, np.float32), None, None, np.zeros(2), z, z)
    with pytest.raises(ValueError, match="agent_action"):
        replay.add(obs, np.zeros((2, 2), np.float32), np.zeros(2, np.int64), None,
                   np.zeros(2), z, z)
    with pytest.raises(ValueError, match="action_shape"):
        _replay(action_shape=())
    with pytest.raises(ValueError, match="action_shape"):
        _replay(action_dtype=np.int64)
    # Discrete default unchanged.
    assert not TransitionReplay(1, 10, (1, 2, 2), n_step=1).continuous
