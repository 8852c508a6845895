from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
import torch

from rltransfer.intrinsic import RND, IntrinsicReward
from rltransfer.intrinsic.base import IntrinsicInputError
from rltransfer.nets.encoders import UnknownEncoderKindError


def binary_frames(rng: np.random.Generator, num: int, shape=(4, 10, 10)) -> np.ndarray:
    return (rng.random((num, *shape)) < 0.3).astype(np.uint8)


def test_torso_choice_by_input_size() -> None:
    nature = RND((1, 84, 84), feature_dim=8, hidden=16, seed=0)
    body = nature.target[0]
    assert isinstance(body[0], torch.nn.Conv2d) and body[0].kernel_size == (8, 8)
    assert nature.target[1].in_features == 64 * 7 * 7  # 84 -> 20 -> 9 -> 7
    small = RND((4, 10, 10), feature_dim=8, hidden=16, seed=0)
    body = small.predictor[0]
    assert isinstance(body[0], torch.nn.Conv2d) and body[0].kernel_size == (3, 3)
    assert small.predictor[1].in_features == 32 * 10 * 10  # padding keeps 10x10
    assert all(  # leaky ReLU after each conv (Burda et al. 2019, App. A)
        isinstance(m, torch.nn.LeakyReLU) for m in body if not isinstance(m, (
            torch.nn.Conv2d, torch.nn.Flatten))
    )
    assert small.predictor[3].in_features == 16  # hidden width
    mlp = RND((3, 7, 7), torso="mlp", feature_dim=8, hidden=16, seed=0)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.predictor.modules())
    assert mlp.target[1].in_features == 3 * 7 * 7
    assert mlp.novelty(np.zeros((2, 3, 7, 7), np.uint8)).shape == (2,)
    with pytest.raises(UnknownEncoderKindError, match="small_cnn"):
        RND((3, 7, 7), torso="resnet")
    with pytest.raises(ValueError, match="nature_cnn needs"):
        RND((3, 7, 7), torso="nature_cnn")


def test_error_drops_on_seen_observations_but_not_unseen() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rnd = RND((4, 10, 10), obs_scale=1.0, learning_rate=1e-3, seed=0)
    assert isinstance(rnd, IntrinsicReward)
    seen = binary_frames(rng, 16)
    unseen = binary_frames(rng, 16)
    rnd.update_obs_stats(np.concatenate([seen, binary_frames(rng, 64)]))
    before_seen = rnd.novelty(seen).mean()
    before_unseen = rnd.novelty(unseen).mean()
    for _ in range(60):
        rnd.update(seen)
    after_seen = rnd.novelty(seen).mean()
    after_unseen = rnd.novelty(unseen).mean()
    assert after_seen < 0.01 * before_seen
    assert after_unseen > 10.0 * after_seen
    assert after_unseen > 0.2 * before_unseen


def test_update_returns_loss_that_decreases() -> None:
    rnd = RND((4, 10, 10), obs_scale=1.0, learning_rate=1e-3, feature_dim=64, seed=1)
    frames = binary_frames(np.random.default_rng(1), 8)
    # the loss before the step is the mean squared error = mean novelty / feature_dim
    expected = rnd.novelty(frames).mean() / 64
    first = rnd.update(frames)["rnd_loss"]
    assert first == pytest.approx(expected, rel=1e-4)
    losses = [rnd.update(frames)["rnd_loss"] for _ in range(30)]
    assert losses[-1] < 0.5 * first


