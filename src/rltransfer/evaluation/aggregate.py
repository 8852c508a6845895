"""Aggregate scores over seeds and tasks with stratified-bootstrap confidence intervals.

Follows Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS), using its ``rliable`` library:

* IQM: the interquartile mean, the 25% trimmed mean of all ``num_seeds * num_tasks`` scores
  pooled (``rliable.metrics.aggregate_iqm``, i.e. ``scipy.stats.trim_mean(x, 0.25)``).
* mean / median: the mean / median over tasks of the per-task mean over seeds
  (``rliable.metrics.aggregate_mean`` / ``aggregate_median``).
* CIs: ``rliable.library.get_interval_estimates`` (stratified bootstrap, Efron & Tibshirani
  1993; Agarwal et al. 2021, Sec. 4): each replicate resamples the seeds with replacement
  independently within every task, the metric is recomputed, and the ``(1 - c) / 2`` and
  ``(1 + c) / 2`` percentiles of the replicates give the ``c`` confidence interval
  ("percentile" method, rliable's default).

Randomness: rliable's ``StratifiedBootstrap`` draws its resampling indices from numpy's *global*
legacy RNG (``np.random.choice``); its ``random_state`` argument does not reach those draws. For
reproducible CIs each strategy is therefore bootstrapped with the global RNG seeded from
``(seed, strategy name)``, and the caller's global RNG state is restored afterwards. Not
thread-safe: do not run two aggregations in parallel threads of one process.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.stats
from rliable import library as rl_library
from rliable import metrics as rl_metrics

METRICS: tuple[str, ...] = ("iqm", "mean", "median")
"""Names of the aggregate metrics computed by :func:`aggregate_scores`, in report order."""

# metric name -> rliable aggregate over a [num_seeds, num_tasks] score matrix (a scalar)
_RLIABLE_METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "iqm": rl_metrics.aggregate_iqm,
    "mean": rl_metrics.aggregate_mean,
    "median": rl_metrics.aggregate_median,
}


class AggregateInputError(ValueError):
    """Raised for score arrays that cannot be aggregated (NaN/inf, empty, wrong shape)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval ``[low, high]`` (same units as the scores)."""

    point: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.point:.4g} [{self.low:.4g}, {self.high:.4g}]"


class CurveEstimate(NamedTuple):
    """An aggregate learning curve; unpacks as ``x, point, low, high`` (all 1-D, same length).

    ``x`` is the common grid (env steps, float64); ``point``/``low``/``high`` the aggregate return
    and its confidence band at each grid point (float64).
    """

    x: np.ndarray
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


def iqm(x: np.ndarray | Sequence[float], axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half of the values (25% trimmed mean).

    Computed by ``scipy.stats.trim_mean(x, 0.25, axis)``, the function behind
    ``rliable.metrics.aggregate_iqm``: with ``n`` values, ``k = floor(0.25 * n)`` values are
    dropped at each end after sorting and the remaining ``n - 2k`` are averaged. E.g.
    ``iqm([1, 2, 3, 4]) == 2.5``, ``iqm([1, ..., 8]) == mean([3, 4, 5, 6]) == 4.5``; for
    ``n < 4`` nothing is dropped.

    Args:
        x: scores, any shape, float.
        axis: axis to reduce; ``None`` (default) pools all values.

    Returns:
        A float when ``axis`` is ``None``, else a float64 array with ``axis`` removed.

    Raises:
        AggregateInputError: ``x`` is empty along the reduced axis or contains NaN/inf.
    """
    arr = np.asarray(x, dtype=np.float64)
    if axis is None:
        arr = arr.reshape(-1)
        axis = 0
    _check_finite(arr, "iqm input")
    if arr.shape[axis] == 0:
        raise AggregateInputError("iqm of an empty array is undefined; pass at least one score")
    out = np.asarray(scipy.stats.trim_mean(arr, 0.25, axis=axis), dtype=np.float64)
    return float(out) if out.ndim == 0 else out


