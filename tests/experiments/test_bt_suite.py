"""The ``bt-suite`` recipe: its settings (fast) and a smoke run that resumes (slow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.core.config import ConfigError
from rltransfer.experiments import build_recipe, get_recipe
from rltransfer.experiments.behavior_transfer import STRATEGIES, BTExperiment, SuiteEnv
from rltransfer.experiments.bt_suite import (
    bt_suite,
    env_slug,
    run_suite,
    suite_scores,
    task_max_return,
)


def test_recipe_settings() -> None:
    exp = build_recipe("bt-suite")
    assert isinstance(exp, BTExperiment)
    assert get_recipe("bt-suite").kind == "bt"
    assert exp.strategies == tuple(STRATEGIES)  # all 9, ablations included
    assert exp.num_seeds >= 5
    assert [e.env_id for e in exp.suite] == ["MiniGrid-DoorKey-5x5-v0",
                                            "MiniGrid-DoorKey-6x6-v0"]
    assert all(e.tasks == ("goal", "key", "door") for e in exp.suite)
    assert exp.pretrain.intrinsic == "ngu" and exp.pretrain.reward_free
    assert exp.pretrain.total_env_steps < exp.train.total_env_steps  # charged variant exists
    # the charged score is read at an evaluation point
    assert (exp.train.total_env_steps - exp.pretrain.total_env_steps) \
        % exp.train.eval_every_env_steps == 0


def test_normaliser_and_names() -> None:
    assert task_max_return("MiniGrid-DoorKey-6x6-v0", "door") == 1.0
    with pytest.raises(ConfigError, match="maximum return"):
        task_max_return("ALE/MsPacman-v5", "goal")
    assert env_slug("MiniGrid-DoorKey-5x5-v0") == "DoorKey-5x5"


def test_pretraining_longer_than_budget_is_refused(tmp_path: Path) -> None:
    exp = bt_suite()
    exp = dataclasses.replace(exp, pretrain=dataclasses.replace(exp.pretrain,
                                                                total_env_steps=40_000))
    with pytest.raises(ConfigError, match="exceeds the transfer budget"):
        run_suite(exp, tmp_path)
    assert not any(tmp_path.iterdir())


def _tiny(num_seeds: int) -> BTExperiment:
    exp = bt_suite()

    def small(cfg: TrainConfig, steps: int) -> TrainConfig:
        return dataclasses.replace(
            cfg, total_env_steps=steps, learning_starts_env_steps=100,
            eval_every_env_steps=200, eval_episodes=2, checkpoint_every_env_steps=10_000,
            max_episode_frames=40, intrinsic_warmup_env_steps=100, progress=False,
            tensorboard=False, num_envs=4,
        )

    return dataclasses.replace(
        exp, num_seeds=num_seeds, workers=1,
        pretrain=small(exp.pretrain, 300), train=small(exp.train, 600),
        strategies=("scratch_eps_greedy", "bt", "bt_flights_only", "bt_extra_action_only",
                    "full_init"),
        suite=(SuiteEnv("MiniGrid-DoorKey-5x5-v0", ("goal", "key")),
               SuiteEnv("MiniGrid-DoorKey-6x6-v0", ("door",))),
    )


@pytest.mark.slow
def test_suite_smoke_run_resumes(tmp_path: Path) -> None:
    """Two envs, three tasks, five strategies at a few hundred env steps (about 75 s)."""
    exp = _tiny(1)
    report = run_suite(exp, tmp_path)
    first = tmp_path / "DoorKey-5x5/goal/runs/bt/seed_0/metrics.jsonl"
    stamp = first.stat().st_mtime_ns
    exp2 = _tiny(2)
    report = run_suite(exp2, tmp_path)
    assert first.stat().st_mtime_ns == stamp  # the finished run was not redone
    text = report.read_text()
    assert text.splitlines()[2].startswith("**Verdict**")
    for heading in ("## Probability of improvement", "## Performance profiles",
                    "## Per-task results", "## Pretraining charged", "## Runtime",
                    "## Learning curves"):
        assert heading in text
    scores, names = suite_scores(exp2, tmp_path)
    assert names == ["DoorKey-5x5/goal", "DoorKey-5x5/key", "DoorKey-6x6/door"]
    assert all(a.shape == (2, 3) and ((a >= 0) & (a <= 1)).all() for a in scores.values())
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert len(timings) == 2 + 2 * 3 * 5  # two pretraining runs + every transfer run
