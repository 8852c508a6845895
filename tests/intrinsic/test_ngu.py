from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.core.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.core.config import ConfigError, from_dict
from rltransfer.intrinsic import (
    IntrinsicInputError,
    IntrinsicReward,
    NGUConfig,
    NGUReward,
    lifelong_multiplier,
    ngu_betas,
    ngu_gammas,
)

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


def population_std(values: list[float]) -> float:
    return float(np.std(np.asarray(values, dtype=np.float64)))


def test_compute_combines_episodic_and_multiplier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-set embeddings and RND errors; r^i = r^episodic * clip(alpha, 1, L), all by hand."""
    ngu = NGUReward(FRAME, 4, 4, config=small_config(max_multiplier=2.0, embedding_dim=2),
                    obs_scale=10.0)
    errors = iter([np.array([1.0, 2.0, 3.0, 10.0], np.float32),
                   np.array([4.0, 6.5, 9.0, 20.0], np.float32),
                   np.array([6.0, 6.0, 6.0, 6.0], np.float32)])
    embeddings = iter([
        [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]],
        [[1.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 6.0]],
        [[0.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 6.0]],
    ])
    monkeypatch.setattr(ngu.rnd, "novelty", lambda x: next(errors))
    monkeypatch.setattr(ngu, "embed_acting",
                        lambda x: torch.tensor(next(embeddings), dtype=torch.float32))
    x = frames(np.random.default_rng(0), 4)
    act = np.zeros(4, np.int64)
    reward = ngu.compute(x, act, x)
    # Errors [1, 2, 3, 10]: mean 4, var 12.5, std 3.5355 (the prior's count 1e-4 is
    # negligible); alpha = 1 + (err - 4) / 3.5355 = [0.15, 0.43, 0.72, 2.70] -> clip [1, 2].
    np.testing.assert_allclose(ngu.last_multiplier, [1.0, 1.0, 1.0, 2.0], rtol=1e-6)
    assert reward.tolist() == [0.0, 0.0, 0.0, 0.0]  # empty memories on the first step
    reward = ngu.compute(x, act, x)
    # One neighbour per env at d = 1, 9, 0, 1. Each env's own mean equals its d, so envs
    # 0, 1, 3 get d_n = 1 - 0.008 and r = 1 / (sqrt(0.001 / 0.993) + 0.001) = 30.5492;
    # env 2 (d = 0, mean 0) gets d_n = 0, K = 1, r = 1 / 1.001.
    fresh = 1.0 / (math.sqrt(1e-3 / 0.993) + 1e-3)
    assert fresh == pytest.approx(30.5492, rel=1e-5)
    episodic = np.array([fresh, fresh, 1 / 1.001, fresh])
    np.testing.assert_allclose(ngu.last_episodic, episodic, rtol=1e-6)
    # All 8 errors: mean 6.9375, std 5.79028; alpha = [0.49, 0.92, 1.356, 3.26] -> [1, 2].
    seen = [1.0, 2.0, 3.0, 10.0, 4.0, 6.5, 9.0, 20.0]
    mean, std = float(np.mean(seen)), population_std(seen)
    assert std == pytest.approx(5.790280, rel=1e-6)  # sqrt(268.21875 / 8)
    multiplier = np.array([1.0, 1.0, 1.0 + (9.0 - mean) / std, 2.0])
    np.testing.assert_allclose(ngu.last_multiplier, multiplier, rtol=1e-4)
    np.testing.assert_allclose(reward, episodic * multiplier, rtol=1e-4)
    assert reward.dtype == np.float32 and reward.shape == (4,)
    ngu.compute(x, act, x)
    # env 0 revisits (0, 0): d = [0, 1], its mean (1 + 0 + 1) / 3 = 2/3, d_n = [0, 1.492],
    # K = [1, 0.001 / 1.493], r = 1 / (sqrt(1.00066979) + 0.001) = 0.998667.
    assert ngu.last_episodic[0] == pytest.approx(1 / (math.sqrt(1 + 1e-3 / 1.493) + 1e-3),
                                                 rel=1e-6)
    assert ngu.last_episodic[0] == pytest.approx(0.998667, rel=1e-5)
    seen += [6.0] * 4  # mean 6.625, std 4.8566: alpha = 1 + (6 - 6.625) / 4.86 < 1 -> 1
    assert float(ngu.error_rms.mean) == pytest.approx(np.mean(seen), rel=1e-4)
    assert float(ngu.error_rms.std) == pytest.approx(population_std(seen), rel=1e-4)
    np.testing.assert_allclose(ngu.last_multiplier, [1.0] * 4)


def test_first_episode_x0_enters_the_memory_like_later_ones() -> None:
    """The collector's first reset puts f(x_0) in each env's episodic memory, as the autoreset
    step does for every later episode (so x_1 is scored against {f(x_0)}, not an empty
    memory that pays 0)."""
    from rltransfer.agents.r2d2.actor import Collector, make_explorer, make_intrinsic
    from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
    from rltransfer.agents.r2d2.learner import R2D2Agent
    from rltransfer.envs import make_env

    cfg = TrainConfig(env_id="MiniGrid-Empty-5x5-v0", num_envs=2, intrinsic="ngu",
                      agent=R2D2Config(feature_dim=16, hidden=16),
                      ngu=small_config(memory_capacity=256))
    envs = make_env(cfg.env_id, 2, 0)
    shape = envs.single_observation_space.shape
    frame = (int(shape[0]), int(shape[1]), int(shape[2]))
    n = int(envs.single_action_space.n)
    torch.manual_seed(0)
    agent = R2D2Agent(cfg.agent, obs_shape=frame, obs_scale=10.0, num_actions=n)
    rng = np.random.default_rng(0)
    ngu = make_intrinsic(cfg, frame, 10.0, n, 2)
    assert isinstance(ngu, NGUReward)
    col = Collector(envs, agent, make_explorer(cfg, n, rng, slice(0, 2)), frame_shape=frame,
                    frame_stack=1, rng=rng, intrinsic=ngu)
    try:
        col.begin(seed=3)
        x0 = col.obs.copy()
        assert ngu.memory.fill_counts.tolist() == [1, 1]
        torch.testing.assert_close(ngu.memory.memory[:, 0], ngu.embed_acting(x0))
        col.step()
        assert ngu.memory.fill_counts.tolist() == [2, 2]
        assert np.all(ngu.last_episodic > 0)  # x_1 scored against {f(x_0)}
        for _ in range(200):  # Empty-5x5 episodes last at most 100 steps
            if col.autoreset.any():
                break
            col.step()
        ended = np.flatnonzero(col.autoreset)
        assert ended.size > 0
        assert np.all(ngu.memory.fill_counts[ended] == 0)  # emptied at the episode end
        col.step()  # the autoreset step: its next_obs is the new episode's x_0
        assert np.all(ngu.memory.fill_counts[ended] == 1)
        torch.testing.assert_close(ngu.memory.memory[ended, 0],
                                   ngu.embed_acting(col.obs)[ended])
    finally:
        col.close()


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
    assert ngu.embedding.num_snapshots == 2
    ngu.reset(np.array([False, True]))  # env 1 joins the newest; the old one is dropped
    assert ngu.embedding.num_snapshots == 1
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
    params = [p.detach().clone() for p in ngu.embedding.network.parameters()]
    out = ngu.update(next_obs, prev_obs_batch=obs, actions=actions, valid=np.zeros(8, bool))
    assert math.isnan(out["inverse_dynamics_loss"])
    assert all(torch.equal(a, b) for a, b in zip(params, ngu.embedding.network.parameters(),
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
    np.testing.assert_allclose(restored.memory.distance_mean, ngu.memory.distance_mean)
    assert restored.memory.distance_mean.shape == (2,)
    ngu.reset(np.ones(2, bool))  # memories are per-episode and not checkpointed
    for t in range(3):
        x = next_obs[2 * t + 8 : 2 * t + 10]
        np.testing.assert_allclose(restored.compute(x, actions[:2], x),
                                   ngu.compute(x, actions[:2], x), rtol=1e-6)
    a = ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    b = restored.update(next_obs, prev_obs_batch=obs, actions=actions)
    assert a == pytest.approx(b, rel=1e-6)


def test_checkpoint_keys_keep_their_layout() -> None:
    """Checkpoints written before the embedding moved to its own class still load: f, the
    head and Adam's moments keep their keys (``optimizer.<parameter index>.<field>``)."""
    ngu = NGUReward((1, 5, 5), 4, 2, config=small_config(), obs_scale=1.0)
    obs, actions, next_obs = toy_transitions(np.random.default_rng(3), 8)
    ngu.update(next_obs, prev_obs_batch=obs, actions=actions)
    keys = set(ngu.state_tensors())
    assert {"optimizer.0.step", "optimizer.0.exp_avg", "optimizer.0.exp_avg_sq",
            "rnd.optimizer.0.exp_avg", "error_rms.mean", "memory.distance_sum"} <= keys
    assert {k.split(".")[0] for k in keys} == {
        "embedding", "inverse_head", "optimizer", "rnd", "error_rms", "memory"}
    num_params = len(list(ngu.embedding.network.parameters())) + len(
        list(ngu.embedding.inverse_head.parameters()))
    assert {k for k in keys if k.startswith("optimizer.")} == {
        f"optimizer.{i}.{field}" for i in range(num_params)
        for field in ("step", "exp_avg", "exp_avg_sq")}