def test_reward_is_novelty_over_running_return_std() -> None:
    rnd = RND((1, 7, 7), obs_scale=10.0, gamma_int=0.5, feature_dim=16, seed=2)
    rng = np.random.default_rng(2)
    returns = np.zeros(2)
    seen_returns: list[float] = []
    for step in range(4):
        frames = rng.integers(0, 11, size=(2, 1, 7, 7)).astype(np.uint8)
        expected_error = rnd.novelty(frames).astype(np.float64)
        reward = rnd.compute(frames, np.zeros(2, dtype=np.int64), frames)
        if step == 2:
            rnd.reset(np.array([True, False]))
        returns = returns * 0.5 + expected_error
        seen_returns.extend(returns.tolist())
        if step == 2:
            returns[0] = 0.0
        # running stats with the prior (mean 0, var 1, pseudo-count 1e-4)
        c = 1e-4
        data = np.array(seen_returns)
        mean = data.sum() / (data.size + c)
        m2 = c * (1.0 + mean**2) + ((data - mean) ** 2).sum()
        std = np.sqrt(m2 / (data.size + c))
        assert reward.dtype == np.float32
        np.testing.assert_allclose(reward, expected_error / std, rtol=1e-5)
    np.testing.assert_allclose(rnd.intrinsic_returns, returns, rtol=1e-6)


def test_compute_updates_observation_statistics() -> None:
    rnd = RND((1, 5, 5), obs_scale=2.0, feature_dim=8)
    frames = np.full((3, 1, 5, 5), 4, dtype=np.uint8)
    rnd.compute(frames, np.zeros(3), frames)
    # 3 samples of 4 / 2 = 2.0 merged with the prior (mean 0, count 1e-4)
    np.testing.assert_allclose(rnd.obs_rms.mean, 2.0 * 3 / (3 + 1e-4))
    assert rnd.obs_rms.count == pytest.approx(3 + 1e-4)


def test_atari_sized_input_and_checkpoint_roundtrip() -> None:
    rng = np.random.default_rng(3)
    rnd = RND((1, 84, 84), feature_dim=32, seed=3)
    frames = rng.integers(0, 256, size=(4, 1, 84, 84)).astype(np.uint8)
    reward = rnd.compute(frames, np.zeros(4), frames)
    assert reward.shape == (4,) and np.all(reward > 0)
    rnd.update(frames)
    tensors = rnd.state_tensors()
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert any(k.startswith("optimizer.") for k in tensors)
    other = RND((1, 84, 84), feature_dim=32, seed=99)
    assert not np.allclose(other.novelty(frames), rnd.novelty(frames))
    other.load_state_tensors(tensors)
    np.testing.assert_allclose(other.novelty(frames), rnd.novelty(frames), rtol=1e-6)
    np.testing.assert_array_equal(other.intrinsic_returns, rnd.intrinsic_returns)
    # identical Adam state: one more identical update keeps them identical
    rnd.update(frames)
    other.update(frames)
    np.testing.assert_allclose(other.novelty(frames), rnd.novelty(frames), rtol=1e-5)


def test_target_is_fixed_and_seeded() -> None:
    a = RND((2, 6, 6), feature_dim=8, seed=5)
    b = RND((2, 6, 6), feature_dim=8, seed=5)
    frames = np.random.default_rng(0).integers(0, 2, size=(3, 2, 6, 6)).astype(np.uint8)
    np.testing.assert_array_equal(a.novelty(frames), b.novelty(frames))
    target_before = [p.clone() for p in a.target.parameters()]
    for _ in range(3):
        a.update(frames)
    for p, q in zip(a.target.parameters(), target_before, strict=True):
        assert torch.equal(p, q)


def test_input_errors() -> None:
    rnd = RND((1, 5, 5), feature_dim=8)
    stacked = np.zeros((2, 4, 5, 5), dtype=np.uint8)
    with pytest.raises(IntrinsicInputError, match="last frame"):
        rnd.compute(stacked, np.zeros(2), stacked)
    ok = np.zeros((2, 1, 5, 5), dtype=np.uint8)
    rnd.compute(ok, np.zeros(2), ok)
    with pytest.raises(IntrinsicInputError):
        rnd.compute(ok[:1], np.zeros(1), ok[:1])
    with pytest.raises(ValueError):
        RND(cast(Any, (5, 5)), feature_dim=8)