def _check_finite(arr: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise AggregateInputError(
            f"{what} has {bad} NaN/inf value(s); drop or fix the failed runs before aggregating"
        )


def _as_score_matrix(name: str, scores: np.ndarray | Sequence[float]) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise AggregateInputError(
            f"scores for {name!r} must be a non-empty array [num_seeds, num_tasks] (or "
            f"[num_seeds] for one task); got shape {np.shape(scores)}"
        )
    _check_finite(arr, f"scores for {name!r}")
    return arr


def _check_bootstrap_args(reps: int, confidence: float, seed: int) -> None:
    if reps < 1:
        raise AggregateInputError(f"reps must be >= 1 bootstrap replicates; got {reps}")
    if not 0.0 < confidence < 1.0:
        raise AggregateInputError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    if not 0 <= seed < 2**32:
        raise AggregateInputError(f"seed must be in [0, 2**32); got {seed}")


@contextmanager
def _seeded_global_rng(seed: int, name: str) -> Iterator[None]:
    # rliable's StratifiedBootstrap resamples with np.random.choice (numpy's global RNG). Seed
    # it from (seed, name) so a strategy's CIs do not depend on the other strategies or on the
    # dict order, and give the caller back the global state it had. The legacy global API is
    # what rliable consumes, hence NPY002 is silenced here.
    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed([seed, zlib.crc32(name.encode("utf-8"))])  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def _interval_estimate(
    name: str,
    scores: np.ndarray,
    func: Callable[[np.ndarray], np.ndarray],
    reps: int,
    seed: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(point, low, high)`` of ``func`` (scores ``[num_seeds, ...]`` -> 1-D) via rliable."""
    with _seeded_global_rng(seed, name):
        points, intervals = rl_library.get_interval_estimates(
            {name: scores},
            func,
            method="percentile",
            reps=reps,
            confidence_interval_size=confidence,
        )
    point = np.asarray(points[name], dtype=np.float64)
    interval = np.asarray(intervals[name], dtype=np.float64)  # [2, k]: lower row, upper row
    return point, interval[0], interval[1]


def aggregate_scores(
    scores: Mapping[str, np.ndarray | Sequence[float]],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    metrics: Sequence[str] = METRICS,
) -> dict[str, dict[str, Estimate]]:
    """IQM, mean and median of each strategy's scores with stratified-bootstrap CIs.

    Point estimates are ``rliable.metrics.aggregate_iqm`` / ``aggregate_mean`` /
    ``aggregate_median`` of the score matrix; CIs come from
    ``rliable.library.get_interval_estimates`` (stratified bootstrap over seeds within each task,
    percentile method), all metrics of a strategy from the same replicates.

    Args:
        scores: strategy -> float array ``[num_seeds, num_tasks]`` (a 1-D ``[num_seeds]`` array
            is one task). Scores are whatever the caller chose (raw returns, or human-normalized
            scores from :func:`rltransfer.evaluation.scores.human_normalized_score` when tasks
            differ in scale).
        reps: bootstrap replicates (rliable uses 50,000 in the paper; 2,000 is enough for
            reports, about 1 s per strategy on one CPU core; tests use fewer).
        seed: seed of the bootstrap, in ``[0, 2**32)``; each strategy is resampled from numpy's
            global RNG seeded with ``(seed, name)`` (the caller's global RNG state is restored),
            so results are reproducible and independent of dict order and of other strategies.
        confidence: CI coverage, default 0.95 (percentile method).
        metrics: subset of :data:`METRICS`.

    Returns:
        strategy -> metric name (``"iqm"``, ``"mean"``, ``"median"``) -> :class:`Estimate`.
        With one seed every replicate equals the data, so ``low == point == high``.

    Raises:
        AggregateInputError (a ``ValueError``): NaN/inf scores, empty or >2-D arrays, unknown
            metric names, ``reps < 1``, ``confidence`` outside (0, 1) or ``seed`` out of range.

    Source: Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice".
    """
    _check_bootstrap_args(reps, confidence, seed)
    unknown = [m for m in metrics if m not in _RLIABLE_METRICS]
    if unknown:
        raise AggregateInputError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    names = list(metrics)
    fns = [_RLIABLE_METRICS[m] for m in names]

    def all_metrics(x: np.ndarray) -> np.ndarray:  # [num_seeds, num_tasks] -> [len(names)]
        return np.array([fn(x) for fn in fns], dtype=np.float64)

    result: dict[str, dict[str, Estimate]] = {}
    for name, raw in scores.items():
        arr = _as_score_matrix(name, raw)
        point, low, high = _interval_estimate(name, arr, all_metrics, reps, seed, confidence)
        result[name] = {
            m: Estimate(point=float(point[i]), low=float(low[i]), high=float(high[i]))
            for i, m in enumerate(names)
        }
    return result


def _common_grid(
    name: str, runs: Sequence[tuple[np.ndarray, np.ndarray]], num_points: int
) -> np.ndarray:
    starts, stops = [], []
    for i, (x, y) in enumerate(runs):
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise AggregateInputError(
                f"curve {i} of {name!r}: x and y must be non-empty 1-D arrays of equal length; "
                f"got shapes {x.shape} and {y.shape}"
            )
        if np.any(np.diff(x) < 0):
            raise AggregateInputError(
                f"curve {i} of {name!r}: x (env steps) must be non-decreasing; sort the "
                f"evaluation points (e.g. with rltransfer.evaluation.report.eval_curve)"
            )
        _check_finite(x, f"curve {i} of {name!r} (x)")
        _check_finite(y, f"curve {i} of {name!r} (y)")
        starts.append(x[0])
        stops.append(x[-1])
    lo, hi = max(starts), min(stops)
    if lo > hi:
        raise AggregateInputError(
            f"the curves of {name!r} share no common env-step range (latest start {lo}, "
            f"earliest end {hi}); aggregate only runs that cover the same steps"
        )
    return np.linspace(lo, hi, num_points) if hi > lo else np.array([lo], dtype=np.float64)


def curves(
    runs: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]],
    num_points: int = 100,
    metric: str = "iqm",
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    x_grid: np.ndarray | None = None,
) -> dict[str, CurveEstimate]:
    """Aggregate per-seed learning curves onto a common grid, with bootstrap CIs per point.

    Each run's curve is linearly interpolated (``np.interp``) onto the grid; at every grid
    point the metric over seeds (``"iqm"``: ``scipy.stats.trim_mean(., 0.25)`` as in
    ``rliable.metrics.aggregate_iqm``, or ``"mean"`` of the seeds' returns) and its CI are
    computed by ``rliable.library.get_interval_estimates`` on the ``[num_seeds, num_points]``
    matrix (grid points in the task axis). Seeds are thus resampled with replacement
    independently at every grid point, as rliable's ``StratifiedBootstrap`` also does for
    ``[runs, tasks, points]`` arrays (sample-efficiency curves, Agarwal et al. 2021, Fig. 9).

    Args:
        runs: strategy -> list over seeds of ``(x, y)``: ``x`` env steps (1-D, non-decreasing),
            ``y`` evaluation return at those steps (1-D, same length).
        num_points: grid size when ``x_grid`` is not given. The default grid spans the range
            covered by every run of the strategy (latest first point to earliest last point),
            so nothing is extrapolated.
        metric: ``"iqm"`` or ``"mean"`` over seeds.
        reps, seed, confidence: as in :func:`aggregate_scores`.
        x_grid: optional explicit grid (1-D, env steps); ``np.interp`` clamps outside a run.

    Returns:
        strategy -> :class:`CurveEstimate` ``(x, point, low, high)``, float64 1-D arrays.

    Raises:
        AggregateInputError (a ``ValueError``): no runs, mismatched/empty/unsorted arrays,
            NaN/inf, runs without a common range, unknown ``metric``, bad ``reps`` /
            ``seed`` / ``confidence``.
    """
    _check_bootstrap_args(reps, confidence, seed)
    if metric not in ("iqm", "mean"):
        raise AggregateInputError(f"curve metric must be 'iqm' or 'mean'; got {metric!r}")
    if num_points < 1:
        raise AggregateInputError(f"num_points must be >= 1; got {num_points}")

    def seed_stat(ys: np.ndarray) -> np.ndarray:  # [num_seeds, P] -> [P]
        if metric == "iqm":
            return np.asarray(scipy.stats.trim_mean(ys, 0.25, axis=0), dtype=np.float64)
        return np.asarray(ys.mean(axis=0), dtype=np.float64)

    out: dict[str, CurveEstimate] = {}
    for name, seed_runs in runs.items():
        if len(seed_runs) == 0:
            raise AggregateInputError(f"no runs given for {name!r}; pass at least one (x, y)")
        arrays = [
            (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in seed_runs
        ]
        grid = _common_grid(name, arrays, num_points)
        if x_grid is not None:
            grid = np.asarray(x_grid, dtype=np.float64).reshape(-1)
            _check_finite(grid, "x_grid")
        ys = np.stack([np.interp(grid, x, y) for x, y in arrays])  # [num_seeds, P]
        point, low, high = _interval_estimate(name, ys, seed_stat, reps, seed, confidence)
        out[name] = CurveEstimate(grid, point, low, high)
    return out


def probability_of_improvement(
    scores: Mapping[str, np.ndarray | Sequence[float]],
    baseline: str,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Estimate]:
    """Probability that each strategy improves on ``baseline``, with a bootstrap CI.

    ``P(X > Y)`` is ``rliable.metrics.probability_of_improvement``: per task, the Mann-Whitney
    U statistic of X's runs against Y's runs divided by ``n_X * n_Y`` (the probability that a
    random run of X scores above a random run of Y, ties counting one half), averaged over
    tasks. The CI is ``rliable.library.get_interval_estimates`` on the pair ``[X, Y]``
    (``StratifiedIndependentBootstrap``: the runs of X and of Y are resampled independently
    within each task), percentile method (Agarwal et al. 2021, Sec. 4 and Fig. 8).

    Args:
        scores: strategy -> float ``[num_seeds, num_tasks]`` (or ``[num_seeds]``); every
            strategy must have the baseline's number of tasks (seed counts may differ).
        baseline: the strategy every other one is compared with (e.g.
            ``"scratch_eps_greedy"``).
        reps, seed, confidence: as in :func:`aggregate_scores` (the bootstrap of pair ``X``
            draws from numpy's global RNG seeded with ``(seed, "X>baseline")``).

    Returns:
        strategy (every one but ``baseline``) -> :class:`Estimate` of ``P(strategy > baseline)``
        in ``[0, 1]``; 0.5 means no difference.

    Raises:
        AggregateInputError (a ``ValueError``): ``baseline`` missing, task counts that differ,
            NaN/inf or empty scores, bad ``reps`` / ``seed`` / ``confidence``.
    """
    _check_bootstrap_args(reps, confidence, seed)
    if baseline not in scores:
        raise AggregateInputError(
            f"baseline {baseline!r} has no scores; strategies given: {list(scores)}"
        )
    base = _as_score_matrix(baseline, scores[baseline])

    def poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # -> [1]
        return np.array([rl_metrics.probability_of_improvement(x, y)], dtype=np.float64)

    out: dict[str, Estimate] = {}
    for name, raw in scores.items():
        if name == baseline:
            continue
        arr = _as_score_matrix(name, raw)
        if arr.shape[1] != base.shape[1]:
            raise AggregateInputError(
                f"{name!r} has {arr.shape[1]} task(s) but the baseline {baseline!r} has "
                f"{base.shape[1]}; compare strategies on the same tasks"
            )
        key = f"{name}>{baseline}"
        with _seeded_global_rng(seed, key):
            points, intervals = rl_library.get_interval_estimates(
                {key: [arr, base]}, poi, method="percentile", reps=reps,
                confidence_interval_size=confidence,
            )
        interval = np.asarray(intervals[key], dtype=np.float64).reshape(2)
        out[name] = Estimate(
            point=float(np.asarray(points[key]).reshape(-1)[0]),
            low=float(interval[0]), high=float(interval[1]),
        )
    return out


def performance_profiles(
    scores: Mapping[str, np.ndarray | Sequence[float]],
    taus: np.ndarray | Sequence[float],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, CurveEstimate]:
    """Score distributions (performance profiles) with stratified-bootstrap bands.

    At each threshold ``tau`` the profile is the fraction of all ``(seed, task)`` runs whose
    score exceeds ``tau`` (``rliable.library.create_performance_profile`` with
    ``use_score_distribution=True``; Agarwal et al. 2021, Sec. 4, "performance profiles"),
    and its CI comes from the same stratified bootstrap as :func:`aggregate_scores`.

    Args:
        scores: strategy -> float ``[num_seeds, num_tasks]`` (or ``[num_seeds]``), normalised
            scores (the thresholds are in the same units).
        taus: thresholds, 1-D, non-empty, finite.
        reps, seed, confidence: as in :func:`aggregate_scores`.

    Returns:
        strategy -> :class:`CurveEstimate` ``(taus, fraction, low, high)``, float64 1-D arrays;
        fractions in ``[0, 1]``, non-increasing in ``tau``.

    Raises:
        AggregateInputError (a ``ValueError``): empty / non-finite ``taus`` or scores, bad
            ``reps`` / ``seed`` / ``confidence``.
    """
    _check_bootstrap_args(reps, confidence, seed)
    grid = np.asarray(taus, dtype=np.float64).reshape(-1)
    if grid.size == 0:
        raise AggregateInputError("taus must hold at least one threshold")
    _check_finite(grid, "taus")

    def fraction_above(x: np.ndarray) -> np.ndarray:  # [num_seeds, num_tasks] -> [len(taus)]
        return np.array([np.mean(x > t) for t in grid], dtype=np.float64)

    out: dict[str, CurveEstimate] = {}
    for name, raw in scores.items():
        arr = _as_score_matrix(name, raw)
        point, low, high = _interval_estimate(
            f"profile:{name}", arr, fraction_above, reps, seed, confidence
        )
        out[name] = CurveEstimate(grid, point, low, high)
    return out
