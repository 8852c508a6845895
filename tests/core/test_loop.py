"""The one training loop (core/loop.py, core/schedule.py, core/episodes.py): replay ratio,
warm-up burst, cadences, NaN guard, save/resume of the counters, episode bookkeeping.
Expected values are counted by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rltransfer.core.episodes import EpisodeTracker
from rltransfer.core.loop import NonFiniteMetricError, TrainingLoop
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.schedule import LoopSchedule, ReplayRatio


class FakeEnvs:
    closed = False

    def close(self) -> None:
        self.closed = True


class FakeReplay:
    def __init__(self) -> None:
        self.size = 0

    def can_sample(self) -> bool:
        return self.size > 0

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {"size": np.array([self.size])}

    def load_state_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.size = int(tensors["size"][0])


class FakeTrainer(TrainingLoop):
    """Collects one reward-1 step per env; each episode lasts 3 steps; updates count."""

    def __init__(self, run_dir: Path, schedule: LoopSchedule, nan_at: int | None = None) -> None:
        self.run_dir = run_dir
        self.envs = FakeEnvs()  # type: ignore[assignment]
        self.replay = FakeReplay()
        self.rng = np.random.default_rng(0)
        self.nan_at = nan_at
        self.weight = torch.zeros(2)
        self.updates_at: list[int] = []
        self.evals_at: list[int] = []
        self.init_loop(schedule, tensorboard=False)

    def architecture(self) -> dict[str, Any]:
        return {"kind": "fake"}

    def config_dict(self) -> dict[str, Any]:
        return {}

    def final_tensors(self) -> dict[str, Any]:
        return {"w": self.weight}

    def state_tensors(self) -> dict[str, Any]:
        return {"w": self.weight}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        self.weight = tensors["w"].clone()

    def start_collecting(self) -> None:
        return None

    def collect_step(self, logger: MetricsLogger) -> None:
        self.replay.size += self.schedule.num_envs
        if (self.env_steps // self.schedule.num_envs) % 3 == 2:  # every env ends an episode
            n = self.schedule.num_envs
            self._log_episodes(logger, np.full(n, 3.0), np.full(n, 3))

    def update(self) -> dict[str, float]:
        self.updates_at.append(self.env_steps)
        self.weight += 1
        loss = math.nan if self.nan_at is not None and self.env_steps >= self.nan_at else 0.5
        return {"loss": loss}

    def evaluate(self, logger: MetricsLogger) -> float:
        self.evals_at.append(self.env_steps)
        return self.log_eval(logger, np.array([1.0, 3.0]))


def schedule(**overrides: Any) -> LoopSchedule:
    values: dict[str, Any] = dict(
        total_env_steps=20, num_envs=2, replay_ratio=ReplayRatio(1, 4),
        learning_starts_env_steps=4, eval_every_env_steps=8, checkpoint_every_env_steps=10,
        keep_checkpoints=5, checkpoint_replay=True, run_name="fake", progress=False)
    values.update(overrides)
    return LoopSchedule(**values)


def records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind", r.get("type")) == kind]


def test_replay_ratio_debt_is_the_exact_fraction() -> None:
    assert ReplayRatio(1, 4).debt(8) == 2.0
    assert ReplayRatio(1, 4).debt(2) == 0.5
    assert ReplayRatio(0.5, 1).debt(3) == 1.5
    assert ReplayRatio(1, 3).debt(4) == 4 / 3  # n / 3 (the exact fraction), same float
    assert ReplayRatio(2, 1).updates_per_env_step == 2.0
    with pytest.raises(ValueError):
        ReplayRatio(0, 1)
    with pytest.raises(ValueError):
        ReplayRatio(1, -4)


def test_episode_tracker_next_step_autoreset() -> None:
    tracker = EpisodeTracker(2)
    assert tracker.first.tolist() == [True, True]
    no = np.array([False, False])
    r, n = tracker.record(np.array([1.0, 2.0]), no, no)
    assert r.size == 0 and n.size == 0
    assert tracker.first.tolist() == [False, False]
    # env 0 terminates, env 1 truncates one step later
    r, n = tracker.record(np.array([1.0, 2.0]), np.array([True, False]), no)
    assert r.tolist() == [2.0] and n.tolist() == [2]
    r, n = tracker.record(np.array([5.0, 2.0]), no, np.array([False, True]))
    # env 0's step is the reset step (counted in no episode); env 1 ends with 3 steps
    assert r.tolist() == [6.0] and n.tolist() == [3]
    assert tracker.first.tolist() == [True, False]
    r, n = tracker.record(np.array([1.0, 7.0]), np.array([True, False]), no)
    assert r.tolist() == [1.0] and n.tolist() == [1]  # env 0's new episode: one step


def test_loop_learns_evaluates_and_checkpoints_on_schedule(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path, schedule())
    result = trainer.run()
    # Learning from env step 4 (counted after the vector step): 9 vector steps of 2 env
    # steps at 1/4 update per env step owe 4.5 updates: one at 6, 10, 14, 18.
    assert trainer.updates_at == [6, 10, 14, 18]
    assert trainer.update_debt == 0.5
    assert (result.env_steps, result.num_updates) == (20, 4)
    # evaluations at 8 and 16 (none at the budget's step inside the loop) and the final one
    assert trainer.evals_at == [8, 16, 20]
    assert result.final_return_mean == 2.0
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(ckpts) == 2 and ckpts[0].endswith("10") and ckpts[1].endswith("20")
    # episodes end in the vector steps from env steps 4, 10 and 16, 2 envs each
    assert trainer.episodes == 6
    trains = records(tmp_path, "train")
    assert [t["num_updates"] for t in trains] == [1, 3]
    assert trains[0]["loss"] == 0.5 and trains[0]["recent_return"] == 3.0
    meta = json.loads((tmp_path / "final" / "meta.json").read_text())
    assert (meta["env_steps"], meta["num_updates"], meta["final_return_mean"]) == (20, 4, 2.0)
    # a finished run is not run again
    again = FakeTrainer(tmp_path, schedule())
    assert again.run().num_updates == 4 and again.updates_at == []


def test_warmup_burst_on_the_first_learning_step(tmp_path: Path) -> None:
    # SAC's schedule: one update per env step from env step 3 (= warm-up 2 + 1 env) on, the
    # first learning step also owes the updates of 1 env step (warm-up - 1).
    trainer = FakeTrainer(tmp_path, schedule(
        total_env_steps=6, num_envs=1, replay_ratio=ReplayRatio(1.0, 1),
        learning_starts_env_steps=3, warmup_burst_env_steps=1))
    trainer.run()
    assert trainer.updates_at == [3, 3, 4, 5, 6]


def test_nan_guard_stops_the_run(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path, schedule(), nan_at=14)
    with pytest.raises(NonFiniteMetricError, match="loss = nan"):
        trainer.run()
    assert trainer.updates_at == [6, 10, 14]
    assert trainer.envs.closed


def test_resume_restores_the_counters(tmp_path: Path) -> None:
    first = FakeTrainer(tmp_path, schedule(total_env_steps=12))
    first.run()
    # drop final/ and the step-12 checkpoint: resume from step 10
    for p in sorted((tmp_path / "checkpoints").iterdir())[1:]:
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    for f in (tmp_path / "final").iterdir():
        f.unlink()
    (tmp_path / "final").rmdir()
    resumed = FakeTrainer(tmp_path, schedule())
    assert resumed.try_resume()
    assert (resumed.env_steps, resumed.num_updates, resumed.episodes) == (10, 2, 2)
    assert resumed.update_debt == 0.0 and resumed.next_eval == 16
    assert resumed.next_checkpoint == 20 and resumed.last_eval_return == 2.0
    assert resumed.learning_starts_at == 4 and resumed.replay.size == 10
    assert resumed.weight.tolist() == [2.0, 2.0]


def test_resume_without_replay_waits_for_the_warmup_again(tmp_path: Path) -> None:
    first = FakeTrainer(tmp_path, schedule(total_env_steps=10, checkpoint_replay=False))
    first.run()
    (tmp_path / "final" / "meta.json").unlink()
    resumed = FakeTrainer(tmp_path, schedule(checkpoint_replay=False))
    assert resumed.try_resume()
    assert resumed.env_steps == 10 and resumed.learning_starts_at == 14
    assert resumed.replay.size == 0
