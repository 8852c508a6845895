"""Configs of XTRA's offline stages (Xu et al. 2023, Sec. 3.1): one teacher per source task
trained offline on its dataset (:class:`TeacherConfig`), and the multi-task student distilled
from the teachers (:class:`DistillConfig`). The finetuning stage's config is
:class:`rltransfer.methods.xtra.finetune.FinetuneConfig`.

Both offline stages count **learner updates** where an online run counts env steps: their
``num_updates`` is the budget of the training loop (one "step" = one update, no env), and
evaluation / checkpoint cadences are in updates too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from rltransfer.agents.efficientzero.config import EfficientZeroConfig
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.core.config import Validated

__all__ = ["DistillConfig", "OfflineStageConfig", "TeacherConfig", "small_learner",
           "small_mcts"]

_DISCOUNT = 0.99


def small_learner() -> EfficientZeroConfig:
    """The learner of ``ez-small`` (MinAtar): discount 0.99, 200 warm-up updates, no
    augmentation (:func:`rltransfer.experiments.efficientzero.ez_small`)."""
    return dataclasses.replace(EfficientZeroConfig(), discount=_DISCOUNT, lr_warmup_updates=200,
                               augmentation="none")


def small_mcts() -> MCTSConfig:
    """The search of ``ez-small``: 8 simulations, discount 0.99."""
    return MCTSConfig(num_simulations=8, discount=_DISCOUNT, value_prefix_horizon=5)


@dataclass
class OfflineStageConfig(Validated):
    """What both offline stages share (defaults: ``ez-small``-sized MinAtar).

    Attributes:
        run_dir: the stage's run directory (resumed when it holds this run).
        seed: seed of the network, sampling and search noise.
        num_updates: learner updates (the loop's budget).
        batch_size: positions per update.
        net_preset: world-model size (``small`` MinAtar, ``atari``, ``atari-l``).
        channels: each frame zero-padded to this many channels (MinAtar: 10, Seaquest's, so
            every source shares one input layout); None keeps the dataset's.
        frame_stack: frames per observation (None: the dataset's).
        mcts / learner / reanalyse: search, EfficientZero loss and SGD, target reanalysis
            (``off_policy_tau`` is ignored: offline data has no age).
        eval_every_updates / eval_episodes: greedy evaluation on the task's env.
        checkpoint_every_updates / keep_checkpoints: resumable checkpoints.
        device / torch_threads / progress / tensorboard: as every run.

    Checked by :meth:`validate` (a stage extends :meth:`problems` with its own checks), the
    run configs' one validation style (:class:`~rltransfer.core.config.RunConfig`; a stage is
    no ``RunConfig``: it has no env and counts updates, not env steps).
    """

    run_dir: str = "runs/xtra-stage"
    seed: int = 0
    num_updates: int = 2_000
    batch_size: int = 64
    net_preset: Literal["small", "atari", "atari-l"] = "small"
    channels: int | None = 10
    frame_stack: int | None = None
    mcts: MCTSConfig = field(default_factory=small_mcts)
    learner: EfficientZeroConfig = field(default_factory=small_learner)
    reanalyse: ReanalyseConfig = field(default_factory=lambda: ReanalyseConfig(
        reanalyse_fraction=0.25, value_target="network"))
    eval_every_updates: int = 1_000
    eval_episodes: int = 8
    checkpoint_every_updates: int = 1_000
    keep_checkpoints: int = 2
    device: str = "cpu"
    torch_threads: int = 1
    progress: bool = True
    tensorboard: bool = True

    def problems(self) -> list[str]:
        """Every invalid value (counts below 1, channels below 1, search and learner discounts
        that differ), one message each; a stage appends its own to ``super().problems()``."""
        problems = []
        for name in ("num_updates", "batch_size", "eval_every_updates", "eval_episodes",
                     "checkpoint_every_updates", "keep_checkpoints", "torch_threads"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.channels is not None and self.channels < 1:
            problems.append(f"channels must be >= 1 or None (got {self.channels})")
        if abs(self.mcts.discount - self.learner.discount) > 1e-12:
            problems.append(f"mcts.discount {self.mcts.discount} differs from learner.discount "
                            f"{self.learner.discount}")
        return problems


@dataclass
class TeacherConfig(OfflineStageConfig):
    """One teacher: EfficientZero trained offline on one dataset (MuZero Reanalyze: targets
    reanalysed by its own target network, no acting).

    Attributes:
        dataset: an :class:`~rltransfer.replay.offline.OfflineDataset` directory.
    """

    run_dir: str = "runs/xtra-teacher"
    dataset: str = ""

    def problems(self) -> list[str]:
        """The stage's problems and a missing ``dataset``."""
        problems = super().problems()
        if not self.dataset:
            problems.append("dataset is required (an offline dataset directory)")
        return problems


@dataclass
class DistillConfig(OfflineStageConfig):
    """The multi-task student (``rltransfer pretrain-xtra``): one union-width EfficientZero
    on all source tasks, tasks drawn uniformly per sample, policy and value targets from the
    frozen teachers.

    Attributes:
        datasets: the ``m`` source datasets.
        teachers: ``m`` teacher run (or checkpoint) directories, in the order of
            ``datasets``: :class:`TeacherConfig` runs, or the EfficientZero runs that
            produced the data (a deviation from the paper, recorded in the run's metadata).
    """

    run_dir: str = "runs/xtra-student"
    datasets: tuple[str, ...] = ()
    teachers: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        """The stage's problems, no datasets, or teachers not one per dataset."""
        problems = super().problems()
        if not self.datasets:
            problems.append("datasets is required (one per source task)")
        if len(self.teachers) != len(self.datasets):
            problems.append(f"{len(self.datasets)} datasets need as many teachers, got "
                            f"{len(self.teachers)}")
        return problems
