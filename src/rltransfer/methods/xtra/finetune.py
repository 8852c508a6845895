"""XTRA's concurrent cross-task finetuning (Xu et al. 2023, Sec. 3.2, Eq. 1, 2, 4;
``rltransfer finetune-xtra``).

Online EfficientZero on the target task (the EfficientZero trainer itself,
:class:`~rltransfer.agents.efficientzero.train.EZTrainer`, run in the shared action space:
``train.action_space`` / ``train.pad_channels``) while training concurrently on the offline
source tasks. Each update draws ``B`` target samples (prioritized, reanalysed by the target
network, as EfficientZero) and ``B_off`` offline samples split evenly over the ``m`` sources
(reanalysed by the same target network, MuZero Reanalyze; the public code instead reuses the
stored search statistics), and minimises Eq. 1::

    L = L_ez(target) + sum_i eta_i L_ez(source i)

as one EfficientZero update over the concatenated batch whose per-sample weights are
``N/B * w_j`` on target samples (``w_j`` the importance weights) and ``eta_i * N / n_i`` on
source ``i``'s ``n_i`` samples (``N`` = all samples): the learner's weighted mean then equals
Eq. 1's sum exactly, and ``eta_i = 0`` leaves exactly the target loss of the same forward
pass. (The public code scales importance weights inside one mean, i.e.
``0.5 * (L_T + mean_i eta_i L_i)``; Eq. 1's scale is used here.)

Task weights (:class:`~rltransfer.methods.xtra.task_weights.TaskWeights`): eta starts at 1;
during the measuring updates of each cycle, one extra forward + backward per task computes the
flattened, clamped gradient of each task's loss over all trainable parameters and its cosine
with the target's (Eq. 2); the weights are rewritten from the hit counters (Eq. 4, the paper's
``s/N`` or the public code's ``round((s+1)/(N+1), 2)``). The schedule is scaled to the run's
update budget with the paper's ratios (:meth:`TaskWeightSchedule.scaled`: start at 10%,
18 cycles, 10% of each measured). Every ``eta/<task>`` goes to ``metrics.jsonl`` and
TensorBoard with each ``train`` record, and the weights are checkpointed.

Variants (:data:`VARIANTS` in :mod:`rltransfer.experiments.xtra`): transfer h / h+g / h+g+f
(``train.transfer``), frozen h (``train.freeze``), no cross-task data (no ``sources``: the
plain EfficientZero trainer), no pretraining (no ``train.init_from``), constant weights
(``task_weights="constant"``), zero-shot (:func:`zero_shot_returns`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rltransfer.agents.efficientzero.batch import EZBatch
from rltransfer.agents.efficientzero.config import EZTrainConfig, importance_exponent_at
from rltransfer.agents.efficientzero.shared_space import GameModel
from rltransfer.agents.efficientzero.train import EZTrainer, train_efficientzero
from rltransfer.core.config import ConfigError, to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.run import RunResult
from rltransfer.core.run_dir import RunConflictError
from rltransfer.methods.xtra.offline_batches import OfflineBatches, concat_batches
from rltransfer.methods.xtra.offline_loop import evaluate_on_task, load_world_model
from rltransfer.methods.xtra.task_weights import (
    EtaFormula,
    TaskWeights,
    TaskWeightSchedule,
    flat_gradient,
    gradient_cosine,
)
from rltransfer.replay.offline import OfflineDataset

__all__ = ["FinetuneConfig", "XTRATrainer", "finetune_xtra", "split_evenly",
           "zero_shot_returns"]


@dataclass
class FinetuneConfig:
    """One cross-task finetuning run.

    Attributes:
        train: the target task's EfficientZero run (env, budget, batch ``B``, search,
            ``init_from`` = the student, ``transfer`` / ``freeze`` components,
            ``action_space`` / ``pad_channels`` of the shared space, ``run_dir``).
        sources: offline source datasets (empty: no cross-task data, plain finetuning).
        offline_batch_size: ``B_off`` (None: ``train.batch_size``, the paper's 1:1).
        task_weights: ``"gradient"`` (Eq. 2/4) or ``"constant"`` (eta = 1, the ablation).
        eta_formula: ``"paper"`` or ``"public"``.
        weight_cycles / measure_fraction / start_fraction: the scaled schedule (paper: 18
            cycles after 10% of the updates, 10% of each cycle measured).
        clamp: elementwise gradient clamp before the cosine (public code: 5).
    """

    train: EZTrainConfig = field(default_factory=EZTrainConfig)
    sources: tuple[str, ...] = ()
    offline_batch_size: int | None = None
    task_weights: Literal["gradient", "constant"] = "gradient"
    eta_formula: EtaFormula = "paper"
    weight_cycles: int = 18
    measure_fraction: float = 0.1
    start_fraction: float = 0.1
    clamp: float = 5.0

    def total_updates(self) -> int:
        """Learner updates of the run: ``(total - warmup) * updates_per_env_step``, >= 1."""
        t = self.train
        learning = t.total_env_steps - t.learning_starts_env_steps
        return max(1, round(learning * t.updates_per_env_step))

    def schedule(self) -> TaskWeightSchedule:
        """The task-weight schedule scaled to :meth:`total_updates`."""
        return TaskWeightSchedule.scaled(
            self.total_updates(), cycles=self.weight_cycles,
            measure_fraction=self.measure_fraction, start_fraction=self.start_fraction,
            clamp=self.clamp, formula=self.eta_formula)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` samples over ``parts`` tasks, as even as possible, the remainder to the
    first tasks: ``split_evenly(10, 4) == [3, 3, 2, 2]``."""
    base, extra = divmod(int(total), int(parts))
    return [base + (1 if i < extra else 0) for i in range(parts)]


class XTRATrainer(EZTrainer):
    """The EfficientZero trainer with XTRA's cross-task update (see the module docstring).

    Raises:
        ConfigError: invalid settings; RunConflictError: the run dir holds another XTRA run;
        ActionSpaceMismatchError: a source of another action union than the target.
    """

    def __init__(self, cfg: FinetuneConfig) -> None:
        if not cfg.sources:
            raise ConfigError("XTRATrainer needs sources; without cross-task data run the "
                              "plain EfficientZero trainer (finetune_xtra does)")
        if cfg.task_weights not in ("gradient", "constant"):
            raise ConfigError(f"task_weights must be 'gradient' or 'constant', got "
                              f"{cfg.task_weights!r}")
        datasets = [OfflineDataset.load(p) for p in cfg.sources]
        schedule = cfg.schedule()
        super().__init__(cfg.train)
        self.xtra = cfg
        self._check_xtra_config()
        net = self.learner.network
        channels = net.obs_shape[0] // self.frame_stack
        t = cfg.train
        self.sources = [OfflineBatches(
            d, t.mcts, discount=float(t.learner.discount),
            value_prefix_horizon=t.mcts.value_prefix_horizon, unroll_steps=t.learner.unroll_steps,
            td_steps=t.learner.td_steps, reanalyse=t.reanalyse, frame_stack=self.frame_stack,
            channels=channels, device=t.device) for d in datasets]
        self.source_models = [GameModel(self.learner.target_network, s.space, channels,
                                        self.frame_stack) for s in self.sources]
        names = [d.env_id for d in datasets]
        self.task_weights = TaskWeights(names, schedule)
        self.offline_sizes = split_evenly(cfg.offline_batch_size or t.batch_size,
                                          len(self.sources))

    def _check_xtra_config(self) -> None:
        """Keep the XTRA settings next to the EZ config (``xtra.json``): a resume with other
        sources or weighting is refused."""
        path = self.run_dir / "xtra.json"
        mine = {k: v for k, v in to_dict(self.xtra).items() if k != "train"}
        if path.is_file():
            theirs = json.loads(path.read_text())
            if theirs != json.loads(json.dumps(mine)):
                raise RunConflictError(f"{self.run_dir} holds an XTRA run with other settings "
                                       f"({theirs} vs {mine}); use a new run directory")
        else:
            path.write_text(json.dumps(mine, indent=2))

    # ------------------------------------------------------------------ the update
    def _source_batches(self) -> list[EZBatch]:
        return [src.sample(model, n, self.rng, union=True)
                for src, model, n in zip(self.sources, self.source_models, self.offline_sizes,
                                         strict=True) if n > 0]

    def update(self) -> dict[str, float]:
        """One Eq. 1 update on ``B`` target + ``B_off`` source samples; cosines measured
        first on measuring updates; target priorities written back."""
        cfg, u = self.cfg, self.num_updates
        target = self.reanalyser.make_batch(self.learner.target_network, cfg.batch_size,
                                            self.rng, importance_exponent_at(cfg, self.env_steps))
        parts = self._source_batches()
        gradient = self.xtra.task_weights == "gradient"
        eta = self.task_weights.begin_update(u) if gradient else self.task_weights.eta.copy()
        metrics: dict[str, float] = {}
        if gradient and self.task_weights.schedule.measures(u):
            cosines = self.measure_cosines(target, parts)
            self.task_weights.observe(u, cosines)
            metrics.update({f"cos/{n}": float(c)
                            for n, c in zip(self.task_weights.task_names, cosines, strict=True)})
        batch = self.weighted_batch(target, parts, eta)
        result = self.learner.update(batch)
        b = int(target.obs.shape[0])
        if result.priorities is not None:
            self.replay.update_priorities(target.indices, result.priorities[:b])
        if (self.num_updates + 1) % cfg.selfplay_update_interval_updates == 0:
            self.selfplay_network.load_state_dict(self.learner.network.state_dict())
        return {**result.metrics, **metrics, **self.task_weights.metrics()}

    @staticmethod
    def weighted_batch(target: EZBatch, parts: list[EZBatch],
                       eta: np.ndarray | list[float]) -> EZBatch:
        """The concatenated batch whose weighted mean loss is Eq. 1 (module docstring):
        target weights ``w * N / B``, source ``i`` weights ``eta_i * N / n_i``."""
        n_all = int(target.obs.shape[0]) + sum(int(p.obs.shape[0]) for p in parts)
        target.weights = target.weights * (n_all / int(target.obs.shape[0]))
        for part, w in zip(parts, eta, strict=True):
            part.weights = torch.full_like(part.weights, float(w) * n_all / part.obs.shape[0])
        return concat_batches([target, *parts])

    def measure_cosines(self, target: EZBatch, parts: list[EZBatch]) -> np.ndarray:
        """Cosine between each source's loss gradient and the target's (Eq. 2), each the
        flattened gradient over all trainable parameters
        (:meth:`~rltransfer.agents.efficientzero.learner.EfficientZeroLearner.
        trainable_parameters`) clamped to ``+-clamp``; a separate pass (the public code's),
        leaving weights, BatchNorm statistics and ``.grad`` unchanged.

        Returns:
            ``float64[m]``, one cosine per source batch in ``parts``.
        """
        learner = self.learner
        params = learner.trainable_parameters()
        buffers = {k: v.clone() for k, v in learner.network.named_buffers()}
        clamp = self.task_weights.schedule.clamp
        try:
            grads = [flat_gradient(self.task_objective(batch), params, retain_graph=False)
                     for batch in (target, *parts)]
        finally:
            with torch.no_grad():
                for k, v in learner.network.named_buffers():
                    v.copy_(buffers[k])
        return np.array([gradient_cosine(grads[0], g, clamp=clamp) for g in grads[1:]])

    def task_objective(self, batch: EZBatch) -> torch.Tensor:
        """The EfficientZero objective of one task's batch with its graph
        (:meth:`~rltransfer.agents.efficientzero.learner.EfficientZeroLearner.
        batch_objective`: the learner's unroll and EZ Eq. 5 weighting, no step)."""
        return self.learner.batch_objective(batch).objective

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, Any]:
        tensors = super().state_tensors()
        tensors.update({f"xtra/{k}": torch.from_numpy(v)
                        for k, v in self.task_weights.state_tensors().items()})
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        super().load_state_tensors({k: v for k, v in tensors.items()
                                    if not k.startswith("xtra/")}, meta)
        self.task_weights.load_state_tensors(
            {k[len("xtra/"):]: v for k, v in tensors.items() if k.startswith("xtra/")})

    def evaluate(self, logger: MetricsLogger) -> float:
        """EfficientZero's evaluation; the current weights logged with it (``eta`` record)."""
        logger.log("eta", self.env_steps, num_updates=self.num_updates,
                   **self.task_weights.metrics())
        return super().evaluate(logger)


