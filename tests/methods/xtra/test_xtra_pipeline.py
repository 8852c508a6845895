"""The whole xtra-minatar pipeline at smoke scale (data runs -> datasets -> teachers ->
student -> zero-shot -> XTRA / finetune / scratch on Breakout -> report), killed mid-way and
resumed to the same report."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.experiments.registry import build_recipe
from rltransfer.experiments.xtra import XTRAExperiment, run_xtra_experiment, xtra_minatar
from rltransfer.methods.xtra.config import OfflineStageConfig
from tests.methods.xtra.conftest import tiny_fields

pytestmark = pytest.mark.slow


def smoke(exp: XTRAExperiment) -> XTRAExperiment:
    """``exp`` at smoke scale: 2 sources, 160-step data runs, 4-update stages, 40-step
    finetuning, 1 seed."""
    mcts = MCTSConfig(num_simulations=2, discount=0.99)
    tiny: dict[str, Any] = {
            "num_envs": 2, "batch_size": 8, "learning_starts_env_steps": 16, "eval_episodes": 1,
            "mcts": mcts, "progress": False, "tensorboard": False,
            "reanalyse": ReanalyseConfig(reanalyse_fraction=0.25, value_target="network")}
    source_run = dataclasses.replace(exp.source_run, total_env_steps=160,
                                     replay_capacity_env_steps=160, eval_every_env_steps=1_000,
                                     checkpoint_every_env_steps=80, **tiny)
    train = dataclasses.replace(exp.finetune.train, total_env_steps=40,
                                replay_capacity_env_steps=100, eval_every_env_steps=20,
                                checkpoint_every_env_steps=20, **tiny)
    return dataclasses.replace(
        exp, sources=("MinAtar/Asterix-v1", "MinAtar/SpaceInvaders-v1"),
        source_run=source_run, stage=OfflineStageConfig(**tiny_fields(channels=10)),
        finetune=dataclasses.replace(exp.finetune, train=train, offline_batch_size=8),
        num_seeds=1, zero_shot_episodes=1)


SCRIPT = """
import sys
from tests.methods.xtra.test_xtra_pipeline import smoke
from rltransfer.experiments.xtra import run_xtra_experiment, xtra_minatar
run_xtra_experiment(smoke(xtra_minatar()), sys.argv[1])
"""


def test_recipes_build() -> None:
    exp = build_recipe("xtra-minatar")
    assert isinstance(exp, XTRAExperiment) and exp.target == "MinAtar/Breakout-v1"
    assert len(exp.sources) == 4 and exp.num_seeds >= 3
    assert exp.variants == ("xtra", "finetune", "scratch")
    atari = build_recipe("xtra-atari100k")
    assert isinstance(atari, XTRAExperiment)
    assert atari.finetune.offline_batch_size == 256 and atari.finetune.train.batch_size == 256
    assert atari.finetune.train.total_env_steps == 100_000 and len(atari.sources) == 4


def test_pipeline_end_to_end_with_kill_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "xtra"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while not (out / "runs").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    report = run_xtra_experiment(smoke(xtra_minatar()), out)
    text = report.read_text()
    for needle in ("xtra", "finetune", "scratch", "Task weights (eta)", "Student vs teachers",
                   "MinAtar/Asterix-v1", "zero-shot"):
        assert needle in text, needle
    assert (out / "eta_xtra.png").is_file()
    for game in ("Asterix", "SpaceInvaders"):
        assert (out / "teachers" / game / "final" / "meta.json").is_file()
    assert (out / "student" / "final" / "meta.json").is_file()
    # re-running a finished experiment trains nothing and rewrites the same report
    again = run_xtra_experiment(smoke(xtra_minatar()), out)
    assert again == report
