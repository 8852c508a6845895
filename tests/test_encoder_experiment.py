"""The encoder-pretraining experiment runner: planning (per task, matrix, budget split) and a
tiny end-to-end budget split on DMC reacher-easy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.sac import SACConfig
from rltransfer.encoder_experiment import plan, run_encoder_experiment, sac_config
from rltransfer.recipes.encoder import ENCODER_RECIPES, EncoderExperiment, ik_budget_small


def test_every_recipe_builds_and_plans(tmp_path: Path) -> None:
    for name, make in ENCODER_RECIPES.items():
        _, cells = plan(make(), tmp_path / name)
        assert cells, name


def test_cross_matrix_plan_pairs_every_source_with_every_target(tmp_path: Path) -> None:
    exp = dataclasses.replace(ENCODER_RECIPES["ik-cross"](), num_seeds=1)
    jobs, cells = plan(exp, tmp_path)
    assert len(jobs) == 3  # one IK encoder per task, shared by the three RL tasks
    names = {(c.train_task, c.strategy) for c in cells}
    assert ("DMC/reacher-easy", "ik") in names
    assert ("DMC/reacher-easy", "ik_from_walker-walk") in names
    assert ("DMC/walker-walk", "ik_from_cheetah-run") in names
    assert len(cells) == 3 * (1 + 3)  # scratch + three sources per task
    # the IK encoder matches the SAC encoder, so it can be transferred
    assert all(j.encoder == exp.sac.encoder and j.render_size == exp.sac.render_size
               for j in jobs)


def test_budget_split_gives_rl_the_rest_of_the_budget(tmp_path: Path) -> None:
    exp = ik_budget_small()
    jobs, cells = plan(exp, tmp_path)
    n = exp.sac.total_env_steps
    assert [(c.strategy, c.rl_env_steps, c.init_from is not None) for c in cells] == [
        ("T_0", n, False), ("T_500", n - 500, True), ("T_1000", n - 1000, True)]
    assert sorted(j.num_transitions for j in jobs) == [500, 1000]
    cfg = sac_config(exp, cells[1], seed=1, out=tmp_path)
    assert cfg.total_env_steps == n - 500 and cfg.seed == exp.sac.seed + 1
    assert cfg.init_encoder_from is not None and cfg.init_encoder_from.endswith("encoder")


def test_invalid_experiments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown strategies"):
        EncoderExperiment(name="x", train_tasks=("DMC/reacher-easy",), strategies=("ik2",))
    with pytest.raises(ValueError, match="T < N"):
        dataclasses.replace(ik_budget_small(), budget_split_transitions=(0, 5_000))


@pytest.mark.slow
def test_tiny_budget_split_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("dm_control")
    base = ik_budget_small()
    exp = dataclasses.replace(
        base, budget_split_transitions=(0, 60), num_seeds=1, workers=1,
        ik=dataclasses.replace(base.ik, epochs=1, batch_size=16),
        sac=dataclasses.replace(
            base.sac, total_env_steps=160, warmup_env_steps=100, eval_every_env_steps=80,
            eval_episodes=1, checkpoint_every_env_steps=80,
            agent=SACConfig(batch_size=8, hidden_dim=32),
        ),
    )
    report = run_encoder_experiment(exp, tmp_path)
    text = report.read_text()
    assert "Budget split" in text and "| 60 | 100 |" in text and "| 0 | 160 |" in text
    assert (tmp_path / "reacher-easy_budget_split.png").is_file()
    assert (tmp_path / "pretrain" / "reacher-easy" / "T_60" / "encoder" / "meta.json").is_file()
    cfg = json.loads((tmp_path / "runs" / "reacher-easy" / "T_60" / "seed_0" / "config.json")
                     .read_text())
    assert cfg["init_encoder_from"].endswith("T_60/encoder")
    # re-running skips finished work and rewrites the same report
    assert run_encoder_experiment(exp, tmp_path).read_text() == text
