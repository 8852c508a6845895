from __future__ import annotations

import json
from pathlib import Path

import pytest

from rltransfer.runtime.loop import RunResult, run_to_completion
from rltransfer.runtime.metrics import MetricsLogger


class FakeEnvs:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeTrainer:
    """Records what run_to_completion calls, in order."""

    def __init__(self, run_dir: Path, *, resume_at: int | None = None,
                 fail: bool = False) -> None:
        self.run_dir = run_dir
        self.env_steps = 0
        self.num_updates = 0
        self.last_eval_return = float("nan")
        self.envs = FakeEnvs()
        self.calls: list[str] = []
        self.resume_at = resume_at
        self.fail = fail

    def try_resume(self) -> bool:
        self.calls.append("resume")
        if self.resume_at is None:
            return False
        self.env_steps = self.resume_at
        return True

    def _loop(self, logger: MetricsLogger) -> None:
        self.calls.append("loop")
        if self.fail:
            raise FloatingPointError("NaN loss")
        self.env_steps, self.num_updates = 100, 25
        logger.log("train", self.env_steps, loss=1.0)

    def evaluate(self, logger: MetricsLogger) -> float:
        self.calls.append("evaluate")
        self.last_eval_return = 0.5
        return 0.5

    def save(self, final: bool = False) -> Path:
        self.calls.append("save final" if final else "save")
        if final:
            (self.run_dir / "final").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "final" / "meta.json").write_text(json.dumps(
                {"env_steps": self.env_steps, "num_updates": self.num_updates,
                 "final_return_mean": self.last_eval_return}))
        return self.run_dir


def test_fresh_run_then_finished_run_returns_the_recorded_result(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    result = run_to_completion(trainer, tensorboard=False)
    assert trainer.calls == ["resume", "loop", "evaluate", "save", "save final"]
    assert trainer.envs.closed
    assert (result.env_steps, result.num_updates, result.final_return_mean) == (100, 25, 0.5)
    again = FakeTrainer(tmp_path)
    assert run_to_completion(again, tensorboard=False) == RunResult(tmp_path, 100, 25, 0.5, 0.0)
    assert again.calls == [] and again.envs.closed  # no training, envs still closed


def test_resume_truncates_metrics_after_the_checkpoint(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (40, 80, 120):  # 120 was logged after the checkpoint at 80
        logger.log("train", step, loss=0.0)
    logger.close()
    trainer = FakeTrainer(tmp_path, resume_at=80)
    run_to_completion(trainer, tensorboard=False)
    steps = [json.loads(line)["env_steps"]
             for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[:2] == [40, 80] and 120 not in steps[:3]


def test_a_failing_loop_still_closes_the_envs(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path, fail=True)
    with pytest.raises(FloatingPointError, match="NaN"):
        run_to_completion(trainer, tensorboard=False)
    assert trainer.envs.closed and trainer.calls == ["resume", "loop"]
    assert not (tmp_path / "final").exists()
