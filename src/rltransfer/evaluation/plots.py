"""Figures for reports: learning curves with confidence bands and interval-estimate charts.

Uses matplotlib's object API with the Agg canvas directly (no pyplot, no global backend
switch, no display needed), so it is safe in headless runs and in threads. The interval chart
follows the layout of rliable's ``plot_interval_estimates`` (Agarwal et al., 2021, Fig. 1):
one panel per metric, one horizontal bar per strategy spanning its CI, a tick at the point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rltransfer.evaluation.aggregate import METRICS, Estimate

_METRIC_LABELS = {"iqm": "IQM", "mean": "Mean", "median": "Median"}


def _colors(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(names) <= 10 else colormaps["tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    title: str,
    xlabel: str = "env steps",
    ylabel: str = "return",
    reference_lines: Mapping[str, float] | None = None,
    dpi: int = 120,
) -> Path:
    """Plot one line per strategy with its confidence band shaded; save a PNG.

    Args:
        curves: strategy -> ``(x, point, low, high)``, 1-D arrays of equal length (e.g. the
            :class:`~rltransfer.evaluation.aggregate.CurveEstimate` values of
            :func:`~rltransfer.evaluation.aggregate.curves`); ``x`` in env steps.
        path: output PNG file (parent folders are created).
        title, xlabel, ylabel: axis texts.
        reference_lines: optional label -> y value drawn as dashed horizontal lines (e.g. the
            zero-shot return of the pretrained policy).
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        ValueError: no curves, or arrays of a curve with different shapes.
    """
    if not curves:
        raise ValueError("plot_learning_curves needs at least one curve")
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = _colors(list(curves))
    for name, (x, point, low, high) in curves.items():
        xs, ps, ls, hs = (np.asarray(a, dtype=np.float64) for a in (x, point, low, high))
        if not (xs.shape == ps.shape == ls.shape == hs.shape) or xs.ndim != 1:
            raise ValueError(
                f"curve {name!r}: x, point, low, high must be 1-D of equal length; got "
                f"{xs.shape}, {ps.shape}, {ls.shape}, {hs.shape}"
            )
        color = colors[name]
        marker = "o" if xs.size <= 1 else None
        ax.plot(xs, ps, color=color, linewidth=2.0, label=name, marker=marker)
        ax.fill_between(xs, ls, hs, color=color, alpha=0.2, linewidth=0)
    if reference_lines:
        for i, (label, value) in enumerate(reference_lines.items()):
            ax.axhline(
                float(value),
                color="0.3",
                linestyle=("--", ":", "-.")[i % 3],
                linewidth=1.2,
                label=label,
            )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.legend(loc="best", frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_interval_estimates(
    estimates: Mapping[str, Mapping[str, Estimate]],
    path: str | Path,
    metrics: Sequence[str] | None = None,
    xlabel: str = "score",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Horizontal interval chart: one panel per metric, one bar (the CI) per strategy.

    Args:
        estimates: strategy -> metric -> :class:`~rltransfer.evaluation.aggregate.Estimate`, the
            output of :func:`~rltransfer.evaluation.aggregate.aggregate_scores`.
        path: output PNG file (parent folders are created).
        metrics: which metrics to draw (default: those of :data:`METRICS` present for every
            strategy, in that order).
        xlabel: label under every panel (the score's unit, e.g. "return" or "HNS").
        title: optional figure title.
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        ValueError: no estimates, or a requested metric missing for some strategy.
    """
    if not estimates:
        raise ValueError("plot_interval_estimates needs at least one strategy")
    names = list(estimates)
    if metrics is None:
        metrics = [m for m in METRICS if all(m in estimates[n] for n in names)]
        if not metrics:
            metrics = list(next(iter(estimates.values())))
    missing = [(n, m) for n in names for m in metrics if m not in estimates[n]]
    if missing:
        raise ValueError(f"missing estimates (strategy, metric): {missing}")
    colors = _colors(names)
    height = 0.6 + 0.45 * len(names)
    fig = Figure(figsize=(3.2 * len(metrics) + 1.5, height + 0.9))
    axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
    ys = np.arange(len(names))[::-1]  # first strategy on top
    for ax, metric in zip(axes, metrics, strict=True):
        for y, name in zip(ys, names, strict=True):
            est = estimates[name][metric]
            width = est.high - est.low
            ax.barh(
                y,
                width if width > 0 else 0.0,
                left=est.low,
                height=0.6,
                color=colors[name],
                alpha=0.75,
            )
            ax.vlines(est.point, y - 0.3, y + 0.3, color="k", linewidth=2.0)
        ax.set_title(_METRIC_LABELS.get(metric, metric))
        ax.set_xlabel(xlabel)
        ax.set_yticks(ys)
        ax.set_yticklabels(names if ax is axes[0] else [])
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_probability_of_improvement(
    poi: Mapping[str, Estimate],
    baseline: str,
    path: str | Path,
    dpi: int = 120,
) -> Path:
    """Probability of improvement over ``baseline``: one bar (the CI) per strategy, a tick at
    the point, a dashed line at 0.5 (no difference); the layout of rliable's
    ``plot_probability_of_improvement`` (Agarwal et al. 2021, Fig. 8).

    Args:
        poi: strategy -> :class:`~rltransfer.evaluation.aggregate.Estimate` of
            ``P(strategy > baseline)`` (from
            :func:`~rltransfer.evaluation.aggregate.probability_of_improvement`).
        baseline: the baseline's name (axis label).
        path: output PNG file (parent folders are created).
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        ValueError: ``poi`` is empty.
    """
    if not poi:
        raise ValueError("plot_probability_of_improvement needs at least one strategy")
    names = list(poi)
    colors = _colors(names)
    fig = Figure(figsize=(6.0, 0.9 + 0.45 * len(names)))
    ax = fig.add_subplot(1, 1, 1)
    ys = np.arange(len(names))[::-1]
    for y, name in zip(ys, names, strict=True):
        est = poi[name]
        ax.barh(y, max(est.high - est.low, 0.0), left=est.low, height=0.6,
                color=colors[name], alpha=0.75)
        ax.vlines(est.point, y - 0.3, y + 0.3, color="k", linewidth=2.0)
    ax.axvline(0.5, color="0.3", linestyle="--", linewidth=1.0)
    ax.set_xlim(0.0, 1.0)
    ax.set_yticks(ys)
    ax.set_yticklabels(names)
    ax.set_xlabel(f"P(X > {baseline})")
    ax.grid(True, axis="x", alpha=0.3)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_performance_profiles(
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    xlabel: str = "normalised score (tau)",
    dpi: int = 120,
) -> Path:
    """Performance profiles: the fraction of runs scoring above ``tau`` against ``tau``, one
    line per strategy with its CI band (Agarwal et al. 2021, Fig. 5).

    Args:
        profiles: strategy -> ``(taus, fraction, low, high)`` 1-D arrays (from
            :func:`~rltransfer.evaluation.aggregate.performance_profiles`).
        path: output PNG file (parent folders are created).
        xlabel: the thresholds' unit.
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        ValueError: no profiles, or arrays of one profile with different shapes.
    """
    return plot_learning_curves(profiles, path, title="Performance profiles", xlabel=xlabel,
                                ylabel="fraction of runs with score > tau", dpi=dpi)
