"""Behavior Transfer on a real Atari game: pretrain reward-free, then BT from that policy on
the paper's modified-reward task variant (eat vulnerable ghosts, pac-dots -10)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import train
from rltransfer.experiments import RecipeOverrides, build_recipe
from rltransfer.experiments.behavior_transfer import BTExperiment, run_experiment


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


def _tiny_bt_atari(env_id: str, task: str) -> BTExperiment:
    """The ``bt-atari`` recipe (conv + LSTM R2D2 agent, NGU pretraining) on ``env_id`` at smoke
    scale: 2 envs, 160 env steps per stage, sequences of 10 after a burn-in of 5 (overlap 5,
    R2D2's minimum: n_step), small nets."""
    exp = build_recipe("bt-atari", RecipeOverrides(num_seeds=1, workers=1,
                                                   strategies=("bt", "partial_init")))
    assert isinstance(exp, BTExperiment)
    agent = dataclasses.replace(exp.train.agent, lstm_hidden=32, feature_dim=32, hidden=32,
                                batch_size=4, sequence_length=10, burn_in=5, sequence_overlap=5)
    assert agent.core == "lstm"
    ngu = dataclasses.replace(exp.pretrain.ngu, rnd_hidden=32, rnd_feature_dim=32,
                              inverse_dynamics_hidden=32)

    def small(cfg: TrainConfig) -> TrainConfig:
        return dataclasses.replace(
            cfg, env_id=env_id, num_envs=2, total_env_steps=160, replay_capacity_env_steps=400,
            learning_starts_env_steps=60, intrinsic_warmup_env_steps=40,
            eval_every_env_steps=10**9, eval_episodes=1, checkpoint_every_env_steps=80,
            max_episode_frames=200, agent=agent, ngu=ngu, progress=False, tensorboard=False,
        )

    return dataclasses.replace(exp, pretrain=small(exp.pretrain),
                               train=dataclasses.replace(small(exp.train), task=task),
                               zero_shot_episodes=1)


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "task"), [("ALE/MsPacman-v5", "ghosts-easy"),
                                              ("ALE/Hero-v5", "miners-easy")])
def test_bt_atari_recipe_on_a_task_variant_resumes_and_reports(
    tmp_path: Path, env_id: str, task: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """``bt-atari`` end to end (recipe -> run_experiment) at smoke scale on the CPU: NGU
    pretraining on the game, then BT and partial init on its task variant; an interrupted run
    resumes from its checkpoint; the report names both stages (about 30 s each on 2 cores)."""
    exp = _tiny_bt_atari(env_id, task)
    assert (exp.pretrain.env_id, exp.train.env_id, exp.train.task) == (env_id, env_id, task)
    report = run_experiment(exp, tmp_path)
    pre = json.loads((tmp_path / "pretrain" / "final" / "meta.json").read_text())
    assert pre["env_steps"] == 160
    bt_run = tmp_path / "runs" / "bt" / "seed_0"
    meta = json.loads((bt_run / "final" / "meta.json").read_text())
    arch = meta["architecture"]
    assert (arch["task"], arch["obs_shape"]) == (task, [4, 84, 84])
    assert arch["agent_config"]["core"] == "lstm" and arch["agent_config"]["sequence_length"] == 10
    assert arch["num_actions"] == arch["num_env_actions"] + 1  # the extra action a+
    assert meta["num_updates"] > 0
    zero = json.loads((tmp_path / "zero_shot.json").read_text())
    assert (zero["env_id"], zero["task"], len(zero["returns"])) == (env_id, task, 1)
    # interrupt the bt run after its first checkpoint: no final/, no later checkpoint
    shutil.rmtree(bt_run / "final")
    for ckpt in sorted((bt_run / "checkpoints").iterdir())[1:]:
        shutil.rmtree(ckpt)
    pretrain_stamp = (tmp_path / "pretrain" / "metrics.jsonl").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="rltransfer.core.run"):
        report = run_experiment(exp, tmp_path)
    assert f"resumed {bt_run} at 80 env steps" in caplog.text  # only the interrupted run
    assert caplog.text.count("resumed ") == 1
    assert (tmp_path / "pretrain" / "metrics.jsonl").stat().st_mtime_ns == pretrain_stamp
    assert json.loads((bt_run / "final" / "meta.json").read_text())["env_steps"] == 160
    text = report.read_text()
    assert f"on `{env_id}`; transfer runs on `{env_id}`, task `{task}`" in text
    for strategy in ("bt", "partial_init"):
        assert strategy in text
