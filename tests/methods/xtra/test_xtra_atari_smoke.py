"""``xtra-atari100k`` end to end on real Atari games at smoke scale on the CPU (issue 12: "runs
end to end on a real Atari game at smoke scale on the CPU").

The recipe is built through the registry and only shrunk: 2 of its Shooter sources and its
target (``ALE/Assault-v5``), the paper's observation settings kept (96x96 RGB, 4 stacked frames,
frame skip 4, the 18-action ``atari-full`` space, life-loss terminals, clipped rewards) and the
recipe's own ``atari-l`` network; data runs of 160 env steps with 50-step episodes
(``max_episode_frames=200`` emulator frames, so episodes end, by life loss or truncation, and
the datasets hold complete episodes), a few teacher / student / finetuning updates, 1 seed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.envs.shared_actions import ActionSpace, atari_action_space
from rltransfer.experiments.registry import build_recipe
from rltransfer.experiments.xtra import XTRAExperiment, run_xtra_experiment
from rltransfer.replay.offline import OfflineDataset

pytestmark = pytest.mark.slow

EPISODE_FRAMES = 200
"""Emulator frames per episode at most (50 agent steps at frame skip 4)."""


def atari_smoke(exp: XTRAExperiment) -> XTRAExperiment:
    """``exp`` (an ``xtra-atari100k`` recipe) at smoke scale: its first 2 sources, 160-step
    data runs (2 envs, 8 updates), 4-update teachers and student, 48-step finetuning runs
    (8 updates from env step 20, one per 4 env steps; the scaled schedule, 2 cycles, measures
    the task weights on updates 1, 4 and 7 and rewrites them before 2 and 5; evaluations at
    env steps 20 and 40, whose ``train`` records carry the last update's metrics: at 40,
    update 4's cosines and the weights rewritten from update 1's), batch 8 + 8,
    2 simulations, 1 evaluation episode, 1 seed."""
    base = exp.source_run
    mcts = MCTSConfig(num_simulations=2, discount=base.mcts.discount,
                      value_prefix_horizon=base.mcts.value_prefix_horizon)
    reanalyse = ReanalyseConfig(reanalyse_fraction=0.25, value_target="network")
    tiny: dict[str, Any] = {
        "num_envs": 2, "batch_size": 8, "eval_episodes": 1, "mcts": mcts,
        "reanalyse": reanalyse, "max_episode_frames": EPISODE_FRAMES, "progress": False,
        "tensorboard": False, "device": "cpu", "eval_every_env_steps": 10_000}
    source_run = dataclasses.replace(
        base, total_env_steps=160, learning_starts_env_steps=96, updates_per_env_step=0.125,
        replay_capacity_env_steps=160, checkpoint_every_env_steps=80, **tiny)
    train = dataclasses.replace(
        exp.finetune.train, total_env_steps=48, learning_starts_env_steps=16,
        updates_per_env_step=0.25, replay_capacity_env_steps=64, checkpoint_every_env_steps=24,
        **{**tiny, "eval_every_env_steps": 20})
    stage = dataclasses.replace(
        exp.stage, num_updates=4, batch_size=8, mcts=mcts, reanalyse=reanalyse,
        eval_every_updates=1_000, eval_episodes=1, checkpoint_every_updates=2, progress=False,
        tensorboard=False, device="cpu")
    return dataclasses.replace(
        exp, sources=exp.sources[:2], source_run=source_run, stage=stage,
        finetune=dataclasses.replace(exp.finetune, train=train, offline_batch_size=8,
                                     weight_cycles=2),
        num_seeds=1, workers=1, zero_shot_episodes=1)


def test_xtra_atari100k_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    recipe = build_recipe("xtra-atari100k")
    assert isinstance(recipe, XTRAExperiment)
    exp = atari_smoke(recipe)
    t = exp.finetune.train
    assert exp.target == "ALE/Assault-v5" and exp.sources == ("ALE/Carnival-v5",
                                                              "ALE/Centipede-v5")
    assert (t.frame_size, t.grayscale, t.frame_stack, t.action_space, t.net_preset) == (
        96, False, 4, "atari-full", "atari-l")
    assert exp.stage.net_preset == "atari-l"
    out = tmp_path / "xtra"
    report = run_xtra_experiment(exp, out)

    text = report.read_text()
    for needle in ("xtra", "finetune", "scratch", "Task weights (eta)", "Student vs teachers",
                   "ALE/Carnival-v5", "ALE/Centipede-v5", "zero-shot"):
        assert needle in text, needle
    assert (out / "eta_xtra.png").is_file()
    for game in ("Carnival", "Centipede"):
        # 80 steps per env and 50-step episodes: each env's first episode ended (truncated,
        # or earlier at a life loss) and counts as complete
        data = OfflineDataset.load(out / "sources" / game / "dataset")
        assert data.num_episodes >= 2 and data.frames.shape[1:] == (3, 96, 96)
        assert data.info["env_kwargs"]["frame_size"] == 96
        assert (out / "teachers" / game / "final" / "meta.json").is_file()
    arch = json.loads((out / "student" / "final" / "meta.json").read_text())["architecture"]
    full = atari_action_space("ALE/Assault-v5")
    assert ActionSpace.from_json(arch["action_space"]) == ActionSpace(
        "atari", full.names, tuple(range(18)))
    assert arch["num_actions"] == 18 and arch["obs_shape"] == [12, 96, 96]
    run = json.loads((out / "runs" / "xtra" / "seed_0" / "final" / "meta.json").read_text())
    assert run["config"]["action_space"] == "atari-full"
    assert ActionSpace.from_json(run["architecture"]["action_space"]) == full
    records = [json.loads(line) for line in
               (out / "runs" / "xtra" / "seed_0" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert any(k == "eta/ALE/Carnival-v5" for r in train for k in r), train
    assert any(k == "cos/ALE/Centipede-v5" for r in train for k in r), train

    # delete one finetuning run's final/: only that run is resumed, the rest is skipped
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("final/meta.json")}
    shutil.rmtree(out / "runs" / "finetune" / "seed_0" / "final")
    again = run_xtra_experiment(exp, out)
    assert again == report
    assert (out / "runs" / "finetune" / "seed_0" / "final" / "meta.json").is_file()
    for path, stamp in stamps.items():
        if "finetune" not in path.parts:
            assert path.stat().st_mtime_ns == stamp, path
