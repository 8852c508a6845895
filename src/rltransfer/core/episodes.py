"""Per-env episode bookkeeping of a vector env with gymnasium's ``NEXT_STEP`` autoreset
(:class:`EpisodeTracker`), used by the trainers that step their envs in this process (SAC,
EfficientZero self-play).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpisodeTracker"]


class EpisodeTracker:
    """Per-env episode returns and lengths of a gymnasium vector env with NEXT_STEP autoreset
    (the step after an episode ends is a reset step, counted in no episode).

    Attributes:
        first: ``bool[B]``, True where the observation being acted on starts an episode.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = int(num_envs)
        self.reset()

    def reset(self) -> None:
        """Every env starts a new episode (after ``envs.reset``)."""
        b = self.num_envs
        self.first = np.ones(b, dtype=bool)
        self._autoreset = np.zeros(b, dtype=bool)
        self._returns = np.zeros(b)
        self._lengths = np.zeros(b, dtype=np.int64)

    def record(self, reward: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one vector step's ``float64[B]`` rewards and end flags.

        Returns:
            ``(returns float64[E], lengths int64[E])`` of the ``E`` episodes that ended at
            this step, in env order.
        """
        valid = ~self._autoreset
        self._returns += np.where(valid, reward, 0.0)
        self._lengths += valid
        ends = np.asarray(terminated) | np.asarray(truncated)
        done = ends & valid
        ended = np.flatnonzero(done)
        out = self._returns[ended], self._lengths[ended]
        self._returns[done] = 0.0
        self._lengths[done] = 0
        self.first = self._autoreset
        self._autoreset = ends
        return out
