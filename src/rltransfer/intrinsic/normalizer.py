"""Running mean / variance with the parallel (batched Welford) update.

Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
sample variances": merging statistics ``(mean_a, var_a, n_a)`` and ``(mean_b, var_b, n_b)``::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = var_a * n_a + var_b * n_b + delta^2 * n_a * n_b / n
    var   = M2 / n                                   (population variance)

RND (Burda et al. 2019) uses it for observation normalisation (per pixel) and for the scale
of intrinsic returns. Following their reference code the statistics may start from a tiny
pseudo-count (``initial_count``) with mean 0 and variance 1, which keeps ``std`` > 0 before
data arrives; ``initial_count = 0`` gives the exact statistics of the data seen.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RunningMeanStd"]


class RunningMeanStd:
    """Element-wise running mean and (population) variance over a leading batch axis.

    Args:
        shape: shape of one sample (``()`` for scalars, ``(C, H, W)`` for per-pixel stats).
        initial_count: pseudo-count of the prior ``mean = 0, var = 1`` (``>= 0``).

    Attributes:
        mean: ``float64[shape]``.
        var: ``float64[shape]``.
        count: float, number of samples seen plus ``initial_count``.
    """

    def __init__(self, shape: tuple[int, ...] = (), initial_count: float = 1e-4) -> None:
        if initial_count < 0:
            raise ValueError(f"initial_count must be >= 0, got {initial_count}")
        self.shape = tuple(int(s) for s in shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)
        self.count = float(initial_count)

    @property
    def std(self) -> np.ndarray:
        """``sqrt(var)``, ``float64[shape]``."""
        return np.sqrt(self.var)

    def update(self, batch: np.ndarray) -> None:
        """Add a batch of samples ``[N, *shape]`` (any real dtype). Empty batches are ignored.

        Raises:
            ValueError: if the trailing shape is not ``shape``.
        """
        x = np.asarray(batch, dtype=np.float64)
        if x.shape[1:] != self.shape:
            raise ValueError(
                f"batch has sample shape {x.shape[1:]}, this normaliser expects {self.shape}"
            )
        if x.shape[0] == 0:
            return
        self.update_from_moments(x.mean(axis=0), x.var(axis=0), x.shape[0])

    def update_from_moments(
        self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: float
    ) -> None:
        """Merge another set of statistics (population variance) into this one."""
        if batch_count <= 0:
            return
        total = self.count + batch_count
        delta = np.asarray(batch_mean, dtype=np.float64) - self.mean
        m2 = (
            self.var * self.count
            + np.asarray(batch_var, dtype=np.float64) * batch_count
            + delta**2 * (self.count * batch_count / total)
        )
        self.mean = np.asarray(self.mean + delta * (batch_count / total), dtype=np.float64)
        self.var = np.asarray(m2 / total, dtype=np.float64)
        self.count = total

    def merge(self, other: RunningMeanStd) -> None:
        """Merge another normaliser's statistics (e.g. from another worker) into this one."""
        self.update_from_moments(other.mean, other.var, other.count)

    def state_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """``{prefix + "mean"|"var"|"count": float64 tensor}`` for checkpoints."""
        return {
            f"{prefix}mean": torch.from_numpy(self.mean.copy()),
            f"{prefix}var": torch.from_numpy(self.var.copy()),
            f"{prefix}count": torch.tensor(self.count, dtype=torch.float64),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Restore from :meth:`state_tensors`.

        Raises:
            KeyError: if a key is missing. ValueError: on a shape mismatch.
        """
        mean = tensors[f"{prefix}mean"].detach().cpu().numpy().astype(np.float64)
        var = tensors[f"{prefix}var"].detach().cpu().numpy().astype(np.float64)
        if mean.shape != self.shape or var.shape != self.shape:
            raise ValueError(
                f"normaliser state has shape {mean.shape}, this normaliser expects {self.shape}"
            )
        self.mean = mean
        self.var = var
        self.count = float(tensors[f"{prefix}count"].item())
