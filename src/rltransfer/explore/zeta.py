"""Truncated Zeta (discrete power-law) distribution for flight / repeat durations.

ez-greedy (Dabney et al., "Temporally-extended epsilon-greedy exploration", ICLR 2021) and
Behavior Transfer's flights (Campos et al. 2021, Sec. 3, Algorithm 1) draw the duration of a
temporally-extended exploratory option from a Zeta distribution with exponent ``mu = 2``::

    p(n) ∝ n^-mu,  n = 1, 2, ...

The Zeta distribution is heavy-tailed (for ``mu = 2`` its mean is infinite), so we truncate it
at ``max_length`` steps and **renormalise over 1..max_length**::

    p(n) = n^-mu / H(mu, max_length),   H(mu, max_length) = sum_{k=1}^{max_length} k^-mu.

Samples are exact draws from this truncated distribution: inverse CDF over a precomputed
(cached) table with :func:`numpy.searchsorted`. Episode ends cut flights shorter still (the
explorers reset their counters at episode start).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import numpy.typing as npt

LengthSampler = Callable[[np.random.Generator, int], np.ndarray]
"""``sampler(rng, count) -> int64[count]`` durations >= 1 (a test hook replacing Zeta)."""

__all__ = ["DEFAULT_MAX_LENGTH", "sample_zeta", "zeta_cdf_table", "zeta_pmf"]

DEFAULT_MAX_LENGTH = 10_000
"""Default truncation of flight / repeat durations, in env steps (REFERENCE.md, "open")."""


def _check(mu: float, max_length: int) -> None:
    if not np.isfinite(mu) or mu <= 0:
        raise ValueError(f"zeta exponent mu must be a positive finite number, got {mu!r}")
    if int(max_length) != max_length or max_length < 1:
        raise ValueError(f"zeta max_length must be an integer >= 1, got {max_length!r}")


@lru_cache(maxsize=16)
def zeta_cdf_table(mu: float = 2.0, max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """CDF of the truncated Zeta distribution: ``cdf[k] = P(N <= k + 1)``.

    Args:
        mu: exponent (> 0); 2.0 in ez-greedy and Behavior Transfer.
        max_length: truncation point (>= 1); the distribution is renormalised over
            ``1..max_length``.

    Returns:
        Read-only ``float64[max_length]``, non-decreasing, with ``cdf[-1] == 1.0`` exactly.
        The result is cached per ``(mu, max_length)``.

    Raises:
        ValueError: if ``mu <= 0`` or ``max_length < 1``.
    """
    _check(mu, max_length)
    weights = np.arange(1, int(max_length) + 1, dtype=np.float64) ** (-float(mu))
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    cdf.flags.writeable = False
    return cdf


def zeta_pmf(n: npt.ArrayLike, mu: float = 2.0, max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """Probability mass of the truncated Zeta distribution.

    ``p(n) = n^-mu / sum_{k=1}^{max_length} k^-mu`` for ``1 <= n <= max_length``, else 0.

    Args:
        n: integer(s), any shape.
        mu: exponent (> 0).
        max_length: truncation point (>= 1).

    Returns:
        ``float64`` array of the shape of ``n``.

    Raises:
        ValueError: if ``mu <= 0`` or ``max_length < 1``.
    """
    _check(mu, max_length)
    n_arr = np.asarray(n, dtype=np.float64)
    normaliser = np.sum(np.arange(1, int(max_length) + 1, dtype=np.float64) ** (-float(mu)))
    inside = (n_arr >= 1) & (n_arr <= max_length)
    safe = np.where(inside, n_arr, 1.0)
    return np.where(inside, safe ** (-float(mu)) / normaliser, 0.0)


def sample_zeta(
    rng: np.random.Generator,
    size: int | tuple[int, ...],
    mu: float = 2.0,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Draw durations ``n >= 1`` with ``p(n) ∝ n^-mu``, truncated to ``n <= max_length``.

    Exact inverse-CDF sampling over :func:`zeta_cdf_table` (vectorised, one uniform per draw).

    Args:
        rng: numpy random generator.
        size: output shape.
        mu: exponent (> 0); 2.0 in ez-greedy (Dabney et al. 2021) and BT (Campos et al. 2021).
        max_length: truncation point in steps (>= 1), renormalised as documented above.

    Returns:
        ``int64`` array of shape ``size`` with values in ``[1, max_length]``.

    Raises:
        ValueError: if ``mu <= 0`` or ``max_length < 1``.
    """
    _check(mu, max_length)
    cdf = zeta_cdf_table(float(mu), int(max_length))
    u = rng.random(size)
    index = np.searchsorted(cdf, u, side="right")
    # u < 1 and cdf[-1] == 1, so index <= max_length - 1; the clip guards rounding only.
    return np.minimum(index, cdf.shape[0] - 1).astype(np.int64) + 1


def sample_durations(
    rng: np.random.Generator,
    count: int,
    mu: float,
    max_length: int,
    sampler: LengthSampler | None = None,
) -> np.ndarray:
    """``count`` option durations: Zeta(mu) truncated at ``max_length``, or ``sampler``'s.

    The one place ez-greedy repeats and Behavior Transfer flights draw their lengths;
    ``sampler(rng, count) -> int64[count]`` replaces the Zeta draw (tests use it).

    Raises:
        ValueError: ``sampler`` returned a wrong shape or a duration < 1.
    """
    if sampler is None:
        return sample_zeta(rng, count, mu, max_length)
    lengths = np.asarray(sampler(rng, count), dtype=np.int64)
    if lengths.shape != (count,) or (count and lengths.min() < 1):
        raise ValueError("length_sampler must return int64[count] durations >= 1")
    return lengths
