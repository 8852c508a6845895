"""NGU's policy family in the recurrent R2D2 agent: one-hot j, acting as j, learning per j,
and the family's assignment (rltransfer.agents.r2d2.config.policy_family)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig, policy_family
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.config import ConfigError
from rltransfer.nets.cores import LSTMCore
from rltransfer.replay import SequenceReplay
from tests.agents.test_r2d2_recurrent import CFG, OBS


def _agent(seed: int = 0, **kw) -> R2D2Agent:
    torch.manual_seed(seed)
    return R2D2Agent(R2D2Config(**{**CFG, **kw}), OBS, 1.0, 3)


def test_core_appends_one_hot_j_after_the_rewards() -> None:
    core = LSTMCore(4, 3, hidden=5, num_policies=3)
    assert core.input_dim == 4 + 3 + 2 + 3
    feats = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    x = core.core_inputs(feats, torch.tensor([1, -1]), torch.tensor([0.5, 0.0]),
                         torch.tensor([0.25, 1.0]), torch.tensor([2, 0]))
    expected = torch.tensor([
        [0, 1, 2, 3, 0, 1, 0, 0.5, 0.25, 0, 0, 1],
        [4, 5, 6, 7, 0, 0, 0, 0.0, 1.00, 1, 0, 0],
    ])
    torch.testing.assert_close(x, expected)
    with pytest.raises(ValueError, match=r"policy_index must be in \[0, 3\)"):
        core.core_inputs(feats, None, None, None, torch.tensor([0, 3]))
    # one policy: no j input at all (the width of a core built before the family existed)
    assert LSTMCore(4, 3, hidden=5).input_dim == LSTMCore(4, 3, hidden=5, num_policies=1).input_dim
    assert LSTMCore(4, 3, hidden=5, num_policies=1).input_dim == 4 + 3 + 2


def test_single_policy_agent_ignores_j_and_keeps_its_weights() -> None:
    a, b = _agent(seed=3), _agent(seed=3, num_policies=1, eval_policy=0)
    for (ka, va), (kb, vb) in zip(a.online.state_dict().items(), b.online.state_dict().items(),
                                  strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb)
    obs = np.random.default_rng(0).integers(0, 2, (2, *OBS), dtype=np.uint8)
    first = np.ones(2, bool)
    q0, s0 = a.act_q(obs, None, first)
    q1, s1 = a.act_q(obs, None, first, policy_index=np.array([0, 0]))
    np.testing.assert_array_equal(q0, q1)
    np.testing.assert_array_equal(s0, s1)


def test_acting_depends_on_j_and_defaults_to_eval_policy() -> None:
    agent = _agent(num_policies=3, eval_policy=2, gamma_min=0.5)
    obs = np.random.default_rng(1).integers(0, 2, (3, *OBS), dtype=np.uint8)
    obs[:] = obs[0]
    first = np.ones(3, bool)
    q, _ = agent.act_q(obs, None, first, policy_index=np.array([0, 1, 2]))
    assert not np.allclose(q[0], q[1]) and not np.allclose(q[1], q[2])
    q_default, _ = agent.act_q(obs, None, first)
    np.testing.assert_allclose(q_default, np.repeat(q[2:3], 3, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="policy_index"):
        agent.act_q(obs, None, first, policy_index=np.array([0, 1, 3]))


def test_learner_feeds_each_sequences_j() -> None:
    agent = _agent(num_policies=2, eval_policy=0, gamma_min=0.5)
    r = SequenceReplay(2, 60, (2, 2, 2), agent.state_dim, sequence_length=5, burn_in=2,
                       sequence_overlap=2, n_step=2, gamma=0.9, policy_gammas=[0.9, 0.5])
    rng = np.random.default_rng(0)
    state = agent.initial_state(2)
    for _ in range(30):
        r.add(rng.integers(0, 2, (2, 2, 2, 2), dtype=np.uint8), rng.integers(0, 3, 2), None,
              None, rng.normal(size=2), rng.random(2) < 0.1, np.zeros(2, bool),
              core_state=state, policy_index=np.array([0, 1]))
    batch = r.sample(4, rng)
    q = agent.unroll(agent.online, batch, grad=False)
    flipped = dict(batch, policy_index=1 - batch["policy_index"])
    assert not torch.allclose(q, agent.unroll(agent.online, flipped, grad=False))
    metrics = agent.update(batch).metrics
    assert np.isfinite(metrics["loss"])
    del batch["policy_index"]
    with pytest.raises(KeyError, match="policy_index"):
        agent.update(batch)


def test_config_rules() -> None:
    with pytest.raises(ConfigError, match="needs core='lstm'"):
        R2D2Config(num_policies=2)
    with pytest.raises(ConfigError, match="eval_policy"):
        R2D2Config(**{**CFG, "num_policies": 2, "eval_policy": 2, "gamma_min": 0.5})
    with pytest.raises(ConfigError, match="gamma_min"):
        R2D2Config(**{**CFG, "num_policies": 2, "gamma_min": 0.95})  # above gamma 0.9


def test_policy_family_assignment_betas_and_gammas() -> None:
    agent = R2D2Config(**{**CFG, "num_policies": 4, "gamma": 0.997, "gamma_min": 0.99})
    fam = policy_family(TrainConfig(num_envs=6, intrinsic_scale=0.3, agent=agent))
    np.testing.assert_array_equal(fam.env_policy, [0, 1, 2, 3, 0, 1])  # j_i = i mod N
    # NGU App. A, N = 4: beta_j = .3 sigmoid(10 (2j - 2) / 2) for j = 1, 2 (x = 0, 10);
    # ends 0 and .3
    sig = 1.0 / (1.0 + np.exp(-np.array([0.0, 10.0])))
    np.testing.assert_allclose(fam.betas, [0.0, 0.3 * sig[0], 0.3 * sig[1], 0.3], rtol=1e-6)
    np.testing.assert_allclose(fam.env_betas, fam.betas[[0, 1, 2, 3, 0, 1]])
    # horizons 1 / (1 - gamma_j) log-spaced between 333.3 and 100
    horizons = 1.0 / (1.0 - fam.gammas)
    np.testing.assert_allclose(horizons, np.geomspace(1 / 0.003, 100.0, 4), rtol=1e-9)
    single = policy_family(TrainConfig(num_envs=3, intrinsic_scale=0.7,
                                       agent=R2D2Config(gamma=0.95)))
    np.testing.assert_array_equal(single.env_policy, [0, 0, 0])
    assert single.betas.dtype == np.float32 and single.betas.tolist() == [np.float32(0.7)]
    assert single.gammas.tolist() == [0.95]
    with pytest.raises(ConfigError, match="num_envs"):
        policy_family(TrainConfig(num_envs=3, agent=agent))
    with pytest.raises(ConfigError, match="eval_policy"):
        policy_family(TrainConfig(num_envs=4, reward_free=True, agent=agent))
    fine = dataclasses.replace(agent, eval_policy=3)
    assert policy_family(TrainConfig(num_envs=4, reward_free=True, agent=fine)).betas.size == 4
