from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.intrinsic import (
    IntrinsicInputError,
    IntrinsicReward,
    NGUConfig,
    NGUReward,
    lifelong_multiplier,
    ngu_betas,
    ngu_gammas,
)
from rltransfer.runtime.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.runtime.config import ConfigError, from_dict

FRAME = (3, 7, 7)  # MiniGrid-like encoding


def small_config(**overrides: object) -> NGUConfig:
    values: dict[str, object] = dict(
        embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=16, rnd_hidden=32,
        memory_capacity=64,
    )
    values.update(overrides)
    return NGUConfig(**values)  # type: ignore[arg-type]


def frames(rng: np.random.Generator, num: int, shape: tuple[int, ...] = FRAME) -> np.ndarray:
    return rng.integers(0, 11, size=(num, *shape)).astype(np.uint8)


# ---------------------------------------------------------------------- policy family


def test_betas_n32_match_formula() -> None:
    betas = ngu_betas(32, 0.3)
    assert betas.shape == (32,) and betas.dtype == np.float64
    assert betas[0] == 0.0 and betas[31] == 0.3
    # beta_j = 0.3 * sigmoid(10 (2j - 30) / 30)
    assert betas[1] == pytest.approx(0.3 / (1 + math.exp(280 / 30)), rel=1e-12)  # 2.6526e-5
    assert betas[15] == pytest.approx(0.15, rel=1e-12)  # sigmoid(0)
    assert betas[16] == pytest.approx(0.198226910630, rel=1e-10)
    assert betas[30] == pytest.approx(0.299986380639, rel=1e-10)
    assert np.all(np.diff(betas) > 0)


def test_gammas_n32_match_formula() -> None:
    gammas = ngu_gammas(32, 0.997, 0.99)
    assert gammas[0] == 0.997 and gammas[31] == 0.99
    # gamma_j = 1 - exp(((31 - j) log 0.003 + j log 0.01) / 31)
    assert gammas[1] == pytest.approx(0.996881194359, rel=1e-11)
    assert gammas[15] == pytest.approx(0.994628110147, rel=1e-11)
    assert gammas[30] == pytest.approx(0.990380933134, rel=1e-11)
    horizons = 1.0 / (1.0 - gammas)  # log-spaced from 333.3 down to 100
    np.testing.assert_allclose(np.diff(np.log(horizons)), math.log(100 / (1000 / 3)) / 31)


def test_family_edge_cases() -> None:
    assert ngu_betas(1, 0.3).tolist() == [0.3]
    assert ngu_gammas(1).tolist() == [0.99]
    assert ngu_betas(2, 0.3).tolist() == [0.0, 0.3]
    assert ngu_gammas(2).tolist() == [0.997, 0.99]
    with pytest.raises(ValueError, match="num_policies"):
        ngu_betas(0)
    with pytest.raises(ValueError, match="gamma_min"):
        ngu_gammas(4, gamma_max=0.99, gamma_min=0.997)


# ---------------------------------------------------------------------- multiplier


def test_lifelong_multiplier_clipping() -> None:
    # mu = 2, sigma = 0.5: alpha = 1 + (err - 2) / 0.5
    alpha = lifelong_multiplier(np.array([1.0, 2.0, 2.5, 3.0, 10.0]), 2.0, 0.5, 5.0)
    np.testing.assert_allclose(alpha, [1.0, 1.0, 2.0, 3.0, 5.0], rtol=1e-7)  # -1 and 17 clip
    assert lifelong_multiplier(np.array([4.0]), 2.0, 0.5, 2.5).tolist() == [2.5]


def test_compute_combines_episodic_and_multiplier(monkeypatch: pytest.MonkeyPatch) -> None:
    ngu = NGUReward(FRAME, 4, 4, config=small_config(max_multiplier=2.0), obs_scale=10.0)
    errors = iter([np.array([1.0, 2.0, 3.0, 10.0], np.float32),
                   np.array([4.0, 4.0, 4.0, 4.0], np.float32)])
    monkeypatch.setattr(ngu.rnd, "novelty", lambda x: next(errors))
    rng = np.random.default_rng(0)
    ngu.compute(frames(rng, 4), np.zeros(4, np.int64), frames(rng, 4))
    # Running stats of [1, 2, 3, 10] (tiny prior count 1e-4): mean 4, var 12.5, std 3.5355;
    # alpha = 1 + (err - 4) / 3.5355 = [0.15, 0.43, 0.72, 2.70] -> clip [1, 2].
    np.testing.assert_allclose(ngu.last_multiplier, [1.0, 1.0, 1.0, 2.0], rtol=1e-6)
    assert float(ngu.error_rms.mean) == pytest.approx(4.0, rel=1e-4)
    assert float(ngu.error_rms.var) == pytest.approx(12.5, rel=1e-4)
    assert np.all(ngu.last_episodic == 0.0)  # empty memories on the first step
    reward = ngu.compute(frames(rng, 4), np.zeros(4, np.int64), frames(rng, 4))
    assert reward.dtype == np.float32 and reward.shape == (4,)
    assert np.all(ngu.last_episodic > 0)
    np.testing.assert_allclose(reward, ngu.last_episodic * ngu.last_multiplier, rtol=1e-6)


