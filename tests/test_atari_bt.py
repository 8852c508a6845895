"""Behavior Transfer on a real Atari game: pretrain reward-free, then BT from that policy on
the paper's modified-reward task variant (eat vulnerable ghosts, pac-dots -10)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import train


@pytest.mark.slow
def test_bt_on_ms_pacman(tmp_path: Path) -> None:
    base = TrainConfig(
        env_id="ALE/MsPacman-v5", num_envs=2, total_env_steps=600,
        learning_starts_env_steps=300, updates_per_env_step=0.125, eval_every_env_steps=10**9,
        eval_episodes=1, checkpoint_every_env_steps=300, replay_capacity_env_steps=2_000,
        tensorboard=False, progress=False, max_episode_frames=2_000,
        intrinsic_warmup_env_steps=100,
        agent=R2D2Config(batch_size=8, feature_dim=64, hidden=64),
    )
    pre = train(dataclasses.replace(base, reward_free=True, intrinsic="rnd",
                                    run_dir=str(tmp_path / "pre")))
    assert pre.env_steps == 600  # 100 warm-up steps (RND statistics) + 500 of training
    bt = train(dataclasses.replace(base, task="ghosts-hard", explore="bt",
                                   prior=str(tmp_path / "pre"), init="partial",
                                   max_episode_frames=800, run_dir=str(tmp_path / "bt")))
    assert bt.num_updates > 0
    cfg = json.loads((tmp_path / "bt" / "config.json").read_text())
    assert cfg["task"] == "ghosts-hard"
    episodes = [json.loads(x) for x in (tmp_path / "bt" / "metrics.jsonl").read_text().splitlines()
                if '"episode"' in x]
    # pac-dots cost 10 each in ghosts-hard: a random-ish agent eats dots, so returns go negative
    assert episodes and min(e["ret"] for e in episodes) < 0
    meta = json.loads((tmp_path / "bt" / "final" / "meta.json").read_text())
    # |A| = 9 for Ms. Pac-Man's minimal action set, plus the extra action a+.
    assert meta["architecture"]["num_actions"] == meta["architecture"]["num_env_actions"] + 1 == 10
    assert meta["architecture"]["obs_shape"] == [4, 84, 84]


def test_bt_atari_recipe_is_the_papers_recurrent_agent() -> None:
    from rltransfer.experiments.behavior_transfer import get_recipe

    exp = get_recipe("bt-atari")
    for cfg in (exp.pretrain, exp.train):
        a = cfg.agent
        # Campos et al. 2021 Sec. 5: conv torso + LSTM + dueling head, trained as R2D2
        # (Kapturowski et al. 2019: LSTM(512), length 80, burn-in 40, overlap 40).
        assert (a.core, a.dueling, a.lstm_hidden) == ("lstm", True, 512)
        assert (a.sequence_length, a.burn_in, a.sequence_overlap) == (80, 40, 40)
    for name in ("bt-minigrid", "bt-minigrid-benchmark"):  # documented as feedforward
        exp = get_recipe(name)
        assert exp.pretrain.agent.core == exp.train.agent.core == "feedforward"


def test_bt_atari_partial_init_loads_conv_torso_and_lstm(tmp_path: Path) -> None:
    import torch

    from rltransfer.agents.agent_policy import policy_tensors
    from rltransfer.agents.r2d2.learner import R2D2Agent
    from rltransfer.agents.r2d2.transfer import initialise_from
    from rltransfer.core.checkpoint import save_checkpoint
    from rltransfer.core.config import to_dict
    from rltransfer.experiments.behavior_transfer import get_recipe

    cfg = get_recipe("bt-atari").train.agent
    obs, num_env_actions = (4, 84, 84), 9  # Ms. Pac-Man: 4 stacked 84x84 frames, |A| = 9
    torch.manual_seed(0)
    pre = R2D2Agent(cfg, obs, 255.0, num_env_actions)
    arch = {"kind": "r2d2", "env_id": "ALE/MsPacman-v5", "task": None, "obs_shape": list(obs),
            "frame_shape": [1, 84, 84], "frame_stack": 4, "obs_scale": 255.0,
            "num_actions": num_env_actions, "num_env_actions": num_env_actions,
            "agent_config": to_dict(cfg)}
    path = save_checkpoint(tmp_path / "final", dict(policy_tensors(pre)), {"architecture": arch})
    torch.manual_seed(1)
    new = R2D2Agent(cfg, obs, 255.0, num_env_actions + 1, num_env_actions=num_env_actions)
    head_before = {k: v.clone() for k, v in new.head.state_dict().items()}
    initialise_from(new, path, "partial", num_env_actions)
    assert any(isinstance(m, torch.nn.Conv2d) for m in new.torso.modules())
    assert any(isinstance(m, torch.nn.LSTM) for m in new.core.modules())
    for name in ("torso", "core"):
        for k, v in pre.online[name].state_dict().items():
            assert torch.equal(new.online[name].state_dict()[k], v), f"{name}.{k}"
    for k, v in new.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k
