from __future__ import annotations

import math
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


def test_intrinsic_return_filter_is_not_reset_at_episode_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Burda et al.'s forward filter R <- gamma_int R + e is non-episodic: env 0's episode
    ends after step 2 and R carries on; r = e / std(all R so far). Errors set by hand."""
    rnd = RND((1, 7, 7), obs_scale=10.0, gamma_int=0.5, feature_dim=16, seed=2)
    errors = iter([np.array([2.0, 1.0]), np.array([4.0, 2.0]), np.array([1.0, 3.0])])
    monkeypatch.setattr(rnd, "novelty", lambda x: next(errors).astype(np.float32))
    frames = np.zeros((2, 1, 7, 7), np.uint8)
    act = np.zeros(2, dtype=np.int64)

    def std_with_prior(data: list[float]) -> float:
        # running stats start from mean 0, var 1 with pseudo-count c = 1e-4
        c, x = 1e-4, np.asarray(data)
        mean = x.sum() / (x.size + c)
        return math.sqrt((c * (1.0 + mean**2) + ((x - mean) ** 2).sum()) / (x.size + c))

    rnd.reset(np.ones(2, dtype=bool))
    # step 1: R = [2, 1]; std of {2, 1} = 0.5 -> r = [4, 2]
    r1 = rnd.compute(frames, act, frames)
    np.testing.assert_allclose(r1, np.array([2.0, 1.0]) / std_with_prior([2, 1]), rtol=1e-6)
    np.testing.assert_allclose(r1, [4.0, 2.0], rtol=1e-3)
    # step 2: R = [1 + 4, 0.5 + 2] = [5, 2.5]; std of {2, 1, 5, 2.5} = sqrt(2.171875) = 1.47373
    r2 = rnd.compute(frames, act, frames)
    np.testing.assert_allclose(r2, np.array([4.0, 2.0]) / std_with_prior([2, 1, 5, 2.5]),
                               rtol=1e-6)
    np.testing.assert_allclose(r2, [2.71420, 1.35710], rtol=1e-3)
    rnd.reset(np.array([True, False]))  # env 0's episode ends: R is kept
    np.testing.assert_array_equal(rnd.intrinsic_returns, [5.0, 2.5])
    # step 3: R = [2.5 + 1, 1.25 + 3] = [3.5, 4.25] (an episodic filter would give [1, 4.25]);
    # std of {2, 1, 5, 2.5, 3.5, 4.25} = sqrt(11.0520833 / 6) = 1.357209
    r3 = rnd.compute(frames, act, frames)
    np.testing.assert_array_equal(rnd.intrinsic_returns, [3.5, 4.25])
    np.testing.assert_allclose(
        r3, np.array([1.0, 3.0]) / std_with_prior([2, 1, 5, 2.5, 3.5, 4.25]), rtol=1e-6)
    np.testing.assert_allclose(r3, [0.736806, 2.210419], rtol=1e-3)
    with pytest.raises(IntrinsicInputError, match="done_mask"):
        rnd.reset(np.ones(3, dtype=bool))


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