def test_multiplier_uses_rnd_error_statistics() -> None:
    ngu = NGUReward(FRAME, 4, 2, config=small_config(), obs_scale=10.0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = frames(rng, 2)
        err = ngu.rnd.novelty(x).astype(np.float64)
        ngu.compute(x, np.zeros(2, np.int64), x)
        expected = np.clip(1 + (err - ngu.error_rms.mean) / ngu.error_rms.std, 1, 5)
        np.testing.assert_allclose(ngu.last_multiplier, expected, rtol=1e-5)
        assert np.all((ngu.last_multiplier >= 1) & (ngu.last_multiplier <= 5))


# ---------------------------------------------------------------------- behaviour


def test_revisit_gives_lower_episodic_reward_than_new_state() -> None:
    ngu = NGUReward(FRAME, 4, 1, config=small_config(), obs_scale=10.0, seed=3)
    assert isinstance(ngu, IntrinsicReward)
    rng = np.random.default_rng(2)
    visited = frames(rng, 6)
    for x in visited:
        ngu.compute(x[None], np.zeros(1, np.int64), x[None])
    memory_before = ngu.memory.num_inserted.copy()
    ngu.compute(visited[2][None], np.zeros(1, np.int64), visited[2][None])
    revisit = float(ngu.last_episodic[0])
    ngu.compute(visited[2][None], np.zeros(1, np.int64), frames(rng, 1))
    new = float(ngu.last_episodic[0])
    assert ngu.memory.num_inserted[0] == memory_before[0] + 2
    assert revisit < 1.0 / (1.0 + 1e-3) + 1e-6  # an exact match has K = 1
    assert new > 3.0 * revisit
    ngu.reset(np.array([True]))
    assert ngu.memory.fill_counts.tolist() == [0]


def test_training_f_mid_episode_does_not_change_the_episode_embedding() -> None:
    """Each episode embeds with the snapshot of f taken at its start: a revisit stays an
    exact match (d = 0) however much f trains in between."""
    ngu = NGUReward((1, 5, 5), 4, 1, config=small_config(learning_rate=1e-2), obs_scale=1.0)
    obs, actions, next_obs = toy_transitions(np.random.default_rng(7), 32)
    x = next_obs[:1]
    ngu.compute(x, actions[:1], x)
    before = ngu.embed_acting(x).clone()
    for _ in range(20):
        ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    assert not torch.allclose(ngu.embed(x), before)  # the learner's f has moved
    torch.testing.assert_close(ngu.embed_acting(x), before)
    ngu.compute(x, actions[:1], x)  # one stored neighbour at d = 0: K = 1, r = 1 / 1.001
    assert float(ngu.last_episodic[0]) == pytest.approx(1 / 1.001, rel=1e-6)
    ngu.compute(x, actions[:1], x)  # two at d = 0: r = 1 / (sqrt(2) + 0.001)
    assert float(ngu.last_episodic[0]) == pytest.approx(1 / (math.sqrt(2) + 1e-3), rel=1e-6)


def test_new_episodes_take_a_fresh_snapshot_after_the_refresh_period() -> None:
    ngu = NGUReward((1, 5, 5), 4, 2, config=small_config(learning_rate=1e-2,
                                                         embedding_refresh_env_steps=3),
                    obs_scale=1.0)
    obs, actions, next_obs = toy_transitions(np.random.default_rng(8), 32)
    x = next_obs[:2]
    initial = ngu.embed_acting(x).clone()
    for _ in range(5):
        ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    ngu.compute(x, actions[:2], x)
    ngu.reset(np.array([True, False]))  # 1 step since the snapshot < 3: same snapshot
    torch.testing.assert_close(ngu.embed_acting(x), initial)
    ngu.compute(x, actions[:2], x)
    ngu.compute(x, actions[:2], x)
    ngu.reset(np.array([True, False]))  # 3 steps: env 0 gets the trained f, env 1 keeps its
    got = ngu.embed_acting(x)
    torch.testing.assert_close(got[0], ngu.embed(x)[0])
    torch.testing.assert_close(got[1], initial[1])
    assert len(ngu._snapshots) == 2
    ngu.reset(np.array([False, True]))  # env 1 joins the newest; the old one is dropped
    assert len(ngu._snapshots) == 1
    torch.testing.assert_close(ngu.embed_acting(x), ngu.embed(x))
    with pytest.raises(ValueError, match="embedding_refresh_env_steps"):
        NGUConfig(embedding_refresh_env_steps=0)


def toy_transitions(rng: np.random.Generator, num: int) -> tuple[np.ndarray, ...]:
    """Action a lights pixel (0, 0, a) of the next frame: inverse dynamics is learnable."""
    obs = rng.integers(0, 2, size=(num, 1, 5, 5)).astype(np.uint8)
    actions = rng.integers(0, 4, size=num)
    next_obs = obs.copy()
    next_obs[np.arange(num), 0, 0, :4] = 0
    next_obs[np.arange(num), 0, 0, actions] = 1
    return obs, actions, next_obs


def test_inverse_dynamics_loss_decreases() -> None:
    ngu = NGUReward((1, 5, 5), 4, 2, config=small_config(learning_rate=3e-3), obs_scale=1.0)
    obs, actions, next_obs = toy_transitions(np.random.default_rng(4), 64)
    first = ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    assert set(first) == {"rnd_loss", "inverse_dynamics_loss", "inverse_dynamics_accuracy"}
    assert first["inverse_dynamics_loss"] == pytest.approx(math.log(4), rel=0.2)
    for _ in range(150):
        last = ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    assert last["inverse_dynamics_loss"] < 0.3 * first["inverse_dynamics_loss"]
    assert last["inverse_dynamics_accuracy"] > 0.9
    assert last["rnd_loss"] < first["rnd_loss"]


def test_update_masks_invalid_transitions_and_checks_input() -> None:
    ngu = NGUReward((1, 5, 5), 4, 2, config=small_config(), obs_scale=1.0)
    obs, actions, next_obs = toy_transitions(np.random.default_rng(5), 8)
    params = [p.detach().clone() for p in ngu.embedding.parameters()]
    out = ngu.update(next_obs, prev_obs_batch=obs, actions=actions, valid=np.zeros(8, bool))
    assert math.isnan(out["inverse_dynamics_loss"])
    assert all(torch.equal(a, b) for a, b in zip(params, ngu.embedding.parameters(),
                                                  strict=True))
    with pytest.raises(IntrinsicInputError, match="prev_obs_batch"):
        ngu.update(next_obs)
    with pytest.raises(IntrinsicInputError, match="environment actions"):
        ngu.update(next_obs, prev_obs_batch=obs, actions=np.full(8, 4))
    with pytest.raises(IntrinsicInputError, match="same length"):
        ngu.update(next_obs, prev_obs_batch=obs[:4], actions=actions)
    with pytest.raises(IntrinsicInputError, match="envs"):
        ngu.compute(obs[:3], actions[:3], next_obs[:3])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="embedding_torso"):
        NGUConfig(embedding_torso="resnet")
    with pytest.raises(ValueError, match="max_multiplier"):
        NGUConfig(max_multiplier=0.5)
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(NGUConfig, {"embedding_dims": 16})
    assert from_dict(NGUConfig, {"num_neighbors": 5}).num_neighbors == 5


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    # refresh 1: the reset below snapshots the trained f, as the restored copy does on load.
    cfg = small_config(embedding_refresh_env_steps=1)
    ngu = NGUReward((1, 5, 5), 4, 2, config=cfg, obs_scale=1.0, seed=0)
    rng = np.random.default_rng(6)
    obs, actions, next_obs = toy_transitions(rng, 16)
    for _ in range(3):
        ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    for t in range(4):
        ngu.compute(obs[2 * t : 2 * t + 2], actions[:2], next_obs[2 * t : 2 * t + 2])
    tensors_out: dict[str, torch.Tensor | np.ndarray] = dict(ngu.state_tensors())
    path = save_checkpoint(tmp_path / "step_1", tensors_out, {})
    tensors, _ = load_checkpoint(path)
    restored = NGUReward((1, 5, 5), 4, 2, config=cfg, obs_scale=1.0, seed=9)
    restored.load_state_tensors(tensors)
    assert restored.memory.distance_mean == pytest.approx(ngu.memory.distance_mean)
    ngu.reset(np.ones(2, bool))  # memories are per-episode and not checkpointed
    for t in range(3):
        x = next_obs[2 * t + 8 : 2 * t + 10]
        np.testing.assert_allclose(restored.compute(x, actions[:2], x),
                                   ngu.compute(x, actions[:2], x), rtol=1e-6)
    a = ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    b = restored.update(next_obs, prev_obs_batch=obs, actions=actions)
    assert a == pytest.approx(b, rel=1e-6)
