"""XTRA's offline stages on the training loop: teachers (offline EfficientZero on one dataset)
and the distilled multi-task student (union width, teacher targets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.methods.xtra.config import DistillConfig, TeacherConfig
from rltransfer.methods.xtra.distill import DistillTrainer, student_vs_teacher
from rltransfer.methods.xtra.offline_loop import (
    evaluate_on_task,
    load_world_model,
    task_eval_kwargs,
)
from rltransfer.methods.xtra.teachers import TeacherTrainer, train_teacher
from rltransfer.replay.offline import OfflineDatasetError
from tests.methods.xtra.conftest import GAMES, save_dataset, tiny_fields

pytestmark = pytest.mark.slow  # trains agents


def _teacher(tmp: Path, game: str) -> tuple[str, str]:
    data = save_dataset(tmp, GAMES[game], seed=len(game))
    run = str(tmp / f"teacher_{game}")
    train_teacher(TeacherConfig(**tiny_fields(), run_dir=run, dataset=data))
    return data, run


def test_teacher_trains_offline_and_resumes(tmp_path: Path) -> None:
    data, run = _teacher(tmp_path, "breakout")
    net, meta = load_world_model(run)
    assert net.num_actions == 3 and net.obs_shape == (10, 10, 10)
    assert meta["architecture"]["xtra_stage"] == "teacher"
    records = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval_task" for r in records)
    # finished: a second call returns the recorded result without training
    again = TeacherTrainer(TeacherConfig(**tiny_fields(), run_dir=run, dataset=data)).run()
    assert again.num_updates == 4 and again.wall_seconds == 0.0


def test_teacher_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    data = save_dataset(tmp_path, GAMES["breakout"])
    run = tmp_path / "t"
    cfg = TeacherConfig(**tiny_fields(num_updates=4), run_dir=str(run), dataset=data)
    trainer = TeacherTrainer(cfg)
    trainer.env_steps = trainer.num_updates = 0
    # one checkpoint after 2 updates, then "killed"
    from rltransfer.core.metrics import MetricsLogger

    logger = MetricsLogger(run, tensorboard=False)
    for _ in range(2):
        trainer.update()
        trainer.num_updates += 1
        trainer.env_steps += 1
    trainer.save()
    logger.close()
    resumed = TeacherTrainer(cfg)
    assert resumed.try_resume() and resumed.num_updates == 2
    assert resumed.learner.num_updates == 2
    for (k, a), b in zip(trainer.learner.network.state_dict().items(),
                         resumed.learner.network.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_student_distils_from_frozen_teachers(tmp_path: Path) -> None:
    d1, t1 = _teacher(tmp_path, "breakout")
    d2, t2 = _teacher(tmp_path, "asterix")
    cfg = DistillConfig(**tiny_fields(), run_dir=str(tmp_path / "student"), datasets=(d1, d2),
                        teachers=(t1, t2))
    trainer = DistillTrainer(cfg)
    assert trainer.learner.num_actions == 6
    before = [{k: v.clone() for k, v in t.network.state_dict().items()}
              for t in trainer.teachers]
    batch = trainer.make_batch()
    assert batch.target_policies.shape[-1] == 6 and batch.obs.shape[0] == 8
    result = trainer.run()
    assert result.num_updates == 4
    for t, state in zip(trainer.teachers, before, strict=True):
        for k, v in t.network.state_dict().items():
            assert torch.equal(v, state[k]), k
    rows = student_vs_teacher(tmp_path / "student")
    assert [r["task"] for r in rows] == [GAMES["breakout"], GAMES["asterix"]]
    assert all(r["deviation"] == "" for r in rows)


def test_teachers_must_match_their_datasets(tmp_path: Path) -> None:
    d1, t1 = _teacher(tmp_path, "breakout")
    d2 = save_dataset(tmp_path, GAMES["asterix"])
    cfg = DistillConfig(**tiny_fields(), run_dir=str(tmp_path / "s"), datasets=(d1, d2),
                        teachers=(t1, t1))
    with pytest.raises(CheckpointError, match="trained on"):
        DistillTrainer(cfg)
    assert not (tmp_path / "s" / "config.json").exists()


def test_unrecorded_settings_follow_the_datas_frames() -> None:
    # A dataset with no info["env_kwargs"] (e.g. from Minari): Atari frames set the size and
    # grayscale of the evaluation env; MinAtar has no frame settings; recorded ones win.
    rgb = task_eval_kwargs("ALE/Pong-v5", None, (3, 96, 96))
    assert (rgb["frame_size"], rgb["grayscale"]) == (96, False)
    gray = task_eval_kwargs("ALE/Pong-v5", None, (1, 84, 84))
    assert (gray["frame_size"], gray["grayscale"]) == (84, True)
    assert "frame_size" not in task_eval_kwargs("MinAtar/Breakout-v1", None, (4, 10, 10))
    recorded = task_eval_kwargs("ALE/Pong-v5", {"frame_size": 64, "grayscale": True},
                                (3, 96, 96))
    assert (recorded["frame_size"], recorded["grayscale"]) == (64, True)


def test_evaluation_env_must_match_the_datas_frames() -> None:
    # Breakout gives 4 channels; data with 5 cannot be evaluated there. The check runs before
    # the network is read, so no network is needed.
    with pytest.raises(OfflineDatasetError, match=r"frames are \(5, 10, 10\).*gives \(4, 10, 10\)"):
        evaluate_on_task(cast(Any, None), GAMES["breakout"], 1, MCTSConfig(num_simulations=2),
                         episodes=1, seed=0, frame_shape=(5, 10, 10))
