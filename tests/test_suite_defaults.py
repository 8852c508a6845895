"""Per-suite R2D2 defaults: the table, ``suite_config`` and the CLI's resolution."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from rltransfer import cli
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.suites import (
    SUITE_DEFAULTS,
    apply_suite_defaults,
    suite_config,
    suite_defaults,
)
from rltransfer.core.config import ConfigError
from rltransfer.envs import UnknownEnvError
from rltransfer.experiments.behavior_transfer import bt_atari, bt_minigrid, bt_minigrid_benchmark
from rltransfer.methods.reward_free import PRETRAIN_DEFAULTS

LEARNER = ("gamma", "n_step", "lr", "adam_eps", "target_update_period_updates")

# R2D2 (Kapturowski et al. 2019, Table 2): discount 0.997, 5-step returns, Adam lr 1e-4 and
# epsilon 1e-3, target network copied every 2,500 updates.
R2D2_PAPER = {"gamma": 0.997, "n_step": 5, "lr": 1e-4, "adam_eps": 1e-3,
              "target_update_period_updates": 2500}
MINIGRID = {"gamma": 0.9, "n_step": 5, "lr": 1e-3, "adam_eps": 1e-6,
            "target_update_period_updates": 250}


def _learner(agent: R2D2Config) -> dict[str, float]:
    return {k: getattr(agent, k) for k in LEARNER}


def test_atari_keeps_r2d2_paper_values_which_are_the_field_defaults() -> None:
    cfg = suite_config("ALE/MsPacman-v5")
    assert _learner(cfg.agent) == R2D2_PAPER
    assert _learner(R2D2Config()) == R2D2_PAPER
    assert cfg == TrainConfig(env_id="ALE/MsPacman-v5")
    assert (cfg.learning_starts_env_steps, cfg.updates_per_env_step, cfg.epsilon_schedule) == (
        2000, 0.25, "ape_x")


def test_minigrid_defaults_and_user_values_win() -> None:
    assert _learner(suite_config("MiniGrid-Empty-5x5-v0").agent) == MINIGRID
    cfg = suite_config("MiniGrid-DoorKey-8x8-v0", num_envs=4, learning_starts_env_steps=10,
                       agent={"lr": 5e-4, "hidden": 64})
    assert cfg.env_id == "MiniGrid-DoorKey-8x8-v0"
    assert cfg.num_envs == 4 and cfg.learning_starts_env_steps == 10
    assert cfg.agent.lr == 5e-4 and cfg.agent.hidden == 64
    assert cfg.agent.adam_eps == 1e-6 and cfg.agent.gamma == 0.9  # the rest: the suite's
    assert cfg.agent.feature_dim == 512  # not a suite field: the R2D2Config default
    with pytest.raises(TypeError):
        suite_config("MiniGrid-Empty-5x5-v0", no_such_field=1)


def test_suite_lookup_errors_and_table() -> None:
    assert set(SUITE_DEFAULTS) == {"atari", "minatar", "minigrid"}
    assert suite_defaults("MinAtar/Breakout-v1") is SUITE_DEFAULTS["minatar"]
    with pytest.raises(ConfigError, match="train-sac"):
        suite_defaults("DMC/cheetah-run")
    with pytest.raises(UnknownEnvError):
        suite_defaults("CartPole-v1")


def test_apply_suite_defaults_keeps_the_other_fields() -> None:
    cfg = apply_suite_defaults(PRETRAIN_DEFAULTS, "MiniGrid-Empty-5x5-v0")
    assert cfg.reward_free and cfg.intrinsic == "rnd" and cfg.run_dir == "runs/pretrain"
    assert _learner(cfg.agent) == MINIGRID
    back = apply_suite_defaults(cfg, "ALE/Pong-v5")
    assert _learner(back.agent) == R2D2_PAPER and back.env_id == "ALE/Pong-v5"


def test_recipes_keep_their_own_values() -> None:
    for exp in (bt_minigrid(), bt_minigrid_benchmark()):
        for cfg in (exp.pretrain, exp.train):
            assert _learner(cfg.agent) == {"gamma": 0.9, "n_step": 5, "lr": 1e-3,
                                           "adam_eps": 1e-6, "target_update_period_updates": 250}
            assert cfg.epsilon_schedule == "linear" and cfg.learning_starts_env_steps == 1000
    for cfg in (bt_atari().pretrain, bt_atari().train):
        assert _learner(cfg.agent) == R2D2_PAPER
        assert cfg.learning_starts_env_steps == 20_000


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--env-id", "ALE/Pong-v5"], "ALE/Pong-v5"),
    (["train", "--seed", "3", "--env-id=MinAtar/Breakout-v1"], "MinAtar/Breakout-v1"),
    (["train", "--env_id", "MiniGrid-Empty-8x8-v0", "--seed", "1"], "MiniGrid-Empty-8x8-v0"),
    (["train", "--seed", "1"], None),
    (["train", "--env-id"], None),
])
def test_env_id_flag(argv: list[str], expected: str | None) -> None:
    assert cli.env_id_flag(argv) == expected


def _default_of(command: object) -> TrainConfig:
    default = inspect.signature(command).parameters["cfg"].default  # type: ignore[arg-type]
    assert isinstance(default, TrainConfig)
    return default


def test_cli_default_follows_the_named_env() -> None:
    atari = _default_of(cli.with_suite_defaults(cli.train_cmd, TrainConfig(),
                                                ["train", "--env-id", "ALE/Pong-v5"]))
    assert atari.env_id == "ALE/Pong-v5" and _learner(atari.agent) == R2D2_PAPER
    # no --env-id: the verb's default env (MiniGrid-DoorKey-5x5) and its suite's values
    plain = _default_of(cli.with_suite_defaults(cli.train_cmd, TrainConfig(), ["train"]))
    assert plain.env_id == "MiniGrid-DoorKey-5x5-v0" and _learner(plain.agent) == MINIGRID
    pre = _default_of(cli.with_suite_defaults(
        cli.pretrain, PRETRAIN_DEFAULTS, ["pretrain", "--env-id", "MiniGrid-Empty-5x5-v0"]))
    assert pre.reward_free and pre.intrinsic == "rnd" and _learner(pre.agent) == MINIGRID
    # an id of no suite keeps the base; the run then reports the unknown env
    odd = _default_of(cli.with_suite_defaults(cli.train_cmd, TrainConfig(),
                                              ["train", "--env-id", "CartPole-v1"]))
    assert odd == TrainConfig()


@pytest.mark.slow
def test_cli_run_records_resolved_values_and_explicit_flags_win(tmp_path: Path) -> None:
    common = ["--env-id", "MiniGrid-Empty-5x5-v0", "--total-env-steps", "40", "--num-envs",
              "2", "--eval-episodes", "1", "--agent.feature-dim", "8", "--agent.hidden", "8",
              "--no-progress", "--no-tensorboard"]
    cli.main(["train", *common, "--run-dir", str(tmp_path / "a")])
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert {k: saved["agent"][k] for k in LEARNER} == MINIGRID
    assert saved["learning_starts_env_steps"] == 2000
    cli.main(["train", *common, "--run-dir", str(tmp_path / "b"), "--agent.adam-eps", "1e-3",
              "--agent.lr", "1e-4", "--learning-starts-env-steps", "20"])
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert {k: saved["agent"][k] for k in LEARNER} == {**MINIGRID, "adam_eps": 1e-3, "lr": 1e-4}
    assert saved["learning_starts_env_steps"] == 20
    assert dataclasses.asdict(TrainConfig())["agent"]["adam_eps"] == 1e-3  # field untouched
