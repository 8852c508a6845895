"""When the training loop learns, evaluates and checkpoints: the replay ratio as an exact
fraction of updates per env step (:class:`ReplayRatio`) and the loop's cadences
(:class:`LoopSchedule`), read by :class:`~rltransfer.core.loop.TrainingLoop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LoopSchedule", "ReplayRatio"]


@dataclass(frozen=True)
class ReplayRatio:
    """Learner updates per env step as the exact fraction ``updates / env_steps`` (every
    agent's ``updates_per_env_step`` ``u`` is ``ReplayRatio(u, 1)``; R2D2's "one update per 4
    env steps" is ``u = 0.25``, exact in binary).

    Kept as two numbers so that the update debt added for ``n`` env steps,
    ``n * updates / env_steps``, is the same float as the trainers computed before (``n / 4``
    and ``n * u``), which keeps fixed-seed runs bit-identical.
    """

    updates: float = 1.0
    env_steps: float = 1.0

    def __post_init__(self) -> None:
        if not (self.updates > 0 and self.env_steps > 0):
            raise ValueError(f"a replay ratio needs updates > 0 and env_steps > 0, got {self}")

    @property
    def updates_per_env_step(self) -> float:
        """``updates / env_steps``."""
        return self.updates / self.env_steps

    def debt(self, num_env_steps: float) -> float:
        """Updates owed for ``num_env_steps`` new env steps (fractional)."""
        return num_env_steps * self.updates / self.env_steps


@dataclass(frozen=True)
class LoopSchedule:
    """When the loop learns, evaluates and checkpoints (all counts in env steps of all envs
    together; SAC's are agent steps).

    Attributes:
        total_env_steps: the budget.
        num_envs: env steps per vector step (``B``).
        replay_ratio: updates per env step once learning has started.
        learning_starts_env_steps: no update while ``env_steps`` (counted after the vector
            step) is below this; after a resume without a saved replay, learning waits this
            many env steps again.
        warmup_burst_env_steps: the first vector step that learns also owes the updates of
            this many env steps (PAD / SAC: the warm-up's updates at once); 0: none.
        eval_every_env_steps / checkpoint_every_env_steps / keep_checkpoints /
            checkpoint_replay: cadences and what a checkpoint holds.
        recent_episodes: how many latest episode returns ``recent_return`` averages.
        run_name / progress: the progress bar's label, and whether it is shown.
    """

    total_env_steps: int
    num_envs: int
    replay_ratio: ReplayRatio
    learning_starts_env_steps: int
    eval_every_env_steps: int
    checkpoint_every_env_steps: int
    keep_checkpoints: int
    checkpoint_replay: bool
    run_name: str
    progress: bool
    warmup_burst_env_steps: int = 0
    recent_episodes: int = 20

    @classmethod
    def from_config(cls, cfg: Any, replay_ratio: ReplayRatio, learning_starts_env_steps: int,
                    **overrides: Any) -> LoopSchedule:
        """The schedule of a run config with the common fields (``total_env_steps``,
        ``num_envs``, ``eval_every_env_steps``, ``checkpoint_every_env_steps``,
        ``keep_checkpoints``, ``checkpoint_replay``, ``run_dir``, ``progress``);
        ``overrides``: ``warmup_burst_env_steps``, ``recent_episodes``."""
        return cls(
            total_env_steps=cfg.total_env_steps, num_envs=cfg.num_envs,
            replay_ratio=replay_ratio, learning_starts_env_steps=learning_starts_env_steps,
            eval_every_env_steps=cfg.eval_every_env_steps,
            checkpoint_every_env_steps=cfg.checkpoint_every_env_steps,
            keep_checkpoints=cfg.keep_checkpoints, checkpoint_replay=cfg.checkpoint_replay,
            run_name=Path(cfg.run_dir).name, progress=cfg.progress, **overrides)