def finetune_xtra(cfg: FinetuneConfig) -> RunResult:
    """Run (or resume, or return the finished) finetuning of ``cfg``: with sources the
    cross-task :class:`XTRATrainer`, without them the plain EfficientZero trainer."""
    if not cfg.sources:
        return train_efficientzero(cfg.train)
    return XTRATrainer(cfg).run()


def zero_shot_returns(student: str | Path, env_id: str, mcts: Any, *, frame_stack: int,
                      episodes: int, seed: int, device: str = "cpu",
                      env_kwargs: Mapping[str, Any] | None = None) -> np.ndarray:
    """Zero-shot returns ``float64[episodes]`` of a distilled student on a target game it
    never trained on (the paper's zero-shot column): greedy search over the target's legal
    actions, its frames padded to the student's channels, on the evaluation env of
    ``env_kwargs`` (the target run's training-env settings,
    :func:`~rltransfer.agents.efficientzero.config.ez_env_kwargs`; None: the suite's
    defaults, :func:`~rltransfer.methods.xtra.offline_loop.task_eval_kwargs`)."""
    net, _ = load_world_model(student, device)
    return evaluate_on_task(net, env_id, frame_stack, mcts, episodes=episodes, seed=seed,
                            device=device, env_kwargs=env_kwargs)
