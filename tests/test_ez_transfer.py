"""``rltransfer train-ez --init-from RUN --transfer ... --freeze ...`` end to end on MinAtar:
a tiny source run, then a target run through the CLI that loads the source's representation
and dynamics and keeps the representation frozen (XTRA-style transfer, Xu et al. 2023)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.agents.efficientzero.train import train_efficientzero
from rltransfer.cli import main
from rltransfer.core.checkpoint import load_checkpoint
from rltransfer.core.config import ConfigError
from rltransfer.experiments.efficientzero import ez_small

ENV = "MinAtar/Breakout-v1"
TINY = [
    "--env-id", ENV, "--num-envs", "2", "--total-env-steps", "160",
    "--mcts.num-simulations", "3", "--batch-size", "8", "--updates-per-env-step", "0.1",
    "--learning-starts-env-steps", "60", "--replay-capacity-env-steps", "1000",
    "--checkpoint-every-env-steps", "20", "--keep-checkpoints", "100",
    "--eval-every-env-steps", "1000", "--eval-episodes", "1", "--max-episode-frames", "200",
    "--no-progress", "--no-tensorboard",
]


def _component(tensors: dict[str, torch.Tensor], comp: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(f"{comp}/")}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys() and a
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ez_source") / "source"
    base = ez_small(run_dir=str(run_dir), total_env_steps=200)
    cfg = dataclasses.replace(
        base, num_envs=2, mcts=dataclasses.replace(base.mcts, num_simulations=3),
        batch_size=8, updates_per_env_step=0.1, learning_starts_env_steps=60,
        replay_capacity_env_steps=1_000, checkpoint_every_env_steps=1_000,
        eval_every_env_steps=1_000, eval_episodes=1, max_episode_frames=200, progress=False,
        tensorboard=False, reanalyse=ReanalyseConfig(reanalyse_fraction=0.5), seed=3,
    )
    result = train_efficientzero(cfg)
    assert result.num_updates > 0
    return run_dir


@pytest.mark.slow
def test_train_ez_init_from_transfers_and_freezes(source_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    main(["train-ez", *TINY, "--run-dir", str(target), "--init-from", str(source_run),
          "--transfer", "representation", "dynamics", "--freeze", "representation"])
    src, _ = load_checkpoint(source_run / "final")

    # Right after init (env step 20: before the first update at 60 steps).
    early, meta = load_checkpoint(target / "checkpoints" / "step_000000000020")
    assert meta["num_updates"] == 0
    assert meta["learner_state"]["frozen"] == ["representation"]
    for comp in ("representation", "dynamics"):
        assert _equal(_component(early, comp), _component(src, comp)), comp
        target_copy = {k[len("target/"):]: v for k, v in early.items()
                       if k.startswith(f"target/{comp}/")}
        assert _equal(target_copy, _component(src, comp)), f"target {comp}"
    assert not _equal(_component(early, "prediction"), _component(src, "prediction"))

    # After training: the frozen representation (weights and BatchNorm statistics) is the
    # source's; the dynamics trained away from it.
    final, final_meta = load_checkpoint(target / "final")
    assert final_meta["num_updates"] > 0
    assert _equal(_component(final, "representation"), _component(src, "representation"))
    assert not _equal(_component(final, "dynamics"), _component(src, "dynamics"))


@pytest.mark.slow
def test_train_ez_unknown_component_is_one_line_and_writes_nothing(
    source_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    with pytest.raises(SystemExit) as exc:
        main(["train-ez", *TINY, "--run-dir", str(target), "--init-from", str(source_run),
              "--transfer", "representation", "encoder"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'encoder'" in err[0]
    assert "representation, dynamics, prediction, projection" in err[0]
    assert not target.exists()


def test_transfer_and_freeze_need_init_from_and_known_names() -> None:
    cfg = ez_small()
    with pytest.raises(ConfigError, match="need init_from"):
        dataclasses.replace(cfg, freeze=("representation",)).validate()
    with pytest.raises(ConfigError, match="--transfer"):
        dataclasses.replace(cfg, init_from="somewhere").validate()
    with pytest.raises(ValueError, match=r"'value'.*representation, dynamics"):
        dataclasses.replace(cfg, init_from="x", transfer=("value",)).validate()
