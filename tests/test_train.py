"""The training loop end to end: learning, resume after SIGKILL, transfer errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rltransfer.agents.r2d2.suites import suite_config
from rltransfer.agents.r2d2.train import RunConflictError, train
from rltransfer.core.checkpoint import CheckpointError, latest_checkpoint
from rltransfer.core.policy import SpaceMismatchError
from tests.helpers import kill_at_first_checkpoint

# MiniGrid's suite defaults (Adam eps 1e-6, ...; rltransfer.agents.r2d2.suites.SUITE_DEFAULTS) with
# a
# small, fast network and learner.
SMALL = suite_config(
    "MiniGrid-Empty-5x5-v0", num_envs=4, learning_starts_env_steps=200, updates_per_env_step=0.25,
    eval_episodes=4, tensorboard=False, progress=False,
    agent={"feature_dim": 32, "hidden": 32, "batch_size": 32, "lr": 1e-3, "gamma": 0.9,
           "n_step": 3, "target_update_period_updates": 100},
)


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.slow
def test_agent_learns_minigrid_empty(tmp_path: Path) -> None:
    # Seeds 0-4 of this config first reach the optimum (0.955) at 8k, 8k, 4k, 10k and 6k env
    # steps (greedy evaluations every 2k); 12k leaves a margin, and the median over three
    # seeds tolerates one seed that a CPU's floating point makes slower.
    finals = []
    for seed in (0, 1, 2):
        cfg = dataclasses.replace(
            SMALL, seed=seed, total_env_steps=12_000, run_dir=str(tmp_path / f"seed_{seed}"),
            eval_every_env_steps=6_000, checkpoint_every_env_steps=100_000, eval_episodes=8,
        )
        finals.append(train(cfg).final_return_mean)
    # A random policy scores about 0.1 here; the optimal return is about 0.95.
    assert float(np.median(finals)) > 0.8, finals


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "rltransfer.cli", "train", "--env-id", "MiniGrid-Empty-5x5-v0",
        "--run-dir", str(run_dir), "--num-envs", "2", "--total-env-steps", "3000",
        "--learning-starts-env-steps", "100", "--checkpoint-every-env-steps", "500",
        "--eval-every-env-steps", "1000", "--eval-episodes", "2", "--agent.feature-dim", "16",
        "--agent.hidden", "16", "--agent.batch-size", "8", "--no-tensorboard", "--no-progress",
    ]
    saved = kill_at_first_checkpoint(cmd, run_dir)
    assert 0 < saved["env_steps"] < 3000

    done = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    final = json.loads((run_dir / "final" / "meta.json").read_text())
    assert final["env_steps"] == 3000
    # Updates continued from the checkpoint's counter, not from zero.
    assert final["num_updates"] > saved["num_updates"]
    assert f"resumed {run_dir} at {saved['env_steps']} env steps" in done.stderr
    steps = [r["env_steps"] for r in _records(run_dir, "eval")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_prior_with_other_spaces_is_refused(tmp_path: Path) -> None:
    pre = dataclasses.replace(
        SMALL, env_id="MiniGrid-Empty-5x5-v0", total_env_steps=200, reward_free=True,
        intrinsic="constant", run_dir=str(tmp_path / "pre"), eval_every_env_steps=10_000,
        checkpoint_every_env_steps=10_000, eval_episodes=1,
    )
    train(pre)
    bt = dataclasses.replace(
        SMALL, env_id="MiniGrid-DoorKey-6x6-v0", explore="bt", prior=str(tmp_path / "pre"),
        total_env_steps=200, run_dir=str(tmp_path / "bt"),
    )
    with pytest.raises(SpaceMismatchError, match=r"\(5, 5\).*\(6, 6\)|5, 5.*6, 6"):
        train(bt)


def test_corrupt_latest_checkpoint_stops_with_a_clear_error(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        SMALL, env_id="MiniGrid-Empty-5x5-v0", total_env_steps=400, run_dir=str(tmp_path),
        checkpoint_every_env_steps=200, eval_every_env_steps=10_000, eval_episodes=1,
    )
    train(cfg)
    import shutil

    shutil.rmtree(tmp_path / "final")
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt is not None
    tensor_file = ckpt / "tensors.safetensors"
    tensor_file.write_bytes(tensor_file.read_bytes()[:100])
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(cfg)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_run_dir_with_another_config_is_refused(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        SMALL, env_id="MiniGrid-Empty-5x5-v0", total_env_steps=100, run_dir=str(tmp_path),
        eval_every_env_steps=10_000, checkpoint_every_env_steps=10_000, eval_episodes=1,
    )
    train(cfg)
    with pytest.raises(RunConflictError, match="seed"):
        train(dataclasses.replace(cfg, seed=1))
    assert np.isfinite(train(cfg).final_return_mean)  # same config: finished run, no-op
