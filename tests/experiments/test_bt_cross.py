"""Behavior Transfer across environments: ``BTExperiment.transfer_env_id`` (pi_p pretrained on
one env, the strategies trained on another of the same spaces), the space check before anything
runs, and the ``bt-minigrid-cross`` recipe (fast settings, slow smoke run that resumes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.core.config import ConfigError
from rltransfer.core.policy import SpaceMismatchError
from rltransfer.errors import UserError
from rltransfer.experiments import RecipeOverrides, build_recipe, get_recipe
from rltransfer.experiments.behavior_transfer import (
    BTExperiment,
    SuiteEnv,
    check_transfer_spaces,
    run_experiment,
)
from rltransfer.experiments.bt_suite import bt_minigrid_cross

PRETRAIN_ENV, TRANSFER_ENV = "MiniGrid-DoorKey-6x6-v0", "MiniGrid-LavaGapS6-v0"


def _exp(transfer_env_id: str | None, strategies: tuple[str, ...] = ("bt",)) -> BTExperiment:
    exp = bt_minigrid_cross()
    return dataclasses.replace(exp, transfer_env_id=transfer_env_id, strategies=strategies)


def test_transfer_env_defaults_to_the_pretraining_env() -> None:
    same = _exp(None)
    assert same.train.env_id == same.pretrain.env_id == PRETRAIN_ENV
    other = _exp(TRANSFER_ENV)
    assert (other.pretrain.env_id, other.train.env_id) == (PRETRAIN_ENV, TRANSFER_ENV)
    # replacing the pretraining config keeps the transfer env; without one it follows
    moved = dataclasses.replace(same, pretrain=dataclasses.replace(
        same.pretrain, env_id="MiniGrid-Empty-6x6-v0"))
    assert moved.train.env_id == "MiniGrid-Empty-6x6-v0"
    with pytest.raises(ConfigError, match="transfer_env_id does not apply to a suite"):
        dataclasses.replace(other, suite=(SuiteEnv(PRETRAIN_ENV),))


def test_the_recipe_transfers_between_two_layouts_of_the_same_spaces() -> None:
    recipe = get_recipe("bt-minigrid-cross")
    assert recipe.kind == "bt" and not recipe.needs_gpu
    assert recipe.runtime.startswith("3 min 2 s")  # measured, docs/benchmarks.md
    exp = build_recipe("bt-minigrid-cross")
    assert isinstance(exp, BTExperiment)
    assert (exp.pretrain.env_id, exp.train.env_id) == (PRETRAIN_ENV, TRANSFER_ENV)
    assert exp.pretrain.reward_free and exp.pretrain.intrinsic == "ngu"
    assert exp.train.task == "goal" and not exp.train.reward_free
    assert {"bt", "full_init", "scratch_eps_greedy"} <= set(exp.strategies)
    check_transfer_spaces(exp)  # both (3, 6, 6) grids (full_obs), Discrete(7)
    # overrides of `rltransfer run` keep the transfer env
    small = build_recipe("bt-minigrid-cross", RecipeOverrides(train_env_steps=1_000))
    assert isinstance(small, BTExperiment) and small.train.env_id == TRANSFER_ENV


@pytest.mark.parametrize(
    ("transfer_env", "strategies", "difference"),
    [
        # full_obs grids depend on the grid size
        ("MiniGrid-DoorKey-5x5-v0", ("bt",), r"observations \(3, 6, 6\) uint8 vs \(3, 5, 5\)"),
        # weight transfer is checked as BT is
        ("MiniGrid-Empty-5x5-v0", ("full_init",), r"observations \(3, 6, 6\)"),
        # Dynamic-Obstacles has 3 actions (left, right, forward), DoorKey 7
        ("MiniGrid-Dynamic-Obstacles-6x6-v0", ("partial_init", "bt"),
         r"actions Discrete\(7\) vs Discrete\(3\)"),
    ],
)
def test_mismatched_spaces_are_refused_before_anything_runs(
    tmp_path: Path, transfer_env: str, strategies: tuple[str, ...], difference: str,
) -> None:
    exp = _exp(transfer_env, strategies)
    with pytest.raises(SpaceMismatchError, match=difference) as info:
        run_experiment(exp, tmp_path)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert PRETRAIN_ENV in message and transfer_env in message
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def _tiny(num_seeds: int) -> BTExperiment:
    exp = build_recipe("bt-minigrid-cross", RecipeOverrides(
        num_seeds=num_seeds, workers=1, strategies=("scratch_eps_greedy", "bt", "full_init")))
    assert isinstance(exp, BTExperiment)

    def small(cfg: TrainConfig, steps: int) -> TrainConfig:
        return dataclasses.replace(
            cfg, total_env_steps=steps, learning_starts_env_steps=100,
            eval_every_env_steps=200, eval_episodes=2, checkpoint_every_env_steps=10_000,
            max_episode_frames=40, intrinsic_warmup_env_steps=100, progress=False,
            tensorboard=False, num_envs=4,
        )

    return dataclasses.replace(exp, pretrain=small(exp.pretrain, 300),
                               train=small(exp.train, 400), zero_shot_episodes=2)


@pytest.mark.slow
def test_cross_env_smoke_run_resumes_and_reports_each_stages_env(tmp_path: Path) -> None:
    """The recipe at a few hundred env steps, one seed, then resumed with two (about 30 s)."""
    report = run_experiment(_tiny(1), tmp_path)
    pre = json.loads((tmp_path / "pretrain" / "config.json").read_text())
    assert (pre["env_id"], pre["reward_free"]) == (PRETRAIN_ENV, True)
    zero = json.loads((tmp_path / "zero_shot.json").read_text())
    assert (zero["pretrain_env_id"], zero["env_id"], zero["task"]) == (
        PRETRAIN_ENV, TRANSFER_ENV, "goal")
    bt_run = tmp_path / "runs" / "bt" / "seed_0"
    cfg = json.loads((bt_run / "config.json").read_text())
    assert cfg["env_id"] == TRANSFER_ENV and cfg["prior"] == str(tmp_path / "pretrain")
    meta = json.loads((bt_run / "final" / "meta.json").read_text())
    assert meta["architecture"]["obs_shape"] == [3, 6, 6]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "pretrain" / "metrics.jsonl",
                                                bt_run / "metrics.jsonl")}
    report = run_experiment(_tiny(2), tmp_path)  # resumes: adds seed 1, redoes nothing
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    for strategy in ("scratch_eps_greedy", "bt", "full_init"):
        assert (tmp_path / "runs" / strategy / "seed_1" / "final").is_dir()
    text = report.read_text()
    assert f"on `{PRETRAIN_ENV}`; transfer runs on `{TRANSFER_ENV}`" in text
    assert "another env of the same spaces" in text
