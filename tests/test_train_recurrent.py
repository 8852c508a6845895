"""The training loop with the LSTM core (sequence replay) and with the NGU intrinsic reward."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import Trainer, train
from rltransfer.core.checkpoint import latest_checkpoint, read_meta
from rltransfer.intrinsic.ngu import NGUConfig, NGUReward

TINY_NGU = NGUConfig(embedding_torso="mlp", rnd_torso="mlp", embedding_dim=8,
                     inverse_dynamics_hidden=16, rnd_feature_dim=8, rnd_hidden=16,
                     memory_capacity=200)
LSTM = R2D2Config(core="lstm", torso="mlp", feature_dim=16, hidden=16, lstm_hidden=16,
                  batch_size=8, sequence_length=8, burn_in=4, sequence_overlap=4, n_step=3,
                  gamma=0.9, lr=1e-3)
BASE = TrainConfig(
    env_id="MiniGrid-Empty-5x5-v0", num_envs=4, total_env_steps=400, seed=0,
    learning_starts_env_steps=100, updates_per_env_step=0.125, eval_every_env_steps=300,
    eval_episodes=2, checkpoint_every_env_steps=200, tensorboard=False, progress=False,
    replay_capacity_env_steps=2_000, agent=LSTM,
)


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.parametrize("core", ["lstm", "feedforward"])
def test_ngu_wired_end_to_end(tmp_path: Path, core: str) -> None:
    cfg = dataclasses.replace(
        BASE, run_dir=str(tmp_path), reward_free=True, intrinsic="ngu", intrinsic_scale=0.3,
        ngu=TINY_NGU, intrinsic_warmup_env_steps=40, max_episode_frames=40,
        agent=dataclasses.replace(LSTM, core=core),
    )
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.env_steps == 400 and result.num_updates > 10
    # Warm-up reached NGU's RND observation statistics.
    assert isinstance(trainer.intrinsic, NGUReward)
    assert float(trainer.intrinsic.rnd.obs_rms.count) > 40
    train_rec = _records(tmp_path, "train")
    assert train_rec, "a train record is logged at the evaluation"
    assert math.isfinite(train_rec[-1]["inverse_dynamics_loss"])
    assert 0.0 <= train_rec[-1]["inverse_dynamics_accuracy"] <= 1.0
    episodes = _records(tmp_path, "episode")
    assert episodes and all(e["intrinsic"] > 0 for e in episodes)
    arch = read_meta(tmp_path / "final")["architecture"]
    assert arch["agent_config"]["core"] == core


def test_recurrent_run_resumes_from_checkpoint(tmp_path: Path) -> None:
    cfg = dataclasses.replace(BASE, run_dir=str(tmp_path / "run"))
    first = train(cfg)
    ckpts = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert len(ckpts) == 2  # step_200 and the final step_400
    # Pretend the run died after its step_200 checkpoint.
    shutil.rmtree(tmp_path / "run" / "final")
    shutil.rmtree(ckpts[-1])
    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest is not None
    saved = read_meta(latest)
    assert saved["env_steps"] == 200 and saved["replay_saved"]
    trainer = Trainer(cfg)
    assert trainer.try_resume()
    assert trainer.replay.num_added == 200 // cfg.num_envs
    assert trainer.agent.num_updates == saved["num_updates"] > 0
    result = Trainer(cfg).run()
    assert result.env_steps == 400
    assert result.num_updates == first.num_updates  # same update schedule after resume


def test_bt_with_recurrent_prior_and_partial_init(tmp_path: Path) -> None:
    pre = train(dataclasses.replace(BASE, run_dir=str(tmp_path / "pre"), total_env_steps=200))
    assert pre.env_steps == 200
    cfg = dataclasses.replace(
        BASE, run_dir=str(tmp_path / "bt"), explore="bt", prior=str(tmp_path / "pre"),
        init="partial", total_env_steps=300, epsilon_levy=0.2,
    )
    trainer = Trainer(cfg)
    assert trainer.num_agent_actions == trainer.num_env_actions + 1
    pre_core = read_meta(tmp_path / "pre" / "final")["architecture"]["agent_config"]["core"]
    assert pre_core == "lstm"
    result = trainer.run()
    assert result.env_steps == 300 and np.isfinite(result.final_return_mean)


def test_transition_replay_gives_one_step_next_frames_for_ngu() -> None:
    from rltransfer.replay import TransitionReplay

    r = TransitionReplay(1, 20, (1, 1, 1), frame_stack=1, n_step=3, gamma=0.5,
                         prioritized=False)
    for t in range(6):  # episode 0..2 terminated at 2; slot 3 = final obs; 4.. new episode
        r.add(np.full((1, 1, 1, 1), t, np.uint8), np.array([t % 2]), None, None,
              np.ones(1), np.array([t == 2]), np.zeros(1, bool))
    b = r.gather(r.eligible_indices())
    steps = r.step_of_index(b["indices"])
    np.testing.assert_array_equal(steps, [0, 1, 2])
    np.testing.assert_array_equal(b["next_frame"].reshape(-1), [1, 2, 3])  # x_{t+1}
    assert b["next_frame_valid"].all()
    # The n-step next_obs is the bootstrap slot (3 for every step here), not x_{t+1}.
    np.testing.assert_array_equal(b["next_obs"].reshape(-1), [3, 3, 3])
