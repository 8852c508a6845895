"""Behavior Transfer on a real Atari game: pretrain reward-free, then BT from that policy on
the paper's modified-reward task variant (eat vulnerable ghosts, pac-dots -10)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.r2d2 import R2D2Config
from rltransfer.config import TrainConfig
from rltransfer.train import train


@pytest.mark.slow
def test_bt_on_ms_pacman(tmp_path: Path) -> None:
    base = TrainConfig(
        env_id="ALE/MsPacman-v5", num_envs=2, total_env_steps=600,
        learning_starts_env_steps=300, env_steps_per_update=8.0, eval_every_env_steps=10**9,
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
