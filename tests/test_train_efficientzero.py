"""The EfficientZero loop end to end on MinAtar: checkpoints, SIGKILL + resume, final/, and
the schedules and config checks."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from rltransfer.agents.efficientzero.config import (
    EZTrainConfig,
    importance_exponent_at,
    temperature_at,
)
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.train import (
    MODEL_COMPONENTS,
    EZTrainer,
    RunConflictError,
    train_efficientzero,
)
from rltransfer.core.checkpoint import latest_checkpoint, load_checkpoint
from rltransfer.core.config import ConfigError, save_config
from rltransfer.experiments.efficientzero import ez_atari100k, ez_small
from tests.helpers import kill_at_first_checkpoint, metrics_records, tiny_ez_config


def _tiny(run_dir: Path, total: int = 240) -> EZTrainConfig:
    return tiny_ez_config(run_dir, total, num_envs=2, learning_starts_env_steps=60,
                          checkpoint_every_env_steps=80, eval_every_env_steps=160)


def test_temperature_and_importance_schedules() -> None:
    cfg = EZTrainConfig(total_env_steps=1000)
    assert [temperature_at(cfg, s) for s in (0, 499, 500, 749, 750, 999)] == [
        1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert importance_exponent_at(cfg, 0) == pytest.approx(0.4)
    assert importance_exponent_at(cfg, 500) == pytest.approx(0.7)
    assert importance_exponent_at(cfg, 5000) == pytest.approx(1.0)


def test_config_checks_name_the_fix() -> None:
    cfg = ez_small()
    with pytest.raises(ConfigError, match=r"mcts.discount .* must equal learner.discount"):
        dataclasses.replace(cfg, mcts=MCTSConfig(discount=0.5)).validate()
    with pytest.raises(ConfigError, match="frame_size applies to ALE"):
        dataclasses.replace(cfg, frame_size=96).validate()
    atari = ez_atari100k("Pong", device="cpu")
    atari.validate()
    assert (atari.frame_size, atari.grayscale, atari.mcts.num_simulations, atari.batch_size,
            atari.total_env_steps) == (96, False, 50, 256, 100_000)
    assert atari.learner.discount == pytest.approx(0.997**4)


@pytest.mark.slow
def test_smoke_checkpoint_sigkill_resume_and_final(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = _tiny(run_dir)
    cfg_path = tmp_path / "cfg.json"
    save_config(cfg, cfg_path)
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from rltransfer.core.config import load_config\n"
        "from rltransfer.agents.efficientzero.config import EZTrainConfig\n"
        "from rltransfer.agents.efficientzero.train import train_efficientzero\n"
        "train_efficientzero(load_config(EZTrainConfig, sys.argv[1]))\n"
    )
    saved = kill_at_first_checkpoint([sys.executable, "-c", code, str(cfg_path)], run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None
    assert 0 < saved["env_steps"] < cfg.total_env_steps
    tensors, _ = load_checkpoint(ckpt)
    assert any(k.startswith("replay/") for k in tensors)
    assert any(k.startswith("representation/") for k in tensors)

    result = train_efficientzero(cfg)  # resumes in this process
    assert result.env_steps == cfg.total_env_steps
    assert result.num_updates > saved["num_updates"]
    assert np.isfinite(result.final_return_mean)
    final, meta = load_checkpoint(run_dir / "final")
    assert final and all(k.startswith(MODEL_COMPONENTS) for k in final)
    for comp in ("representation/", "dynamics/", "prediction/"):
        assert any(k.startswith(comp) for k in final)
    assert meta["architecture"]["kind"] == "efficientzero"
    assert meta["architecture"]["obs_shape"][1:] == [10, 10]
    steps = [r["env_steps"] for r in metrics_records(run_dir, "eval")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] == 240
    assert metrics_records(run_dir, "train")[-1]["num_updates"] > 0
    # A finished run is not trained again; another config in the same dir is refused.
    again = train_efficientzero(cfg)
    assert again.num_updates == result.num_updates and again.wall_seconds == 0.0
    with pytest.raises(RunConflictError, match="batch_size"):
        train_efficientzero(dataclasses.replace(cfg, batch_size=4))


def test_warmup_actions_are_uniform_and_need_no_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No learning in this run: every action is a warm-up action.
    cfg = dataclasses.replace(
        _tiny(tmp_path / "run", total=2_400), num_envs=8, learning_starts_env_steps=2_400,
        replay_capacity_env_steps=4_000, checkpoint_every_env_steps=10_000,
        eval_every_env_steps=10_000,
    )
    trainer = EZTrainer(cfg)

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("searched before learning started")

    monkeypatch.setattr(trainer.actor, "search", no_search)
    result = trainer.run()
    assert result.env_steps == 2_400 and result.num_updates == 0
    replay = trainer.replay
    assert replay.num_added == 300
    actions = replay.actions[:, :300].reshape(-1)
    counts = np.bincount(actions, minlength=3)
    expected = actions.size / 3  # 800 per action
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.82, counts  # chi-square, 2 dof, p = 0.001
    np.testing.assert_array_equal(replay.policies[:, :300], np.full((8, 300, 3), 1 / 3,
                                                                    dtype=np.float32))
    assert not replay.root_values[:, :300].any()


@pytest.mark.slow
def test_search_starts_with_learning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _tiny(tmp_path / "run")
    cfg = dataclasses.replace(base, mcts=dataclasses.replace(base.mcts, num_simulations=8))
    trainer = EZTrainer(cfg)
    search = trainer.actor.search
    at: list[tuple[int, int]] = []

    def spy(obs: np.ndarray, *args: object, **kwargs: object) -> object:
        at.append((trainer.env_steps, trainer.num_updates))
        return search(obs)

    monkeypatch.setattr(trainer.actor, "search", spy)
    trainer.run()
    assert at and all(updates > 0 for _, updates in at)
    first_step = at[0][0] // cfg.num_envs  # replay position of the first searched step
    assert first_step >= cfg.learning_starts_env_steps // cfg.num_envs
    assert len(at) == trainer.replay.num_added - first_step  # every later step searched
    np.testing.assert_array_equal(trainer.replay.policies[:, :first_step], np.float32(1 / 3))
    searched = trainer.replay.policies[:, first_step:trainer.replay.num_added]
    assert not np.allclose(searched, 1 / 3)  # visit distributions of 8 simulations
