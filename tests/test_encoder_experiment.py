"""The encoder-pretraining experiment runner: planning (per task, matrix, budget split, image
classification, distraction clips, image geometry) and tiny end-to-end runs on DMC
reacher-easy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.agents.sac.config import SACConfig
from rltransfer.experiments.encoder_recipes import (
    ENCODER_RECIPES,
    EncoderExperiment,
    ik_budget,
    ik_budget_small,
    ik_vs_images,
)
from rltransfer.methods.encoder_pretraining.experiment import (
    plan,
    run_encoder_experiment,
    sac_config,
)
from rltransfer.methods.encoder_pretraining.image_classification import ImageClassificationConfig
from rltransfer.methods.encoder_pretraining.inverse_dynamics import InverseDynamicsConfig
from rltransfer.nets.pixel_encoders import PixelEncoderConfig


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
    assert all(isinstance(j, InverseDynamicsConfig) and j.encoder == exp.sac.encoder
               and j.render_size == exp.sac.render_size for j in jobs)


def test_budget_split_gives_rl_the_rest_of_the_budget(tmp_path: Path) -> None:
    exp = ik_budget_small()
    jobs, cells = plan(exp, tmp_path)
    n = exp.sac.total_env_steps
    assert [(c.strategy, c.rl_env_steps, bool(c.init_from)) for c in cells] == [
        ("T_0", n, False), ("T_500", n - 500, True), ("T_1000", n - 1000, True)]
    assert sorted(j.num_transitions for j in jobs
                  if isinstance(j, InverseDynamicsConfig)) == [500, 1000]
    cfg = sac_config(exp, cells[1], seed=1, out=tmp_path)
    assert cfg.total_env_steps == n - 500 and cfg.seed == exp.sac.seed + 1
    assert cfg.init_encoder_from is not None and cfg.init_encoder_from.endswith("encoder")


def test_ik_sees_the_rl_image_geometry(tmp_path: Path) -> None:
    """IK renders at the SAC render size and centre-crops to the SAC crop size (crop
    augmentation), or takes full frames of the render size (shift augmentation)."""
    jobs, _ = plan(ik_budget(), tmp_path)  # paper geometry: 100 renders, random 84 crops
    assert {(j.render_size, j.crop_size) for j in jobs} == {(100, 84)}  # type: ignore[union-attr]
    jobs, _ = plan(ik_budget_small(), tmp_path)  # CPU recipe: 64 renders, shift
    assert {(j.render_size, j.crop_size) for j in jobs} == {(64, None)}  # type: ignore[union-attr]


def test_builtin_distraction_gives_each_seed_its_own_clip(tmp_path: Path) -> None:
    exp = dataclasses.replace(ENCODER_RECIPES["ik-distracted"](), num_seeds=2,
                              train_tasks=("DMC/reacher-easy",), distraction_seed=5)
    jobs, cells = plan(exp, tmp_path)
    assert sorted((j.distraction, j.distraction_seed) for j in jobs) == [  # type: ignore[union-attr]
        ("builtin", 5), ("builtin", 6)]
    ik = next(c for c in cells if c.strategy == "ik")
    for k in (0, 1):
        cfg = sac_config(exp, ik, seed=k, out=tmp_path)
        assert (cfg.distraction, cfg.distraction_seed) == ("builtin", 5 + k)
        assert cfg.init_encoder_from is not None
        assert cfg.init_encoder_from.endswith(f"T_10000/clip_{5 + k}/encoder")
        # the IK run it loads collected its data on the same clip
        job = next(j for j in jobs if cfg.init_encoder_from.startswith(j.out_dir))
        assert job.distraction_seed == cfg.distraction_seed  # type: ignore[union-attr]
    scratch = next(c for c in cells if c.strategy == "scratch")
    assert sac_config(exp, scratch, seed=1, out=tmp_path).distraction_seed == 6
    # a folder of frames is one clip for every seed: one IK pretraining
    folder = dataclasses.replace(exp, distraction="frames/")
    jobs, cells = plan(folder, tmp_path)
    assert len(jobs) == 1 and jobs[0].distraction_seed == 5  # type: ignore[union-attr]


def test_image_classification_strategy_plan(tmp_path: Path) -> None:
    exp = ik_vs_images()
    assert exp.strategies == ("scratch", "ik", "scratch_grouped", "image_classification")
    jobs, cells = plan(exp, tmp_path)
    images = [j for j in jobs if isinstance(j, ImageClassificationConfig)]
    assert len(images) == 1  # one encoder shared by every task and seed
    job = images[0]
    assert job.encoder.groups == 3 and job.encoder.num_filters == 96  # 3x the IK filters
    assert (job.image_size, job.images_per_datapoint) == (64, 3)  # the SAC encoder's input
    assert job.data_dir == str(tmp_path / "data" / "shapes")
    assert len(jobs) == 1 + 3  # plus one IK encoder per task
    by_name = {(c.train_task, c.strategy): c for c in cells}
    assert len(cells) == 3 * 4
    ic = sac_config(exp, by_name[("DMC/walker-walk", "image_classification")], 0, tmp_path)
    assert ic.encoder == job.encoder
    assert ic.init_encoder_from == str(tmp_path / "pretrain" / "image_classification" /
                                       "encoder")
    grouped = sac_config(exp, by_name[("DMC/walker-walk", "scratch_grouped")], 0, tmp_path)
    assert grouped.encoder == job.encoder and grouped.init_encoder_from is None
    plain = sac_config(exp, by_name[("DMC/walker-walk", "scratch")], 0, tmp_path)
    assert plain.encoder == PixelEncoderConfig(kind="drq4", num_filters=32, feature_dim=50)
    with pytest.raises(ValueError, match="per-task shape only"):
        dataclasses.replace(exp, cross_tasks=True)


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
            base.sac, total_env_steps=160, learning_starts_env_steps=100, eval_every_env_steps=80,
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


@pytest.mark.slow
def test_tiny_ik_vs_images_end_to_end(tmp_path: Path) -> None:
    """The ik-vs-images recipe's four strategies, shrunk: synthetic images are generated,
    both encoders pretrained and loaded, every run finishes and the report lists them."""
    pytest.importorskip("dm_control")
    base = ik_vs_images()
    exp = dataclasses.replace(
        base, train_tasks=("DMC/reacher-easy",), num_seeds=1, workers=1,
        synthetic_classes=4, synthetic_images_per_class=6,
        images=dataclasses.replace(base.images, epochs=1, batch_size=4,
                                   encoder=dataclasses.replace(base.images.encoder,
                                                               num_filters=12)),
        ik=dataclasses.replace(base.ik, num_transitions=40, epochs=1, batch_size=16,
                               hidden_dims=(32, 16)),
        sac=dataclasses.replace(
            base.sac, total_env_steps=60, learning_starts_env_steps=40, eval_every_env_steps=60,
            eval_episodes=1, checkpoint_every_env_steps=60,
            agent=SACConfig(batch_size=8, hidden_dim=32),
        ),
    )
    report = run_encoder_experiment(exp, tmp_path)
    text = (tmp_path / "reacher-easy" / "report.md").read_text()
    for strategy in exp.strategies:
        assert strategy in text
    assert report.is_file()
    assert (tmp_path / "data" / "shapes" / "disc_red").is_dir()
    ic_meta = json.loads((tmp_path / "pretrain" / "image_classification" / "encoder" /
                          "meta.json").read_text())
    assert ic_meta["architecture"]["source"] == "image_classification"
    assert ic_meta["architecture"]["obs_shape"] == [9, 64, 64]
    run = tmp_path / "runs" / "reacher-easy"
    cfg = json.loads((run / "image_classification" / "seed_0" / "config.json").read_text())
    assert cfg["encoder"]["groups"] == 3 and cfg["encoder"]["num_filters"] == 12
    assert cfg["init_encoder_from"].endswith("image_classification/encoder")
    for strategy in exp.strategies:
        assert (run / strategy / "seed_0" / "final").is_dir(), strategy
