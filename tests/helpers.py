"""Shared pieces of the training tests: a tiny EfficientZero config, metrics records, and a
run SIGKILLed at its first checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rltransfer.agents.efficientzero.config import EZTrainConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.core.checkpoint import latest_checkpoint
from rltransfer.experiments.efficientzero import ez_small


def tiny_ez_config(run_dir: Path, total_env_steps: int, **changes: Any) -> EZTrainConfig:
    """``ez-small`` on MinAtar Breakout shrunk to seconds: 3 simulations, batch 8, 0.1
    updates per env step, 1,000 env steps of replay, one 200-frame eval episode, reanalysing
    half of each batch, no progress bar or TensorBoard; ``changes`` set the rest (env count,
    warm-up, cadences, backend)."""
    base = ez_small(run_dir=str(run_dir), total_env_steps=total_env_steps)
    return dataclasses.replace(
        base, mcts=dataclasses.replace(base.mcts, num_simulations=3), batch_size=8,
        updates_per_env_step=0.1, replay_capacity_env_steps=1_000, eval_episodes=1,
        max_episode_frames=200, progress=False, tensorboard=False,
        reanalyse=ReanalyseConfig(reanalyse_fraction=0.5), **changes,
    )


def metrics_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` records of ``kind`` (``"eval"``, ``"actors"``, ...), in order."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def kill_at_first_checkpoint(cmd: list[str], run_dir: Path, timeout_s: float = 120.0
                             ) -> dict[str, Any]:
    """Run ``cmd`` (a training process writing ``run_dir``) until its first checkpoint is
    complete, SIGKILL it, and check it left that checkpoint and no ``final/``.

    Returns:
        The checkpoint's ``meta.json``.

    Fails the test when the process ends first or no checkpoint appears in ``timeout_s``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout_s
    while time.time() < deadline and latest_checkpoint(run_dir / "checkpoints") is None:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"run ended before its first checkpoint:\n{out}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None and not (run_dir / "final").exists()
    meta: dict[str, Any] = json.loads((ckpt / "meta.json").read_text())
    return meta
