"""DeepMind Control pixel envs: spaces, action repeat against raw dm_control, autoreset at the
time limit, seeding, action rescaling and errors."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

pytest.importorskip("dm_control")

from rltransfer.envs import UnknownEnvError, env_spec, make_env
from rltransfer.envs.dmc import DMCVectorEnv, parse_dmc_id


def _actions(rng: np.random.Generator, n: int, b: int, dim: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (n, b, dim)).astype(np.float32)


@pytest.mark.parametrize(
    ("env_id", "act_dim"), [("DMC/cheetah-run", 6), ("DMC/reacher-easy", 2), ("DMC/walker-walk", 6)]
)
def test_spaces_shapes_and_spec(env_id: str, act_dim: int) -> None:
    spec = env_spec(env_id)
    assert (spec.suite, spec.frame_stack, spec.obs_scale) == ("dmc", 3, 255.0)
    assert (spec.tasks, spec.frames_per_env_step, spec.default_sticky_action_prob) == (
        ("task",),
        4,
        0.0,
    )
    assert spec.game == env_id.removeprefix("DMC/")
    env = make_env(env_id, 2, seed=0)
    try:
        assert env.single_observation_space == spaces.Box(0, 255, (3, 84, 84), np.uint8)
        assert env.single_action_space == spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        obs, info = env.reset()
        assert obs.shape == (2, 3, 84, 84) and obs.dtype == np.uint8
        assert info["task_reward"].dtype == np.float64
        obs, reward, terminated, truncated, info = env.step(np.zeros((2, act_dim), np.float32))
        assert obs.shape == (2, 3, 84, 84) and obs.dtype == np.uint8
        assert reward.dtype == np.float64 and reward.shape == (2,)
        assert terminated.dtype == bool and truncated.dtype == bool
        np.testing.assert_array_equal(info["task_reward"], reward)
        assert obs.std() > 5.0  # a real image, not a blank buffer
    finally:
        env.close()


def test_render_size_and_action_repeat_options() -> None:
    env = make_env("DMC/reacher-easy", 1, seed=0, render_size=(48, 64), action_repeat=2)
    try:
        obs, _ = env.reset()
        assert obs.shape == (1, 3, 48, 64)
        assert env.unwrapped.action_repeat == 2  # type: ignore[attr-defined]
    finally:
        env.close()
    with pytest.raises(ValueError, match="only apply to DeepMind Control"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, action_repeat=2)
    with pytest.raises(ValueError, match="only apply to DeepMind Control"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, distraction="builtin")
    with pytest.raises(ValueError, match="sticky"):
        make_env("DMC/reacher-easy", 1, seed=0, sticky_action_prob=0.25)
    with pytest.raises(ValueError, match="action_repeat"):
        DMCVectorEnv("DMC/reacher-easy", 1, action_repeat=0)


def test_action_repeat_sums_rewards_like_raw_dm_control() -> None:
    """Agent step t must equal 4 raw dm_control steps with the same action: same summed
    reward and same physics state (hand-driven reference)."""
    from dm_control import suite

    seed, steps = 3, 12
    env = make_env("DMC/cheetah-run", 1, seed=seed)
    raw = suite.load("cheetah", "run", task_kwargs={"random": seed})
    try:
        env.reset()
        raw.reset()
        ours = env.unwrapped.physics[0]  # type: ignore[attr-defined]
        np.testing.assert_array_equal(ours.data.qpos, raw.physics.data.qpos)
        acts = _actions(np.random.default_rng(0), steps, 1, 6)
        total = 0.0
        for t in range(steps):
            _, reward, _, _, info = env.step(acts[t])
            expected = sum(float(raw.step(acts[t, 0].astype(np.float64)).reward) for _ in range(4))
            assert reward[0] == pytest.approx(expected, rel=1e-12, abs=1e-12)
            assert info["task_reward"][0] == pytest.approx(expected, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(ours.data.qpos, raw.physics.data.qpos, rtol=0, atol=1e-12)
            total += expected
        assert total > 0.0  # cheetah-run pays for forward speed: the check is not vacuous
    finally:
        env.close()


def test_truncation_at_time_limit_and_next_step_autoreset() -> None:
    """reacher-easy: 1000 control steps = 250 agent steps at repeat 4, then NEXT_STEP reset."""
    env = make_env("DMC/reacher-easy", 2, seed=1)
    try:
        env.reset()
        zeros = np.zeros((2, 2), np.float32)
        for t in range(1, 251):
            obs, reward, terminated, truncated, _ = env.step(zeros)
            assert not terminated.any()
            assert truncated.all() == (t == 250), t
        last_obs = obs
        # the step after the end ignores the actions and returns the first observation
        obs_a, reward, terminated, truncated, info = env.step(np.ones((2, 2), np.float32))
        np.testing.assert_array_equal(reward, 0.0)
        np.testing.assert_array_equal(info["task_reward"], 0.0)
        assert not terminated.any() and not truncated.any()
        assert not np.array_equal(obs_a, last_obs)
        # the new episode runs for another 250 steps
        for t in range(1, 251):
            _, _, _, truncated, _ = env.step(zeros)
            assert truncated.all() == (t == 250), t
    finally:
        env.close()


def test_autoreset_ignores_actions_and_partial_repeat() -> None:
    """max_episode_frames=6 at repeat 4: step 2 stops after 2 control steps (truncated); the
    reset step's obs does not depend on the action given."""
    obs_after_reset = []
    for fill in (1.0, -1.0):
        env = make_env("DMC/cheetah-run", 1, seed=7, max_episode_frames=6)
        try:
            env.reset()
            _, _, _, tr1, _ = env.step(np.zeros((1, 6), np.float32))
            _, _, _, tr2, _ = env.step(np.zeros((1, 6), np.float32))
            assert not tr1[0] and tr2[0]
            assert env.unwrapped._frames[0] == 6  # type: ignore[attr-defined]
            obs, reward, _, tr3, _ = env.step(np.full((1, 6), fill, np.float32))
            assert reward[0] == 0.0 and not tr3[0]
            assert env.unwrapped._frames[0] == 0  # type: ignore[attr-defined]
            obs_after_reset.append(obs)
        finally:
            env.close()
    np.testing.assert_array_equal(obs_after_reset[0], obs_after_reset[1])


