"""Evaluation runs on the training env: `eval_env_kwargs` changes only the protocol's
documented differences, and every loop (R2D2, the zero-shot score, EfficientZero, pixel SAC)
evaluates on it (issue 10, item 1: `bt-atari` / `ez-atari100k` trained without sticky actions
and were evaluated with ALE v5's 0.25)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import rltransfer.evaluation.protocol as protocol
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import train_env_kwargs
from rltransfer.core.policy import RandomPolicy
from rltransfer.envs import make_env
from rltransfer.evaluation.protocol import (
    EVAL_ENV_OVERRIDES,
    PROTOCOL_DIFFERENCES,
    eval_env_kwargs,
    evaluate_policy,
)

DIFFERENCES = {"terminal_on_life_loss", "reward_free"}
"""The documented env-level differences, written out by hand."""


def _without_differences(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in DIFFERENCES}


def test_the_documented_differences_are_the_two_overrides_and_unclipped_rewards() -> None:
    assert dict(EVAL_ENV_OVERRIDES) == {"terminal_on_life_loss": False, "reward_free": False}
    assert set(EVAL_ENV_OVERRIDES) == DIFFERENCES
    assert len(PROTOCOL_DIFFERENCES) == 3
    assert any("clipping" in d for d in PROTOCOL_DIFFERENCES)
    with pytest.raises(TypeError, match="env settings only"):
        eval_env_kwargs({"seed": 3})


@pytest.mark.parametrize(
    ("suite", "train", "expected"),
    [
        ("minigrid",
         {"task": "key", "full_obs": False, "max_episode_frames": 77, "reward_free": True},
         {"task": "key", "full_obs": False, "max_episode_frames": 77, "reward_free": False,
          "terminal_on_life_loss": False}),
        ("minatar",
         {"task": "game", "sticky_action_prob": 0.0, "max_episode_frames": 500},
         {"task": "game", "sticky_action_prob": 0.0, "max_episode_frames": 500,
          "reward_free": False, "terminal_on_life_loss": False}),
        ("atari",
         {"task": "ghosts-easy", "sticky_action_prob": 0.0, "terminal_on_life_loss": True,
          "frame_size": 96, "grayscale": False, "max_episode_frames": 108_000,
          "reward_free": True},
         {"task": "ghosts-easy", "sticky_action_prob": 0.0, "terminal_on_life_loss": False,
          "frame_size": 96, "grayscale": False, "max_episode_frames": 108_000,
          "reward_free": False}),
        ("dmc",
         {"action_repeat": 2, "render_size": 100, "distraction": "builtin",
          "max_episode_frames": 1000},
         {"action_repeat": 2, "render_size": 100, "distraction": "builtin",
          "max_episode_frames": 1000, "reward_free": False, "terminal_on_life_loss": False}),
    ],
)
def test_eval_kwargs_are_the_train_kwargs_minus_the_documented_differences(
    suite: str, train: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = dict(train)
    got = eval_env_kwargs(train)
    assert got == expected
    assert train == before  # not changed in place
    assert _without_differences(got) == _without_differences(train)


def test_r2d2_config_on_ale_without_sticky_actions() -> None:
    cfg = TrainConfig(env_id="ALE/MsPacman-v5", sticky_action_prob=0.0,
                      terminal_on_life_loss=True, max_episode_frames=27_000, task="ghosts-easy")
    train = train_env_kwargs(cfg)
    assert train == {"task": "ghosts-easy", "reward_free": False, "terminal_on_life_loss": True,
                     "sticky_action_prob": 0.0, "max_episode_frames": 27_000}
    assert eval_env_kwargs(train) == {
        "task": "ghosts-easy", "reward_free": False, "terminal_on_life_loss": False,
        "sticky_action_prob": 0.0, "max_episode_frames": 27_000}


def test_ez_atari100k_config() -> None:
    from rltransfer.agents.efficientzero.config import ez_env_kwargs
    from rltransfer.experiments.efficientzero import ez_atari100k

    train = ez_env_kwargs(ez_atari100k(run_dir="unused", device="cpu"))
    assert train == {"max_episode_frames": 108_000, "terminal_on_life_loss": True,
                     "sticky_action_prob": 0.0, "frame_size": 96, "grayscale": False}
    assert eval_env_kwargs(train) == {
        "max_episode_frames": 108_000, "terminal_on_life_loss": False, "reward_free": False,
        "sticky_action_prob": 0.0, "frame_size": 96, "grayscale": False}


def test_sac_config_with_distraction() -> None:
    from rltransfer.agents.sac.config import SACTrainConfig, sac_env_kwargs

    cfg = SACTrainConfig(env_id="DMC/walker-walk", action_repeat=2, render_size=100,
                         distraction="builtin")
    train = sac_env_kwargs(cfg)
    assert train["action_repeat"] == 2
    assert train["render_size"] == 100
    assert train["distraction"] == "builtin"
    got = eval_env_kwargs(train)
    assert _without_differences(got) == _without_differences(train)
    assert got["terminal_on_life_loss"] is False and got["reward_free"] is False


def test_evaluate_policy_refuses_contradictory_settings() -> None:
    with pytest.raises(ValueError, match="conflicts"):
        evaluate_policy(RandomPolicy(3), "MiniGrid-Empty-5x5-v0", 1, seed=0, task="goal",
                        env_kwargs={"task": "key"})


class Recorder:
    """Wraps ``make_env`` and records ``(env_id, kwargs)`` of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, env_id: str, num_envs: int, seed: int, **kwargs: Any) -> Any:
        self.calls.append((env_id, dict(kwargs)))
        return make_env(env_id, num_envs, seed, **kwargs)


