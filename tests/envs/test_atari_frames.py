"""Atari observation options (frame size, RGB) and the per-env Python path's equivalence with
ale_py's C++ vector env."""

from __future__ import annotations

import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")

from gymnasium.vector import AutoresetMode  # noqa: E402

from rltransfer.envs import make_env  # noqa: E402
from rltransfer.envs.atari import AtariRamVectorEnv  # noqa: E402
from rltransfer.envs.atari_frames import AreaResize, area_resize_matrix  # noqa: E402


def test_area_resize_matrix_hand_values() -> None:
    # 5 -> 2: scale 2.5; output 0 covers pixels 0, 1 fully and half of 2: weights / 2.5.
    w = area_resize_matrix(5, 2)
    np.testing.assert_allclose(w, [[0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]], atol=1e-7)
    # Integer factor: plain block means.
    np.testing.assert_allclose(area_resize_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(area_resize_matrix(210, 84).sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="dst <= src"):
        area_resize_matrix(4, 8)


def test_area_resize_batch_matches_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(2, 210, 160), dtype=np.uint8)
    out = AreaResize(84)(gray)
    assert out.shape == (2, 1, 84, 84) and out.dtype == np.uint8
    ref = area_resize_matrix(210, 84) @ gray.astype(np.float64) @ area_resize_matrix(160, 84).T
    assert np.abs(out[:, 0] - ref).max() <= 0.5 + 1e-3
    rgb = rng.integers(0, 256, size=(1, 210, 160, 3), dtype=np.uint8)
    out = AreaResize(96)(rgb)
    assert out.shape == (1, 3, 96, 96)
    ref_g = area_resize_matrix(210, 96) @ rgb[0, :, :, 1].astype(np.float64)
    ref_g = ref_g @ area_resize_matrix(160, 96).T
    assert np.abs(out[0, 1] - ref_g).max() <= 0.5 + 1e-3  # channel 1 is green
    const = np.full((1, 210, 160), 77, dtype=np.uint8)
    assert (AreaResize(84)(const) == 77).all()
    with pytest.raises(ValueError, match="uint8"):
        AreaResize(84)(np.zeros((1, 84, 84), dtype=np.uint8))


@pytest.mark.parametrize(
    ("game", "size", "grayscale", "max_frames"),
    [("ms_pacman", 84, True, 108_000), ("hero", 96, False, 108_000), ("pong", 84, True, 400)],
)
def test_python_path_equals_ale_vector_env(
    game: str, size: int, grayscale: bool, max_frames: int
) -> None:
    """Same actions, no sticky actions, no no-ops: identical observations (bit for bit), rewards,
    flags (life loss, truncation at ``max_frames`` and the autoreset after it) and lives."""
    num_envs = 2
    fast = ale_py.AtariVectorEnv(
        game, num_envs, max_num_frames_per_episode=max_frames, repeat_action_probability=0.0,
        autoreset_mode=AutoresetMode.NEXT_STEP, img_height=size, img_width=size,
        grayscale=grayscale, stack_num=1, frameskip=4, maxpool=True, noop_max=0,
        episodic_life=False, life_loss_info=True, reward_clipping=False, use_fire_reset=True,
    )
    slow = AtariRamVectorEnv(
        game, num_envs, reward_fn=None, sticky_action_prob=0.0, terminal_on_life_loss=True,
        max_episode_frames=max_frames, frame_size=size, grayscale=grayscale, noop_max=0,
    )

    def chw(obs: np.ndarray) -> np.ndarray:
        return obs if grayscale else np.moveaxis(obs[:, 0], 3, 1)

    o1, _ = fast.reset(seed=0)
    o2, _ = slow.reset(seed=0)
    np.testing.assert_array_equal(chw(o1), o2)
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(150):
        a = rng.integers(0, slow.single_action_space.n, size=num_envs)
        o1, r1, te1, tr1, i1 = fast.step(a)
        o2, r2, te2, tr2, i2 = slow.step(a)
        np.testing.assert_array_equal(chw(o1), o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(te1, te2)
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(i1["lives"], i2["lives"])
        np.testing.assert_array_equal(i1["episode_frame_number"], i2["episode_frame_number"])
        resets += int(tr2.sum())
    if max_frames < 1000:
        assert resets >= 2  # truncation and autoreset were exercised
    fast.close()


def test_make_env_rgb_96_fast_path_and_variant() -> None:
    env = make_env("ALE/Pong-v5", 2, 0, frame_size=96, grayscale=False)
    assert env.single_observation_space.shape == (3, 96, 96)
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 96, 96) and obs.dtype == np.uint8
    obs, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert obs.shape == (2, 3, 96, 96)
    # Pong's court is orange-brown: red > blue on average, so the channel axis is RGB order.
    assert obs[:, 0].mean() > obs[:, 2].mean()
    env.close()
    var = make_env("ALE/Hero-v5", 1, 0, task="miners-hard", frame_size=96, grayscale=False)
    obs, _ = var.reset()
    assert obs.shape == (1, 3, 96, 96) and var.single_observation_space.shape == (3, 96, 96)
    gray = make_env("ALE/Pong-v5", 1, 0)
    assert gray.single_observation_space.shape == (1, 84, 84)
    gray.close()


def test_frame_options_rejected_where_they_do_not_apply() -> None:
    with pytest.raises(ValueError, match="only apply to Atari"):
        make_env("MinAtar/Breakout-v1", 1, 0, frame_size=96)
    with pytest.raises(ValueError, match="only apply to Atari"):
        make_env("MinAtar/Breakout-v1", 1, 0, grayscale=False)
    with pytest.raises(ValueError, match="frame_size must be in"):
        make_env("ALE/Pong-v5", 1, 0, frame_size=200)
    with pytest.raises(ValueError, match="frame_size must be in"):
        make_env("ALE/MsPacman-v5", 1, 0, task="ghosts-easy", frame_size=4)
