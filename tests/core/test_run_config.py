"""The one base of run configs (``core.config.RunConfig``): shared fields, per-agent defaults,
one validation style listing every problem, and older keys refused with their new name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.efficientzero.config import EZTrainConfig
from rltransfer.agents.r2d2.config import Explore, Init, TrainConfig
from rltransfer.agents.r2d2.suites import suite_config
from rltransfer.agents.sac.config import SACTrainConfig
from rltransfer.core.config import (
    ConfigError,
    RunConfig,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from rltransfer.core.run_dir import RunConflictError, check_run_dir
from rltransfer.core.schedule import ReplayRatio
from rltransfer.experiments import behavior_transfer
from rltransfer.methods.xtra.config import DistillConfig, TeacherConfig

RUN_CONFIGS = (TrainConfig, SACTrainConfig, EZTrainConfig)
SHARED = {f.name for f in dataclasses.fields(RunConfig)}


@pytest.mark.parametrize("cls", RUN_CONFIGS)
def test_every_trainer_config_is_a_run_config(cls: type[RunConfig]) -> None:
    assert issubclass(cls, RunConfig)
    assert SHARED <= {f.name for f in dataclasses.fields(cls)}
    cfg = cls()
    cfg.validate()  # the defaults are valid
    assert "warmup_env_steps" not in to_dict(cfg) and "env_steps_per_update" not in to_dict(cfg)


def test_per_agent_defaults_are_kept() -> None:
    r2d2, sac, ez = TrainConfig(), SACTrainConfig(), EZTrainConfig()
    # R2D2: one update every 4 env steps, learning after 2,000, 8 envs.
    assert (r2d2.updates_per_env_step, r2d2.learning_starts_env_steps, r2d2.num_envs,
            r2d2.run_dir, r2d2.env_id) == (0.25, 2_000, 8, "runs/train", "MiniGrid-DoorKey-5x5-v0")
    # SAC (PAD): 1,000 random steps, one update per agent step, one env.
    assert (sac.updates_per_env_step, sac.learning_starts_env_steps, sac.num_envs,
            sac.total_env_steps, sac.run_dir) == (1.0, 1_000, 1, 100_000, "runs/sac")
    # EfficientZero: 2,000 steps, one update per env step, 8 envs, 8 eval episodes.
    assert (ez.updates_per_env_step, ez.learning_starts_env_steps, ez.num_envs,
            ez.eval_episodes, ez.run_dir) == (1.0, 2_000, 8, 8, "runs/efficientzero")


@pytest.mark.parametrize("cls", RUN_CONFIGS)
def test_validate_lists_every_problem(cls: type[RunConfig]) -> None:
    cfg = dataclasses.replace(cls(), num_envs=0, updates_per_env_step=0.0,
                              learning_starts_env_steps=-1, keep_checkpoints=0)
    with pytest.raises(ConfigError, match=f"invalid {cls.__name__}") as info:
        cfg.validate()
    for problem in ("num_envs must be >= 1", "updates_per_env_step must be > 0",
                    "learning_starts_env_steps must be >= 0", "keep_checkpoints must be >= 1"):
        assert problem in str(info.value)


def test_subclass_problems_come_with_the_run_level_ones() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(explore="bt", total_env_steps=0).validate()
    assert "explore=bt needs --prior" in str(info.value)
    assert "total_env_steps must be >= 1" in str(info.value)
    with pytest.raises(ConfigError) as info:
        SACTrainConfig(freeze_encoder=True, eval_episodes=0).validate()
    assert "freeze_encoder needs init_encoder_from" in str(info.value)
    assert "eval_episodes must be >= 1" in str(info.value)
    with pytest.raises(ConfigError) as info:
        EZTrainConfig(batch_size=0, torch_threads=0).validate()
    assert "batch_size must be >= 1" in str(info.value)
    assert "torch_threads must be >= 1" in str(info.value)


def test_xtra_stages_validate_the_same_way() -> None:
    with pytest.raises(ConfigError, match="TeacherConfig") as info:
        TeacherConfig(num_updates=0).validate()
    assert "num_updates must be >= 1" in str(info.value)
    assert "dataset is required" in str(info.value)
    with pytest.raises(ConfigError, match="2 datasets need as many teachers"):
        DistillConfig(datasets=("a", "b"), teachers=("t",)).validate()
    TeacherConfig(dataset="d").validate()


@pytest.mark.parametrize(("cls", "old", "new"), [
    (SACTrainConfig, "warmup_env_steps", "learning_starts_env_steps"),
    (EZTrainConfig, "warmup_env_steps", "learning_starts_env_steps"),
    (TrainConfig, "env_steps_per_update", "updates_per_env_step"),
])
def test_an_older_config_json_names_the_new_key(
    tmp_path: Path, cls: type[RunConfig], old: str, new: str
) -> None:
    data = to_dict(cls())
    data[old] = data.pop(new) if old == "warmup_env_steps" else 4.0
    if old == "env_steps_per_update":
        del data[new]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"'{old}' was (renamed to|replaced by) '{new}'"):
        load_config(cls, path)
    if old == "env_steps_per_update":
        with pytest.raises(ConfigError, match=r"updates_per_env_step = 1 / env_steps_per_update"):
            from_dict(cls, data)
    # Resuming such a run directory refuses it with the same message (nothing converted).
    cfg = dataclasses.replace(cls(), run_dir=str(tmp_path))
    with pytest.raises(RunConflictError, match=f"'{old}' was"):
        check_run_dir(cfg, tmp_path)
    # The current key round-trips.
    save_config(cls(), path)
    assert load_config(cls, path) == cls()


def test_nested_run_config_keys_are_checked_too() -> None:
    from rltransfer.methods.xtra.finetune import FinetuneConfig

    data = to_dict(FinetuneConfig())
    data["train"]["warmup_env_steps"] = data["train"].pop("learning_starts_env_steps")
    with pytest.raises(ConfigError, match="'warmup_env_steps' was renamed"):
        from_dict(FinetuneConfig, data)


def test_suite_config_refuses_the_old_replay_ratio_name() -> None:
    with pytest.raises(ConfigError, match="updates_per_env_step = 1 / env_steps_per_update"):
        suite_config("MiniGrid-Empty-5x5-v0", env_steps_per_update=4.0)
    assert suite_config("MiniGrid-Empty-5x5-v0", updates_per_env_step=0.125
                        ).updates_per_env_step == 0.125


@pytest.mark.parametrize("k", [1.0, 2.0, 4.0, 8.0, 16.0])
def test_r2d2_replay_ratio_is_the_same_float_as_env_steps_per_update(k: float) -> None:
    """R2D2's debt was ``ReplayRatio(1, k)`` from ``env_steps_per_update = k``; it is now
    ``ReplayRatio(u, 1)`` from ``updates_per_env_step = u = 1 / k``: for the powers of two the
    recipes and suite defaults use (4, 8), ``n * (1 / k) == n / k`` exactly, so the update
    schedule (and every pin) is bit-identical."""
    old, new = ReplayRatio(1, k), ReplayRatio(1.0 / k, 1)
    for n in [*range(0, 4_097), 10**6 + 3, 2**40 + 1]:
        assert old.debt(n) == new.debt(n)


def test_explore_and_init_have_one_definition() -> None:
    assert behavior_transfer.Explore is Explore
    assert behavior_transfer.Init is Init
    hints = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    assert hints["explore"] == "Explore" and hints["init"] == "Init"