def _sticky(kwargs: dict[str, Any]) -> Any:
    return kwargs.get("sticky_action_prob", "suite default")


def test_bt_atari_like_run_evaluates_without_sticky_actions_when_trained_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bt-atari recipe's env settings (Ms. Pac-Man, sticky actions 0) with a tiny agent:
    the training env and every evaluation env (intermediate and final) get sticky 0, the
    evaluation envs no life-loss terminals; the zero-shot score of pi_p too."""
    import rltransfer.agents.r2d2.train as train_module
    import rltransfer.experiments.behavior_transfer as experiment
    from rltransfer.experiments.behavior_transfer import get_recipe

    recorder = Recorder()
    monkeypatch.setattr(train_module, "make_env", recorder)
    monkeypatch.setattr(protocol, "make_env", recorder)
    exp = get_recipe("bt-atari")
    assert exp.train.sticky_action_prob == 0.0
    cfg = dataclasses.replace(
        exp.train, num_envs=1, total_env_steps=40, learning_starts_env_steps=30,
        updates_per_env_step=0.25, eval_every_env_steps=20, eval_episodes=1,
        checkpoint_every_env_steps=10**6, replay_capacity_env_steps=500,
        max_episode_frames=120, terminal_on_life_loss=True, tensorboard=False, progress=False,
        run_dir=str(tmp_path / "bt"),
        agent=R2D2Config(batch_size=4, feature_dim=16, hidden=16),
    )
    train_module.train(cfg)
    (train_id, train_kwargs), *evals = recorder.calls
    assert train_id == "ALE/MsPacman-v5"
    assert _sticky(train_kwargs) == 0.0 and train_kwargs["terminal_on_life_loss"] is True
    assert len(evals) == 2  # at 20 env steps and the final one
    for env_id, kwargs in evals:
        assert env_id == "ALE/MsPacman-v5"
        assert _sticky(kwargs) == 0.0
        assert kwargs["terminal_on_life_loss"] is False
        assert kwargs["max_episode_frames"] == 120
        assert _without_differences(kwargs) == _without_differences(train_kwargs)
    evals_logged = [json.loads(x) for x in (tmp_path / "bt" / "metrics.jsonl").read_text()
                    .splitlines() if '"eval"' in x]
    assert len(evals_logged) == 2

    # The zero-shot score of pi_p uses the transfer runs' evaluation env.
    recorder.calls.clear()
    monkeypatch.setattr(experiment, "load_policy",
                        lambda path, epsilon=0.0: RandomPolicy(9, seed=0))
    zero_exp = dataclasses.replace(exp, train=cfg, zero_shot_episodes=1)
    (tmp_path / "exp").mkdir()
    returns = experiment.zero_shot(zero_exp, tmp_path / "exp")
    assert len(returns) == 1
    ((env_id, kwargs),) = recorder.calls
    assert env_id == "ALE/MsPacman-v5" and _sticky(kwargs) == 0.0
    assert kwargs["terminal_on_life_loss"] is False and kwargs["max_episode_frames"] == 120


def test_efficientzero_evaluates_with_its_training_sticky_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MinAtar's default is 0.1 sticky actions: a run trained with 0 evaluates with 0 (the
    old evaluate dropped the setting, so the suite default applied)."""
    import rltransfer.agents.efficientzero.train as ez
    from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
    from rltransfer.experiments.efficientzero import ez_small

    recorder = Recorder()
    monkeypatch.setattr(ez, "make_env", recorder)
    monkeypatch.setattr(protocol, "make_env", recorder)
    base = ez_small(run_dir=str(tmp_path / "ez"), total_env_steps=16)
    cfg = dataclasses.replace(
        base, num_envs=2, mcts=dataclasses.replace(base.mcts, num_simulations=2),
        batch_size=4, updates_per_env_step=0.1, learning_starts_env_steps=8, sticky_action_prob=0.0,
        replay_capacity_env_steps=200, checkpoint_every_env_steps=10**6,
        eval_every_env_steps=10**6, eval_episodes=1, max_episode_frames=20, progress=False,
        tensorboard=False, reanalyse=ReanalyseConfig(reanalyse_fraction=0.5),
    )
    ez.train_efficientzero(cfg)
    (_, train_kwargs), (_, eval_kwargs) = recorder.calls
    assert train_kwargs["sticky_action_prob"] == 0.0
    assert eval_kwargs["sticky_action_prob"] == 0.0
    assert eval_kwargs["max_episode_frames"] == 20
    assert _without_differences(eval_kwargs) == _without_differences(train_kwargs)


