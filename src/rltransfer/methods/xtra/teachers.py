"""XTRA's teachers (Xu et al. 2023, Sec. 3.1): "individual EfficientZero teacher models on
each dataset ... in a single-task (offline) RL setting".

:class:`TeacherTrainer` trains one EfficientZero of the game's own (local) action width on
one :class:`~rltransfer.replay.offline.OfflineDataset` alone, by MuZero Reanalyze
(Schrittwieser et al. 2021): every batch's value and policy targets are recomputed by the
teacher's own target network (:class:`~rltransfer.methods.xtra.offline_batches.
OfflineBatches`), nothing is acted. Frames are padded to the stage's common channel count
(MinAtar: 10) so the teacher reads what the student reads.

The alternative, taking the network of the EfficientZero run that produced the dataset as the
teacher (:func:`teacher_is_from_data_run`), is a deviation from the paper (that network was
trained online, with acting); :mod:`rltransfer.methods.xtra.distill` accepts it and records
it in the student's metadata and report.
"""

from __future__ import annotations

from typing import Any

from rltransfer.agents.efficientzero.batch import EZBatch
from rltransfer.agents.efficientzero.shared_space import GameModel
from rltransfer.core.run import RunResult, closes_envs_on_failure
from rltransfer.methods.xtra.config import TeacherConfig
from rltransfer.methods.xtra.offline_loop import OfflineTrainer
from rltransfer.replay.offline import OfflineDataset

__all__ = ["TeacherTrainer", "teacher_is_from_data_run", "train_teacher"]


class TeacherTrainer(OfflineTrainer):
    """One offline EfficientZero teacher (see the module docstring).

    Raises:
        ConfigError: invalid config. RunConflictError: the run dir holds another run.
        CheckpointError / OfflineDatasetError: an unreadable dataset.
    """

    stage = "teacher"

    @closes_envs_on_failure
    def __init__(self, cfg: TeacherConfig) -> None:
        cfg.validate()
        data = OfflineDataset.load(cfg.dataset)
        self.open_offline(cfg, [data], data.action_space.num_legal)
        task = self.tasks[0]
        self.target_model = GameModel(self.learner.target_network, task.space,
                                      task.frame_channels, task.frame_stack)
        self.finish_setup()

    def make_batch(self) -> EZBatch:
        """``batch_size`` positions of the dataset, targets by the teacher's target network
        (local action ids)."""
        return self.tasks[0].sample(self.target_model, self.cfg.batch_size, self.rng)

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        meta = super().checkpoint_meta(final)
        if final:
            meta["dataset"] = str(self.cfg.dataset)
        return meta


def train_teacher(cfg: TeacherConfig) -> RunResult:
    """Train (or resume, or return the finished) teacher of ``cfg``."""
    return TeacherTrainer(cfg).run()


def teacher_is_from_data_run(meta: dict[str, Any]) -> bool:
    """Whether a teacher checkpoint's ``meta`` comes from an online EfficientZero run (the
    run that produced the data: a deviation) rather than a :class:`TeacherTrainer`."""
    return (meta.get("architecture") or {}).get("xtra_stage") != "teacher"
