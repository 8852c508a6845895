"""The training loop with NGU's policy family: env i acts as j = i mod N, the replay stores j
and the learner reward r_e + beta_j r_i (read back from the run's checkpoint)."""

from __future__ import annotations

import numpy as np
import torch

from rltransfer.agents.agent_policy import load_policy
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig, policy_family
from rltransfer.agents.r2d2.train import train
from rltransfer.core.checkpoint import latest_checkpoint, load_checkpoint
from rltransfer.intrinsic.ngu import NGUConfig


def test_family_run_stores_j_and_scaled_rewards(tmp_path) -> None:
    torch.set_num_threads(1)
    agent = R2D2Config(core="lstm", torso="mlp", feature_dim=16, hidden=16, lstm_hidden=16,
                       n_step=2, sequence_length=6, burn_in=2, sequence_overlap=3,
                       batch_size=4, gamma=0.9, gamma_min=0.5, num_policies=3, eval_policy=2)
    cfg = TrainConfig(
        env_id="MiniGrid-Empty-5x5-v0", num_envs=4, total_env_steps=400, seed=3,
        run_dir=str(tmp_path / "run"), reward_free=True, intrinsic="ngu",
        intrinsic_scale=0.5, agent=agent, learning_starts_env_steps=100,
        intrinsic_warmup_env_steps=40, eval_every_env_steps=10**9, eval_episodes=1,
        checkpoint_every_env_steps=10**9, progress=False, tensorboard=False,
        ngu=NGUConfig(embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=8, rnd_hidden=16),
    )
    result = train(cfg)
    assert result.num_updates > 0
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt is not None
    tensors, _ = load_checkpoint(ckpt)
    n = int(tensors["replay/num_added"].reshape(-1)[0])
    j = tensors["replay/policy_index"].numpy()[:, :n]
    np.testing.assert_array_equal(j, np.tile(np.array([0, 1, 2, 0])[:, None], (1, n)))
    fam = policy_family(cfg)
    r_int = tensors["replay/intrinsic_rewards"].numpy()[:, :n]
    stored = tensors["replay/rewards"].numpy()[:, :n]
    assert np.abs(r_int).sum() > 0
    # reward-free: r_e = 0, so the learner reward is beta_j r_i (beta_0 = 0 for env 0, 3)
    np.testing.assert_array_equal(stored, fam.env_betas[:, None] * r_int)
    assert np.all(stored[[0, 3]] == 0) and np.all(stored[2] == np.float32(0.5) * r_int[2])
    # the saved policy acts as the exploratory eval_policy j = 2
    policy = load_policy(tmp_path / "run")
    assert policy.agent.config.num_policies == 3 and policy.agent.config.eval_policy == 2