class _PixelBoxEnv(gym.Env):
    """Pixels 3x24x24 (the step count), a 1-D Box action, reward 1 per step, 5 steps."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (3, 24, 24), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((3, 24, 24), np.uint8), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.full((3, 24, 24), self.t, np.uint8), 1.0, False, self.t >= 5, {}


def test_sac_evaluates_on_the_training_env_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SACTrainer builds its training env from sac_env_kwargs and its evaluation envs from
    eval_env_kwargs of those (make_env recorded; a tiny pixel env stands in for DMC)."""
    import rltransfer.envs as envs_module
    from rltransfer.agents.sac.config import SACConfig, SACTrainConfig, sac_env_kwargs
    from rltransfer.agents.sac.train import SACTrainer
    from rltransfer.core.metrics import MetricsLogger
    from rltransfer.envs.wrappers import TaskRewardInfo
    from rltransfer.nets.pixel_encoders import PixelEncoderConfig

    calls: list[dict[str, Any]] = []

    def fake_make_env(env_id: str, num_envs: int, seed: int, **kwargs: Any) -> Any:
        assert env_id == "DMC/walker-walk"
        calls.append(dict(kwargs))
        env = gym.vector.SyncVectorEnv([_PixelBoxEnv] * num_envs,
                                       autoreset_mode=AutoresetMode.NEXT_STEP)
        return TaskRewardInfo(env, reward_free=False)

    monkeypatch.setattr(envs_module, "make_env", fake_make_env)
    cfg = SACTrainConfig(
        env_id="DMC/walker-walk", action_repeat=2, render_size=100, distraction="builtin",
        run_dir=str(tmp_path / "sac"), num_envs=1, frame_stack=1, eval_episodes=2,
        progress=False, tensorboard=False, agent=SACConfig(hidden_dim=16, batch_size=4),
        encoder=PixelEncoderConfig(num_filters=8, feature_dim=8),
    )
    trainer = SACTrainer(cfg)
    logger = MetricsLogger(trainer.run_dir, tensorboard=False)
    try:
        assert trainer.evaluate(logger) == pytest.approx(5.0)  # 5 steps of reward 1
    finally:
        logger.close()
        trainer.envs.close()
    train_kwargs, eval_kwargs = calls
    assert train_kwargs == sac_env_kwargs(cfg)
    assert train_kwargs["action_repeat"] == 2 and train_kwargs["render_size"] == 100
    assert train_kwargs["distraction"] == "builtin"
    assert eval_kwargs == eval_env_kwargs(train_kwargs)
    assert _without_differences(eval_kwargs) == _without_differences(train_kwargs)
