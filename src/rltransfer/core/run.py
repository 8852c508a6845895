"""How every run goes, whatever trains it (:func:`run_to_completion`), and how a trainer's
constructor fails cleanly (:func:`closes_envs_on_failure`).

A run directory whose ``final/`` exists is finished, so its recorded result comes back without
training (:func:`finished_result`). Otherwise the run resumes from its latest checkpoint if
there is one; ``metrics.jsonl`` is cut back to the checkpoint's env step so that no record is
duplicated. It then trains to its budget, evaluates, and writes a last checkpoint and
``final/``. :class:`~rltransfer.core.loop.TrainingLoop` implements the :class:`Trainer` this
needs.

Before that, a trainer's constructor validates everything the run needs (config, env, prior,
init checkpoint) before it writes anything to the run directory
(:func:`rltransfer.core.run_dir.check_run_dir` first,
:func:`~rltransfer.core.run_dir.prepare_run_dir` last), and closes the envs it built if it
fails (:func:`closes_envs_on_failure`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from rltransfer.core.metrics import MetricsLogger

__all__ = [
    "RunResult",
    "Trainer",
    "closes_envs_on_failure",
    "finished_result",
    "run_to_completion",
]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_S = TypeVar("_S")


def closes_envs_on_failure(
    init: Callable[Concatenate[_S, _P], None],
) -> Callable[Concatenate[_S, _P], None]:
    """Decorate a trainer's ``__init__`` so that, if it raises, the envs it already built
    (``self.envs``, if set) are closed before the exception propagates (no renderer or
    emulator is left open behind the error message)."""

    @functools.wraps(init)
    def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            envs = getattr(self, "envs", None)
            if envs is not None:
                try:
                    envs.close()
                except Exception:  # the original error is the one to report
                    log.exception("closing the envs after a failed start also failed")
            raise

    return wrapper


@dataclass
class RunResult:
    """What a finished run reports: its directory, counters and final evaluation.

    ``final_return_mean`` is the mean return of the final evaluation (NaN if none was
    recorded); ``wall_seconds`` is 0 for a run that was already finished.
    """

    run_dir: Path
    env_steps: int
    num_updates: int
    final_return_mean: float
    wall_seconds: float


class Trainer(Protocol):
    """What :func:`run_to_completion` needs from a training loop
    (:class:`~rltransfer.core.loop.TrainingLoop` implements it)."""

    run_dir: Path
    env_steps: int
    num_updates: int
    last_eval_return: float
    envs: Any  # a gymnasium VectorEnv (closed at the end)

    def try_resume(self) -> bool:
        """Load the latest checkpoint of ``run_dir`` if there is one; True if it did."""
        ...

    def _loop(self, logger: MetricsLogger) -> None:
        """Act and learn until the env-step budget is spent."""
        ...

    def evaluate(self, logger: MetricsLogger) -> float:
        """Evaluate, log an ``eval`` record, return the mean return."""
        ...

    def save(self, final: bool = False) -> Path:
        """Write a checkpoint (``final=True``: the ``final/`` directory)."""
        ...


def finished_result(run_dir: Path) -> RunResult | None:
    """The recorded result of a run whose ``final/meta.json`` exists, else None."""
    final_meta = run_dir / "final" / "meta.json"
    if not final_meta.is_file():
        return None
    meta = json.loads(final_meta.read_text())
    return RunResult(run_dir, int(meta["env_steps"]), int(meta["num_updates"]),
                     float(meta.get("final_return_mean", math.nan)), 0.0)


def run_to_completion(trainer: Trainer, *, tensorboard: bool) -> RunResult:
    """Run ``trainer`` to its budget: return a finished run's recorded result at once, else
    resume if possible, train, evaluate, save the last checkpoint and ``final/``. The logger
    and the envs are closed however the run ends.

    Raises:
        CheckpointError: from ``trainer.try_resume`` (a corrupt or foreign checkpoint);
            nothing on disk is changed. Whatever the loop raises (e.g. a NaN loss), after
            closing the logger and the envs.
    """
    start = time.perf_counter()
    done = finished_result(trainer.run_dir)
    if done is not None:
        trainer.envs.close()
        return done
    resumed = trainer.try_resume()
    logger = MetricsLogger(trainer.run_dir, tensorboard=tensorboard)
    if resumed:
        logger.truncate_after(trainer.env_steps)
        log.warning("resumed %s at %d env steps", trainer.run_dir, trainer.env_steps)
    try:
        trainer._loop(logger)
        trainer.evaluate(logger)
        trainer.save()
        trainer.save(final=True)
    finally:
        logger.close()
        trainer.envs.close()
    return RunResult(trainer.run_dir, trainer.env_steps, trainer.num_updates,
                     trainer.last_eval_return, time.perf_counter() - start)