def test_determinism_by_seed() -> None:
    def rollout(seed: int) -> tuple[np.ndarray, np.ndarray]:
        env = make_env("DMC/walker-walk", 2, seed=seed)
        try:
            obs0, _ = env.reset()
            acts = _actions(np.random.default_rng(1), 5, 2, 6)
            rewards, frames = [], [obs0]
            for a in acts:
                obs, r, _, _, _ = env.step(a)
                rewards.append(r)
                frames.append(obs)
            return np.stack(frames), np.stack(rewards)
        finally:
            env.close()

    f1, r1 = rollout(11)
    f2, r2 = rollout(11)
    f3, _ = rollout(12)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(f1[0], f3[0])  # different initial states
    assert not np.array_equal(f1[0, 0], f1[0, 1])  # env i is seeded with seed + i


def test_explicit_reset_seed_reproduces_episode() -> None:
    env = DMCVectorEnv("DMC/reacher-easy", 1, seed=0)
    try:
        first, _ = env.reset(seed=42)
        env.step(np.ones((1, 2)))
        env.reset()
        again, _ = env.reset(seed=42)
        np.testing.assert_array_equal(first, again)
    finally:
        env.close()


def test_actions_rescaled_to_task_bounds() -> None:
    """quadruped's bounds are [-1, 1.1] and [-0.8, 0.8] on some dims: a -> mid + a * half."""
    env = DMCVectorEnv("DMC/quadruped-walk", 1, seed=0, render_size=32)
    try:
        assert env.camera_id == 2  # DrQ's quadruped camera
        env.reset()
        action = np.zeros((1, 12))
        action[0, :3] = [1.0, 1.0, -1.0]
        action[0, 3:6] = [0.0, 0.0, 0.5]
        action[0, 6] = 3.0  # clipped to 1
        env.step(action)
        ctrl = env.physics[0].data.ctrl
        # dims 0-2 have bounds [-1, 1], [-1, 1.1], [-0.8, 0.8]
        np.testing.assert_allclose(ctrl[:3], [1.0, 1.1, -0.8], atol=1e-12)
        np.testing.assert_allclose(ctrl[3:6], [0.0, 0.05, 0.4], atol=1e-12)
        assert ctrl[6] == pytest.approx(1.0)
    finally:
        env.close()


def test_unknown_ids() -> None:
    with pytest.raises(UnknownEnvError, match=r"known domains: .*cheetah.*reacher.*walker"):
        make_env("DMC/spaceship-run", 1, seed=0)
    with pytest.raises(UnknownEnvError, match=r"its tasks are .*'run'"):
        parse_dmc_id("DMC/cheetah-fly")
    with pytest.raises(UnknownEnvError, match="expected 'DMC/<domain>-<task>'"):
        env_spec("DMC/cheetahrun")
    assert parse_dmc_id("DMC/ball_in_cup-catch") == ("ball_in_cup", "catch")


def test_failed_constructor_frees_its_gl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error after the renderer exists closes it at once (left to ``__del__`` at exit, the
    EGL context raised an EGLError traceback after the user's error message)."""
    from rltransfer.envs import dmc
    from rltransfer.envs.distraction import VideoBackground

    closed: list[bool] = []
    original_close = dmc._BatchRenderer.close

    def close(self: dmc._BatchRenderer) -> None:
        closed.append(True)
        original_close(self)

    def attach(self: VideoBackground, *args: object, **kwargs: object) -> None:
        raise RuntimeError("attach failed")

    monkeypatch.setattr(dmc._BatchRenderer, "close", close)
    monkeypatch.setattr(VideoBackground, "attach", attach)
    with pytest.raises(RuntimeError, match="attach failed"):
        DMCVectorEnv("DMC/reacher-easy", 1, seed=0, distraction="builtin")
    assert closed == [True]


def test_distraction_seed_only_applies_to_dmc() -> None:
    with pytest.raises(ValueError, match="distraction_seed"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, distraction_seed=3)
