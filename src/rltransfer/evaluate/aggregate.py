"""Aggregate scores over seeds and tasks with stratified-bootstrap confidence intervals.

Follows Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the Statistical
Precipice" (NeurIPS), the method behind the ``rliable`` library:

* IQM: the interquartile mean, the 25% trimmed mean of all ``num_seeds * num_tasks`` scores
  pooled (``rliable.metrics.aggregate_iqm``, i.e. ``scipy.stats.trim_mean(x, 0.25)``).
* mean / median: the mean / median over tasks of the per-task mean over seeds
  (``rliable.metrics.aggregate_mean`` / ``aggregate_median``).
* CIs: stratified bootstrap (Efron & Tibshirani, 1993; Agarwal et al. 2021, Sec. 4): each
  replicate resamples the seeds with replacement independently within every task, the metric
  is recomputed, and the ``(1 - c) / 2`` and ``(1 + c) / 2`` percentiles of the replicates give
  the ``c`` confidence interval (the "percentile" method, rliable's default).

Why not call ``rliable.library.get_interval_estimates``: in this environment rliable 1.2's
``library`` module cannot be imported, because it imports ``arch.bootstrap`` and arch 7.2 fails
at import with pandas 3 (``deprecate_kwarg() missing ... 'new_arg_name'``). ``rliable.metrics``
(pure numpy/scipy) imports fine. The bootstrap is therefore done here, vectorized over
replicates, with the same resampling scheme and CI method; the point estimates are checked
against ``rliable.metrics`` in the tests.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

METRICS: tuple[str, ...] = ("iqm", "mean", "median")
"""Names of the aggregate metrics computed by :func:`aggregate_scores`, in report order."""

# Bound on the number of float64 elements of one block of bootstrap replicates (~128 MiB).
_MAX_BLOCK_ELEMENTS = 16_000_000


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

    Same definition as ``scipy.stats.trim_mean(x, 0.25)`` and ``rliable.metrics.aggregate_iqm``:
    with ``n`` values, ``k = floor(0.25 * n)`` values are dropped at each end after sorting and
    the remaining ``n - 2k`` are averaged. E.g. ``iqm([1, 2, 3, 4]) == 2.5``,
    ``iqm([1, ..., 8]) == mean([3, 4, 5, 6]) == 4.5``; for ``n < 4`` nothing is dropped.

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
    n = arr.shape[axis]
    if n == 0:
        raise AggregateInputError("iqm of an empty array is undefined; pass at least one score")
    cut = int(0.25 * n)
    part = np.partition(arr, (cut, n - cut - 1), axis=axis) if cut > 0 else arr
    middle = np.take(part, np.arange(cut, n - cut), axis=axis)
    out = middle.mean(axis=axis)
    return float(out) if out.ndim == 0 else out


# --- metrics over a batch of replicates: (reps, num_seeds, num_tasks) -> (reps,) -------------


def _batch_iqm(x: np.ndarray) -> np.ndarray:
    return np.asarray(iqm(x.reshape(x.shape[0], -1), axis=1))


def _batch_mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x.mean(axis=1).mean(axis=1))


def _batch_median(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.median(x.mean(axis=1), axis=1))


_BATCH_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": _batch_iqm,
    "mean": _batch_mean,
    "median": _batch_median,
}


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


def _strategy_rng(seed: int, name: str) -> np.random.Generator:
    # A stream per strategy that depends only on (seed, name): adding a strategy to the dict
    # does not change the CIs of the others.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _check_bootstrap_args(reps: int, confidence: float) -> None:
    if reps < 1:
        raise AggregateInputError(f"reps must be >= 1 bootstrap replicates; got {reps}")
    if not 0.0 < confidence < 1.0:
        raise AggregateInputError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")


def stratified_bootstrap(
    scores: np.ndarray,
    statistics: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    reps: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of statistics under stratified (per-task) resampling of seeds.

    Args:
        scores: float64 ``[num_seeds, num_tasks, ...]``; trailing axes ride along with the task.
        statistics: name -> function mapping a batch ``[r, num_seeds, num_tasks, ...]`` to
            ``[r, ...]`` (one value per replicate).
        reps: number of replicates.
        rng: random generator (consumed).

    Returns:
        name -> ``[reps, ...]`` array of replicate values.

    Source: Agarwal et al. (2021), Sec. 4 / ``rliable.library.StratifiedBootstrap``: the seeds
    of every task are resampled with replacement independently of the other tasks.
    """
    num_seeds = scores.shape[0]
    rest = scores.shape[1:]
    per_rep = max(1, scores.size)
    block = max(1, min(reps, _MAX_BLOCK_ELEMENTS // per_rep))
    # Open-grid indices for the non-seed axes, broadcast against the resampled seed index.
    grid = np.ix_(*[np.arange(n) for n in rest]) if rest else ()
    out: dict[str, list[np.ndarray]] = {k: [] for k in statistics}
    done = 0
    while done < reps:
        r = min(block, reps - done)
        seed_idx = rng.integers(0, num_seeds, size=(r, *scores.shape))
        sample = scores[(seed_idx, *[g[None, None] for g in grid])]
        for name, fn in statistics.items():
            out[name].append(np.asarray(fn(sample)))
        done += r
    return {k: np.concatenate(v, axis=0) for k, v in out.items()}


def _percentile_interval(
    replicates: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return low, high


def aggregate_scores(
    scores: Mapping[str, np.ndarray | Sequence[float]],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    metrics: Sequence[str] = METRICS,
) -> dict[str, dict[str, Estimate]]:
    """IQM, mean and median of each strategy's scores with stratified-bootstrap CIs.

    Args:
        scores: strategy -> float array ``[num_seeds, num_tasks]`` (a 1-D ``[num_seeds]`` array
            is one task). Scores are whatever the caller chose (raw returns, or human-normalized
            scores from :func:`rltransfer.evaluate.scores.human_normalized_score` when tasks
            differ in scale).
        reps: bootstrap replicates (rliable uses 50,000 in the paper; 2,000 is enough for
            reports; tests use fewer).
        seed: seed of the bootstrap; each strategy gets its own stream derived from
            ``(seed, name)``, so results are reproducible and independent of dict order.
        confidence: CI coverage, default 0.95 (percentile method).
        metrics: subset of :data:`METRICS`.

    Returns:
        strategy -> metric name (``"iqm"``, ``"mean"``, ``"median"``) -> :class:`Estimate`.
        With one seed every replicate equals the data, so ``low == point == high``.

    Raises:
        AggregateInputError (a ``ValueError``): NaN/inf scores, empty or >2-D arrays, unknown
            metric names, ``reps < 1`` or ``confidence`` outside (0, 1).

    Source: Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice".
    """
    _check_bootstrap_args(reps, confidence)
    unknown = [m for m in metrics if m not in _BATCH_METRICS]
    if unknown:
        raise AggregateInputError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    stats = {m: _BATCH_METRICS[m] for m in metrics}
    result: dict[str, dict[str, Estimate]] = {}
    for name, raw in scores.items():
        arr = _as_score_matrix(name, raw)
        reps_by_metric = stratified_bootstrap(arr, stats, reps, _strategy_rng(seed, name))
        per_metric: dict[str, Estimate] = {}
        for m, fn in stats.items():
            point = float(fn(arr[None])[0])
            low, high = _percentile_interval(reps_by_metric[m], confidence)
            per_metric[m] = Estimate(point=point, low=float(low), high=float(high))
        result[name] = per_metric
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
                f"evaluation points (e.g. with rltransfer.evaluate.report.eval_curve)"
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
    point the metric over seeds (``"iqm"`` or ``"mean"`` of the seeds' returns) and its
    bootstrap CI are computed; seeds are resampled with replacement independently at every
    grid point, as rliable's ``StratifiedBootstrap`` does for ``[runs, tasks, points]`` score
    arrays (sample-efficiency curves, Agarwal et al. 2021, Fig. 9).

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
            NaN/inf, runs without a common range, unknown ``metric``.
    """
    _check_bootstrap_args(reps, confidence)
    if metric not in ("iqm", "mean"):
        raise AggregateInputError(f"curve metric must be 'iqm' or 'mean'; got {metric!r}")
    if num_points < 1:
        raise AggregateInputError(f"num_points must be >= 1; got {num_points}")

    def seed_stat(batch: np.ndarray) -> np.ndarray:  # [r, num_seeds, P] -> [r, P]
        if metric == "iqm":
            return np.asarray(iqm(batch, axis=1))
        return np.asarray(batch.mean(axis=1))

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
        point = seed_stat(ys[None])[0]
        replicates = stratified_bootstrap(ys, {"s": seed_stat}, reps, _strategy_rng(seed, name))[
            "s"
        ]
        low, high = _percentile_interval(replicates, confidence)
        out[name] = CurveEstimate(grid, point, np.asarray(low), np.asarray(high))
    return out
