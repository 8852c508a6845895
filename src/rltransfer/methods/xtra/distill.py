"""XTRA's multi-task distillation (Xu et al. 2023, Sec. 3.1; ``rltransfer pretrain-xtra``):
"we optimize the student policy by sampling data uniformly from all pretraining tasks, and
generate value/policy targets using the respective teacher models rather than bootstrapping
from student predictions" (a multi-teacher MuZero Reanalyze).

:class:`DistillTrainer` trains one student of the union action width ``U`` (MinAtar: 6,
Atari: 18) on frames padded to one channel count. Each batch draws, for each of its ``B``
samples, a source task uniformly (``counts ~ Multinomial(B, 1/m)``); a task's samples get
their targets from its frozen teacher (value-prefix targets from the data, ``n``-step value
targets bootstrapped by the teacher, policy targets from the teacher's search over the
task's legal actions, scattered into ``U`` slots), and the student minimises the ordinary
EfficientZero loss (value prefix + 1 policy + 0.25 value + 2 consistency, unroll 5; EZ Eq. 5
with :class:`~rltransfer.agents.efficientzero.config.EfficientZeroConfig`'s weights). The
teachers never change (eval mode, no gradients): their targets do not depend on the
student's weights.

The report compares each source task's student return with its teacher's
(:func:`student_vs_teacher`). Teachers taken from the runs that produced the data are a
deviation from the paper, recorded under ``teacher_deviation`` in ``final/meta.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.agents.efficientzero.batch import EZBatch
from rltransfer.agents.efficientzero.shared_space import GameModel
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.core.run import RunResult, closes_envs_on_failure
from rltransfer.envs.shared_actions import ActionSpaceMismatchError
from rltransfer.methods.xtra.config import DistillConfig
from rltransfer.methods.xtra.offline_batches import concat_batches
from rltransfer.methods.xtra.offline_loop import OfflineTrainer, load_world_model
from rltransfer.methods.xtra.teachers import teacher_is_from_data_run
from rltransfer.replay.offline import OfflineDataset

__all__ = ["DistillTrainer", "distill_student", "student_vs_teacher"]


class DistillTrainer(OfflineTrainer):
    """The multi-task student (see the module docstring).

    Raises:
        ConfigError: invalid config. RunConflictError: the run dir holds another run.
        ActionSpaceMismatchError: datasets of different union spaces, or a teacher that
            cannot play its task (another width).
        CheckpointError: an unreadable teacher, or one trained on another game.
    """

    stage = "student"

    @closes_envs_on_failure
    def __init__(self, cfg: DistillConfig) -> None:
        cfg.validate()
        datasets = [OfflineDataset.load(p) for p in cfg.datasets]
        unions = {(d.action_space.suite, d.action_space.names) for d in datasets}
        if len(unions) != 1:
            raise ActionSpaceMismatchError(
                f"the source datasets use different shared action spaces {sorted(unions)}")
        self.open_offline(cfg, datasets, datasets[0].action_space.union_size)
        self.teachers: list[GameModel] = []
        self.teacher_meta: list[dict[str, Any]] = []
        for path, task in zip(cfg.teachers, self.tasks, strict=True):
            net, meta = load_world_model(path, cfg.device)
            theirs = (meta.get("architecture") or {}).get("env_id")
            if theirs != task.env_id:
                raise CheckpointError(
                    f"teacher {path} was trained on {theirs}, its dataset is {task.env_id}; "
                    "list teachers in the order of the datasets")
            stack = int(meta["architecture"].get("frame_stack", task.frame_stack))
            if stack != task.frame_stack:
                raise CheckpointError(f"teacher {path} stacks {stack} frames, the data "
                                      f"{task.frame_stack}")
            self.teachers.append(GameModel(net, task.space, task.frame_channels, stack))
            self.teacher_meta.append(meta)
        self.finish_setup()

    def make_batch(self) -> EZBatch:
        """``batch_size`` samples, task per sample uniform, teacher targets in union width."""
        m = len(self.tasks)
        counts = self.rng.multinomial(self.cfg.batch_size, np.full(m, 1.0 / m))
        parts = [task.sample(teacher, int(n), self.rng, union=True)
                 for task, teacher, n in zip(self.tasks, self.teachers, counts, strict=True)
                 if n > 0]
        return concat_batches(parts)

    def teacher_returns(self) -> list[float]:
        """Each teacher's recorded final evaluation return (NaN when none was recorded)."""
        return [float(m.get("final_return_mean", float("nan"))) for m in self.teacher_meta]

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        meta = super().checkpoint_meta(final)
        if final:
            meta["teachers"] = [str(p) for p in self.cfg.teachers]
            meta["teacher_returns"] = self.teacher_returns()
            meta["teacher_deviation"] = [
                "teacher taken from the EfficientZero run that produced the data (trained "
                "online), not trained offline on the dataset alone"
                if teacher_is_from_data_run(m) else "" for m in self.teacher_meta]
        return meta


def distill_student(cfg: DistillConfig) -> RunResult:
    """Train (or resume, or return the finished) student of ``cfg``."""
    return DistillTrainer(cfg).run()


def student_vs_teacher(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per source task of a finished student run: ``task``, ``student`` (the final
    evaluation's mean return), ``teacher`` (its recorded return), ``ratio``
    (student / teacher, NaN when the teacher's is 0) and ``deviation``.

    Raises:
        CheckpointError: the run has no ``final/meta.json`` or no final ``eval_task`` records.
    """
    root = Path(run_dir)
    meta_path = root / "final" / "meta.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{root} is not a finished student run (no final/meta.json)")
    meta = json.loads(meta_path.read_text())
    last: dict[str, float] = {}
    metrics = root / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.is_file() else []:
        rec = json.loads(line)
        if rec.get("kind") == "eval_task":
            last[str(rec["task"])] = float(rec["return_mean"])
    tasks = list(meta["architecture"]["tasks"])
    if not all(t in last for t in tasks):
        raise CheckpointError(f"{metrics} lacks the final per-task evaluations")
    rows = []
    for task, teacher, dev in zip(tasks, meta["teacher_returns"], meta["teacher_deviation"],
                                  strict=True):
        ratio = last[task] / teacher if teacher not in (0.0,) and np.isfinite(teacher) \
            else float("nan")
        rows.append({"task": task, "student": last[task], "teacher": float(teacher),
                     "ratio": ratio, "deviation": dev})
    return rows
