"""The one training loop of every learner (R2D2 / Behavior Transfer in ``agents/r2d2/train.py``,
pixel SAC in ``agents/sac/train.py``, EfficientZero in ``agents/efficientzero/train.py``).

:class:`TrainingLoop` is the part the three trainers share, split as Acme splits actor and
learner: the loop owns the counters (env steps, updates, episodes), the warm-up (no update
before ``learning_starts_at``), the replay ratio (update debt in **updates per env step**,
:class:`~rltransfer.core.schedule.ReplayRatio`), the evaluation and checkpoint cadence
(:class:`~rltransfer.core.schedule.LoopSchedule`), saving and resuming its counters, the NaN
guard on update metrics, and the progress bar. A trainer implements the acting
(:meth:`TrainingLoop.collect_step`, or its own :meth:`TrainingLoop.drive` for Ray actors), one
learner update (:meth:`TrainingLoop.update`), evaluation, and its part of a checkpoint
(:meth:`TrainingLoop.architecture`, :meth:`TrainingLoop.final_tensors`,
:meth:`TrainingLoop.state_tensors` / :meth:`TrainingLoop.load_state_tensors`,
:meth:`TrainingLoop.checkpoint_meta`).

How a run starts, resumes and ends (finished run, resume, train, evaluate, ``final/``) is
:func:`rltransfer.core.run.run_to_completion`; per-env episode returns are
:class:`rltransfer.core.episodes.EpisodeTracker`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rltransfer.core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_dirname,
)
from rltransfer.core.config import to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress
from rltransfer.core.run import RunResult, run_to_completion
from rltransfer.core.run_dir import check_run_dir
from rltransfer.core.schedule import LoopSchedule
from rltransfer.core.seeding import (
    generator_state,
    restore_generator,
    restore_torch_rng,
    seed_everything,
    torch_rng_tensors,
)

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

__all__ = ["NonFiniteMetricError", "TrainingLoop", "sub_tensors"]


class NonFiniteMetricError(RuntimeError):
    """An update reported a NaN/inf loss (the loop's NaN guard): the run stops; its latest
    checkpoint is from before the failure."""


class TrainingLoop:
    """The shared half of a trainer (see the module docstring): a subclass sets its envs,
    replay and ``self.rng`` in ``__init__``, calls :meth:`init_loop`, and implements the
    hooks below.

    Counters (attributes): ``env_steps``, ``num_updates``, ``episodes``, ``update_debt``,
    ``next_eval``, ``next_checkpoint``, ``last_eval_return``, ``learning_starts_at``; all of
    them are saved in every checkpoint and restored on resume.
    """

    cfg: Any
    run_dir: Path
    envs: VectorEnv
    replay: Any
    rng: np.random.Generator
    schedule: LoopSchedule
    tensorboard: bool

    # ------------------------------------------------------------------ setup
    def open_run(self, cfg: Any, ignore: frozenset[str] = frozenset()) -> None:
        """The start of every trainer's ``__init__``: keep ``cfg`` (a run config with
        ``run_dir``, ``seed`` and ``torch_threads``), set torch's thread count, check the run
        directory (nothing written; ``ignore``: config fields a resume may change) and seed
        every generator (``self.rng``: the trainer's numpy generator).

        Raises:
            RunConflictError: the run directory holds another run.
        """
        self.cfg = cfg
        torch.set_num_threads(cfg.torch_threads)
        self.run_dir = check_run_dir(cfg, cfg.run_dir, ignore=ignore)
        self.rng = seed_everything(cfg.seed)

    def open_pixel_envs(self, make_env: Callable[..., VectorEnv], spec: Any,
                        env_kwargs: dict[str, Any]) -> None:
        """Build the training envs of a pixel suite (``self.cfg``'s ``env_id``,
        ``num_envs``, ``seed``, ``frame_stack``; ``make_env(env_id, num_envs, seed,
        **env_kwargs)``, e.g. :func:`rltransfer.envs.make_env`; ``spec``: the suite's
        :func:`~rltransfer.envs.env_spec`) and set ``spec``, ``envs``,
        ``frame_shape`` ``(C, H, W)``, ``frame_stack`` (``None`` in the config: the
        suite's) and ``obs_shape`` ``(C * frame_stack, H, W)``."""
        cfg = self.cfg
        self.spec = spec
        self.envs = make_env(cfg.env_id, cfg.num_envs, cfg.seed, **env_kwargs)
        shape = self.envs.single_observation_space.shape
        assert shape is not None and len(shape) == 3, shape
        self.frame_shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.frame_stack: int = cfg.frame_stack or self.spec.frame_stack
        c, h, w = self.frame_shape
        self.obs_shape = (c * self.frame_stack, h, w)

    def init_loop(self, schedule: LoopSchedule, *, tensorboard: bool) -> None:
        """Start the counters of a new run under ``schedule``."""
        self.schedule = schedule
        self.tensorboard = tensorboard
        self.env_steps = 0
        self.num_updates = 0
        self.episodes = 0
        self.update_debt = 0.0
        self.next_eval = schedule.eval_every_env_steps
        self.next_checkpoint = schedule.checkpoint_every_env_steps
        self.last_eval_return = math.nan
        self.learning_starts_at = schedule.learning_starts_env_steps
        self._recent_returns: list[float] = []
        self._train_metrics: dict[str, float] = {}
        self._learn_seconds = 0.0

    # ------------------------------------------------------------------ hooks
    def architecture(self) -> dict[str, Any]:
        """What a reader needs to rebuild the agent; a checkpoint of another architecture is
        refused on resume."""
        raise NotImplementedError

    def final_tensors(self) -> dict[str, Any]:
        """The tensors of ``final/`` (the artifact other runs load)."""
        raise NotImplementedError

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        """The trainer's own ``meta.json`` entries (``final``: of ``final/``)."""
        return {}

    def state_tensors(self) -> dict[str, Any]:
        """The trainer's resumable tensors (agent, intrinsic reward, ...), without the
        replay and the torch RNG (the loop saves those)."""
        raise NotImplementedError

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        """Restore :meth:`state_tensors` (``tensors`` is the whole checkpoint) and the
        trainer's own :meth:`checkpoint_meta` entries."""
        raise NotImplementedError

    def collect_step(self, logger: MetricsLogger) -> None:
        """Step the envs once (``num_envs`` env steps): act, write replay, log finished
        episodes with :meth:`_log_episodes`. The loop counts the env steps."""
        raise NotImplementedError

    def start_collecting(self) -> None:
        """Reset the envs (seeded from ``env_steps``) before :meth:`collect_step` runs."""
        raise NotImplementedError

    def update(self) -> dict[str, float]:
        """One learner update (sample, learn, priorities); returns its metrics. The loop
        counts it in ``num_updates`` afterwards."""
        raise NotImplementedError

    def evaluate(self, logger: MetricsLogger) -> float:
        """Evaluate, log an ``eval`` record (:meth:`log_eval`), return the mean return."""
        raise NotImplementedError

    def train_record_extras(self) -> dict[str, Any]:
        """Entries a trainer adds to each ``train`` record (before the update metrics)."""
        return {}

    def before_loop(self) -> None:
        """Runs once before the progress bar starts (e.g. a warm-up of the intrinsic
        reward)."""
        return None

    def drive(self, logger: MetricsLogger, progress: RunProgress) -> None:
        """Act until the budget is spent, calling :meth:`_after_env_steps` after every
        vector step. Default: :meth:`collect_step` in this process; Ray backends override
        this and feed their actors' rounds the same way."""
        self.start_collecting()
        while self.env_steps < self.schedule.total_env_steps:
            self.collect_step(logger)
            self.env_steps += self.schedule.num_envs
            self._after_env_steps(logger, progress)

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        """Train to the budget (resuming if a checkpoint exists), evaluate, write ``final/``.
        A run whose ``final/`` exists returns its recorded result."""
        return run_to_completion(self, tensorboard=self.tensorboard)

    def _loop(self, logger: MetricsLogger) -> None:
        """Act and learn until the budget is spent (see :meth:`drive`)."""
        self._recent_returns = []
        self._train_metrics = {}
        self._learn_seconds = 0.0
        self.before_loop()
        s = self.schedule
        with RunProgress(s.run_name, s.total_env_steps, self.env_steps,
                         enabled=s.progress) as progress:
            self.drive(logger, progress)

    def _log_episodes(self, logger: MetricsLogger, returns: np.ndarray, lengths: np.ndarray,
                      intrinsic: np.ndarray | None = None, *, step: int | None = None) -> None:
        """Count and log finished episodes (``episode`` records at ``step``, default
        ``env_steps``; with ``intrinsic``, their intrinsic returns too)."""
        at = self.env_steps if step is None else step
        for i, (ret, length) in enumerate(zip(returns, lengths, strict=True)):
            self.episodes += 1
            self._recent_returns.append(float(ret))
            if intrinsic is None:
                logger.log("episode", at, ret=float(ret), length=int(length))
            else:
                logger.log("episode", at, ret=float(ret), length=int(length),
                           intrinsic=float(intrinsic[i]))

    def _after_env_steps(self, logger: MetricsLogger, progress: RunProgress) -> None:
        """Learning, checkpoints, evaluation and progress after ``num_envs`` new env steps
        (one vector step, from this process or from a Ray round)."""
        s = self.schedule
        tick = time.perf_counter()
        if self.env_steps >= self.learning_starts_at and self.replay.can_sample():
            self.update_debt += s.replay_ratio.debt(s.num_envs)
            if s.warmup_burst_env_steps and self.env_steps < self.learning_starts_at + s.num_envs:
                self.update_debt += s.replay_ratio.debt(s.warmup_burst_env_steps)
            while self.update_debt >= 1.0:
                self.update_debt -= 1.0
                metrics = self.update()
                self.num_updates += 1
                self._check_finite(metrics)
                self._train_metrics = metrics
        self._learn_seconds += time.perf_counter() - tick
        if self.env_steps >= self.next_checkpoint:
            self.next_checkpoint += s.checkpoint_every_env_steps
            self.save()
        if self.env_steps >= self.next_eval and self.env_steps < s.total_env_steps:
            self.next_eval += s.eval_every_env_steps
            self.evaluate(logger)
            recent = self._recent_returns[-s.recent_episodes:]
            logger.log("train", self.env_steps, episodes=self.episodes,
                       num_updates=self.num_updates,
                       recent_return=float(np.mean(recent)) if recent else math.nan,
                       env_steps_per_second=progress.env_steps_per_second,
                       **self.train_record_extras(), **self._train_metrics)
        progress.update(
            self.env_steps,
            f"eval {self.last_eval_return:.3g} | ep {self.episodes} | upd {self.num_updates}",
        )

    def _check_finite(self, metrics: dict[str, float]) -> None:
        """The NaN guard: every ``*loss*`` metric of an update must be finite.

        Raises:
            NonFiniteMetricError: naming the metric, the update and the env step.
        """
        for name, value in metrics.items():
            if "loss" in name and not math.isfinite(value):
                raise NonFiniteMetricError(
                    f"update {self.num_updates} at env step {self.env_steps} reported "
                    f"{name} = {value}; the run stops (resume from its latest checkpoint "
                    "after fixing the cause: learning rate, rewards, observations)")

    def log_eval(self, logger: MetricsLogger, returns: np.ndarray) -> float:
        """Record an evaluation's ``float64[N]`` episode returns: ``last_eval_return`` (the
        mean, returned) and an ``eval`` record."""
        self.last_eval_return = float(np.mean(returns))
        logger.log("eval", self.env_steps, return_mean=self.last_eval_return,
                   return_std=float(np.std(returns)), returns=[float(r) for r in returns],
                   num_updates=self.num_updates)
        return self.last_eval_return

    # ------------------------------------------------------------------ checkpoints
    def save(self, final: bool = False) -> Path:
        """Write a resumable checkpoint ``checkpoints/step_<env_steps>`` (trainer state,
        replay if ``checkpoint_replay``, RNG states, the loop's counters; older ones
        pruned to ``keep_checkpoints``), or (``final``) the artifact ``final/``."""
        meta: dict[str, Any] = {
            "architecture": self.architecture(),
            "config": self.config_dict(),
            "env_steps": self.env_steps,
            "num_updates": self.num_updates,
            "episodes": self.episodes,
        }
        meta.update(self.checkpoint_meta(final))
        if final:
            meta["final_return_mean"] = self.last_eval_return
            return save_checkpoint(self.run_dir / "final", self.final_tensors(), meta)
        s = self.schedule
        tensors: dict[str, Any] = dict(self.state_tensors())
        if s.checkpoint_replay:
            tensors.update({f"replay/{k}": v for k, v in self.replay.state_tensors().items()})
        tensors.update(torch_rng_tensors())
        meta.update(
            rng=generator_state(self.rng),
            update_debt=self.update_debt,
            next_eval=self.next_eval,
            next_checkpoint=self.next_checkpoint,
            last_eval_return=self.last_eval_return,
            learning_starts_at=self.learning_starts_at,
            replay_saved=s.checkpoint_replay,
        )
        path = save_checkpoint(self.run_dir / "checkpoints" / step_dirname(self.env_steps),
                               tensors, meta)
        prune_checkpoints(self.run_dir / "checkpoints", keep=s.keep_checkpoints)
        return path

    def config_dict(self) -> dict[str, Any]:
        """The run's config as recorded in checkpoints (``to_dict(self.cfg)``)."""
        return to_dict(self.cfg)

    def try_resume(self) -> bool:
        """Resume from the latest checkpoint of the run directory, if any. Without a saved
        replay, learning waits ``learning_starts_env_steps`` again (the replay refills).

        Raises:
            CheckpointError: the latest checkpoint is corrupt or was written by another
                architecture; the message says which one. Nothing on disk is changed.
        """
        ckpt = latest_checkpoint(self.run_dir / "checkpoints")
        if ckpt is None:
            return False
        tensors, meta = load_checkpoint(ckpt)
        if meta.get("architecture") != self.architecture():
            raise CheckpointError(
                f"{ckpt} was written by an agent with another architecture; delete it or use "
                "a new run_dir")
        self.load_state_tensors(tensors, meta)
        if meta.get("replay_saved"):
            self.replay.load_state_tensors(
                {k[len("replay/"):]: v.numpy() for k, v in tensors.items()
                 if k.startswith("replay/")})
        restore_torch_rng(tensors)
        restore_generator(self.rng, meta["rng"])
        self.env_steps = int(meta["env_steps"])
        self.num_updates = int(meta["num_updates"])
        self.episodes = int(meta["episodes"])
        self.update_debt = float(meta["update_debt"])
        self.next_eval = int(meta["next_eval"])
        self.next_checkpoint = int(meta["next_checkpoint"])
        self.last_eval_return = float(meta["last_eval_return"])
        self.learning_starts_at = int(meta.get("learning_starts_at",
                                               self.schedule.learning_starts_env_steps))
        if not meta.get("replay_saved"):
            self.learning_starts_at = self.env_steps + self.schedule.learning_starts_env_steps
        return True


def sub_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix`` with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
