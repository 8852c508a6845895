"""Read run directories and write a markdown report with aggregate scores and figures.

Run-directory layout (``rltransfer.core``): ``<run_dir>/metrics.jsonl`` holds one JSON object
per line with a ``kind`` (``"train"``, ``"eval"``, ``"episode"``) and ``env_steps``; evaluation
lines carry ``return_mean`` (and the per-episode ``returns``); ``<run_dir>/config.json`` holds the
run's configuration. A run killed mid-write can leave a truncated last line; readers skip it.

Typical use by an experiment runner::

    finals, learning = collect_runs({"scratch": dirs_a, "bt": dirs_b})
    write_report(out / "report.md", "Ms Pac-Man, hard task", finals,
                 learning_curves=learning, zero_shot={"pretrained policy": zs_returns})

The report states IQM, mean and median with stratified-bootstrap CIs (Agarwal et al., 2021)
over seeds, the per-seed numbers, and embeds a learning-curve and an interval figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.errors import UserError
from rltransfer.evaluation.aggregate import (
    METRICS,
    AggregateInputError,
    Estimate,
    aggregate_scores,
    curves,
    performance_profiles,
    probability_of_improvement,
)
from rltransfer.evaluation.plots import (
    plot_interval_estimates,
    plot_learning_curves,
    plot_performance_profiles,
    plot_probability_of_improvement,
)
from rltransfer.evaluation.verdict import compare_with_baseline

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"

_METRIC_HEADERS = {"iqm": "IQM", "mean": "mean", "median": "median"}


class MetricsFileError(UserError):
    """Raised for a metrics file that cannot be read as JSON lines (other than a cut last line)."""


# --- reading runs ---------------------------------------------------------------------------


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``<run_dir>/metrics.jsonl``, in file order.

    Blank lines are ignored. An undecodable *last* line is skipped: it is what a run killed
    mid-write leaves behind.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` in ``run_dir``.
        MetricsFileError (a ``ValueError``): an undecodable line before the last one, or a line
            that is not a JSON object (the file is corrupt; the message names the line).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; pass a training run directory (it holds {METRICS_FILE})"
        )
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records: list[dict[str, Any]] = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if k == len(numbered) - 1:
                break  # truncated last line of a killed run
            raise MetricsFileError(
                f"{path}:{lineno} is not valid JSON ({err.msg}); the file is corrupt before its "
                f"last line (was a killed run resumed without MetricsLogger.truncate_after?)"
            ) from None
        if not isinstance(record, dict):
            raise MetricsFileError(f"{path}:{lineno} is not a JSON object: {line[:80]!r}")
        records.append(record)
    return records


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json`` as a dict.

    Raises:
        FileNotFoundError: no ``config.json`` in ``run_dir``.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a run directory with {CONFIG_FILE}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def eval_curve(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation learning curve of one run.

    Reads the ``"kind": "eval"`` records of ``metrics.jsonl``; the return of a record is its
    ``return_mean`` (or the mean of ``returns`` when ``return_mean`` is absent). Points are
    sorted by env steps; if an env-step count appears twice (a resumed run re-evaluated it),
    the later record wins.

    Returns:
        ``(env_steps, return_mean)``: int64 ``[num_evals]`` and float64 ``[num_evals]``; both
        empty if the run has no evaluation yet.

    Raises:
        FileNotFoundError / MetricsFileError: see :func:`read_metrics`.
        MetricsFileError: an eval record without ``env_steps`` or without a return.
    """
    by_step: dict[int, float] = {}
    for rec in read_metrics(run_dir):
        if rec.get("kind") != "eval":
            continue
        if "env_steps" not in rec:
            raise MetricsFileError(f"eval record without env_steps in {run_dir}: {rec}")
        if rec.get("return_mean") is not None:
            value = float(rec["return_mean"])
        elif rec.get("returns"):
            value = float(np.mean(np.asarray(rec["returns"], dtype=np.float64)))
        else:
            raise MetricsFileError(
                f"eval record without return_mean or returns in {run_dir}: {rec}"
            )
        by_step[int(rec["env_steps"])] = value
    steps = np.array(sorted(by_step), dtype=np.int64)
    returns = np.array([by_step[int(s)] for s in steps], dtype=np.float64)
    return steps, returns


def final_return(run_dir: str | Path, last_k_evals: int = 1) -> float:
    """The run's final score: the mean ``return_mean`` of its last ``last_k_evals`` evaluations.

    Raises:
        ValueError: the run has no evaluation record, or ``last_k_evals < 1``.
    """
    if last_k_evals < 1:
        raise ValueError(f"last_k_evals must be >= 1; got {last_k_evals}")
    _, returns = eval_curve(run_dir)
    if returns.size == 0:
        raise ValueError(
            f"run {run_dir} has no eval records in {METRICS_FILE}; it has not been evaluated yet"
        )
    return float(returns[-last_k_evals:].mean())


def collect_runs(
    run_dirs: Mapping[str, Sequence[str | Path]], last_k_evals: int = 1
) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Final returns and learning curves of every strategy's runs (one run per seed).

    Args:
        run_dirs: strategy -> run directories (one per seed).
        last_k_evals: see :func:`final_return`.

    Returns:
        ``(final_returns, learning_curves)``: strategy -> float64 ``[num_seeds]``, and
        strategy -> list over seeds of ``(env_steps, return_mean)`` (see :func:`eval_curve`);
        both ready for :func:`write_report`.

    Raises:
        ValueError: a strategy with no run directories, or a run without evaluations.
    """
    finals: dict[str, np.ndarray] = {}
    learning: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, dirs in run_dirs.items():
        if len(dirs) == 0:
            raise ValueError(f"no run directories for strategy {name!r}")
        finals[name] = np.array([final_return(d, last_k_evals) for d in dirs], dtype=np.float64)
        learning[name] = [eval_curve(d) for d in dirs]
    return finals, learning


# --- writing the report ---------------------------------------------------------------------


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _fmt_estimate(est: Estimate) -> str:
    return f"{_fmt(est.point)} [{_fmt(est.low)}, {_fmt(est.high)}]"


def _estimate_table(
    estimates: Mapping[str, Mapping[str, Estimate]],
    counts: Mapping[str, int],
    count_header: str,
    confidence: float,
) -> list[str]:
    pct = f"{100 * confidence:g}%"
    header = ["strategy", count_header] + [f"{_METRIC_HEADERS[m]} [{pct} CI]" for m in METRICS]
    rows = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, est in estimates.items():
        cells = [name, str(counts[name])] + [_fmt_estimate(est[m]) for m in METRICS]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _raw_table(
    scores: Mapping[str, np.ndarray],
    task_names: Sequence[str] | None,
    seed_labels: Mapping[str, Sequence[str]] | None,
) -> list[str]:
    rows = ["| strategy | task | per-seed values |", "|---|---|---|"]
    for name, arr in scores.items():
        labels = list(seed_labels[name]) if seed_labels and name in seed_labels else None
        for t in range(arr.shape[1]):
            task = task_names[t] if task_names is not None else str(t)
            vals = [_fmt(float(v)) for v in arr[:, t]]
            if labels is not None and len(labels) == len(vals):
                vals = [f"{lab}: {v}" for lab, v in zip(labels, vals, strict=True)]
            rows.append(f"| {name} | {task} | {', '.join(vals)} |")
    return rows


def _as_matrix(name: str, values: np.ndarray | Sequence[float] | float) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise AggregateInputError(
            f"scores for {name!r} must be [num_seeds] or [num_seeds, num_tasks], non-empty; "
            f"got shape {arr.shape}"
        )
    return arr


def _comparison_sections(
    out: Path,
    scores: Mapping[str, np.ndarray],
    poi: Mapping[str, Estimate],
    baseline: str,
    score_label: str,
    reps: int,
    seed: int,
    confidence: float,
) -> list[str]:
    pct = f"{100 * confidence:g}%"
    poi_png = plot_probability_of_improvement(poi, baseline, out.with_name(f"{out.stem}_poi.png"))
    lines = [
        f"## Probability of improvement over {baseline}",
        "",
        f"| strategy | P(X > {baseline}) [{pct} CI] |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {_fmt_estimate(est)} |" for name, est in poi.items()]
    lines += [
        "",
        "P(X > Y): the probability that a run of X on a task scores above a run of Y on the "
        "same task (ties count one half), averaged over tasks (Mann-Whitney U / (n_X n_Y); "
        f"Agarwal et al. 2021); 0.5 is no difference. CIs: {reps} stratified independent "
        "bootstrap resamples of both strategies' seeds.",
        "",
        f"![probability of improvement]({poi_png.name})",
        "",
    ]
    pooled = np.concatenate([a.reshape(-1) for a in scores.values()])
    top = max(1.0, float(pooled.max()))
    low = min(0.0, float(pooled.min()))
    profiles = performance_profiles(scores, np.linspace(low, top, 41), reps=reps, seed=seed,
                                    confidence=confidence)
    prof_png = plot_performance_profiles(profiles, out.with_name(f"{out.stem}_profiles.png"),
                                         xlabel=f"{score_label} (tau)")
    lines += [
        "## Performance profiles",
        "",
        f"![performance profiles]({prof_png.name})",
        "",
        f"Fraction of all (task, seed) runs whose {score_label} exceeds tau; shaded: {pct} "
        "stratified-bootstrap CI (Agarwal et al. 2021). A curve above another at every tau "
        "dominates it stochastically.",
        "",
    ]
    return lines


def write_report(
    path: str | Path,
    title: str,
    final_scores: Mapping[str, np.ndarray | Sequence[float]],
    *,
    learning_curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]] | None = None,
    zero_shot: Mapping[str, np.ndarray | Sequence[float] | float] | None = None,
    task_names: Sequence[str] | None = None,
    seed_labels: Mapping[str, Sequence[str]] | None = None,
    score_label: str = "return",
    description: str | None = None,
    extra_sections: Mapping[str, str] | None = None,
    curve_metric: str = "iqm",
    baseline: str | None = None,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Path:
    """Write a markdown report comparing strategies, with figures beside it.

    Files written: ``path`` (markdown), ``<stem>_intervals.png`` and, when ``learning_curves``
    is given, ``<stem>_curves.png`` in the same folder (linked relatively from the markdown).
    With ``baseline`` (one of the strategies, every strategy on the same tasks) the report
    opens with the verdict of :func:`~rltransfer.evaluation.verdict.compare_with_baseline`
    and adds the probability of improvement over the baseline (``<stem>_poi.png``) and
    performance profiles (``<stem>_profiles.png``).

    Args:
        path: the markdown file to write (e.g. ``.../report.md``); parent folders are created.
        title: the report's heading.
        final_scores: strategy -> final score per seed, float ``[num_seeds]`` or
            ``[num_seeds, num_tasks]`` (e.g. from :func:`collect_runs`; human-normalized when
            tasks differ in scale). Strategies may have different seed counts.
        learning_curves: strategy -> list over seeds of ``(env_steps, return)`` 1-D arrays.
        zero_shot: policy name -> scores of a pretrained policy run without training on the
            task (per seed or per episode, ``[n]``, or one float); reported in their own table
            and drawn as dashed reference lines (at the mean) on the learning curves.
        task_names: names of the task columns of 2-D scores.
        seed_labels: strategy -> a label per seed (e.g. run directory names) for the raw table.
        score_label: unit of the scores in tables and axes ("return", "HNS", ...).
        description: optional paragraph under the title (setup, env, budget).
        extra_sections: optional heading -> markdown body appended at the end.
        curve_metric: ``"iqm"`` or ``"mean"`` over seeds for the learning curves.
        baseline: the strategy the verdict compares every other one with (e.g.
            ``"scratch_eps_greedy"``); ``None`` or absent from ``final_scores``: no verdict.
        reps, seed, confidence: bootstrap settings, see
            :func:`~rltransfer.evaluation.aggregate.aggregate_scores`.

    Returns:
        The markdown path.

    Raises:
        AggregateInputError (a ``ValueError``): empty ``final_scores``, NaN/inf, bad shapes, or
            ``task_names`` whose length differs from the number of tasks.
    """
    if not final_scores:
        raise AggregateInputError("write_report needs final scores for at least one strategy")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores = {name: _as_matrix(name, v) for name, v in final_scores.items()}
    num_tasks = {a.shape[1] for a in scores.values()}
    if task_names is not None and num_tasks != {len(task_names)}:
        raise AggregateInputError(
            f"task_names has {len(task_names)} names but the scores have {sorted(num_tasks)} "
            f"task column(s)"
        )
    estimates = aggregate_scores(scores, reps=reps, seed=seed, confidence=confidence)
    seeds = {name: a.shape[0] for name, a in scores.items()}
    pct = f"{100 * confidence:g}%"

    lines = [f"# {title}", ""]
    compare = baseline is not None and baseline in scores and len(scores) > 1
    compare = compare and len(num_tasks) == 1
    poi: dict[str, Estimate] = {}
    if compare and baseline is not None:
        poi = probability_of_improvement(scores, baseline, reps=reps, seed=seed,
                                         confidence=confidence)
        verdict = compare_with_baseline(scores, baseline, estimates=estimates, poi=poi,
                                        confidence=confidence, score_label=score_label)
        lines += [verdict.markdown(), ""]
    if description:
        lines += [description.strip(), ""]

    lines += ["## Final scores", ""]
    lines += _estimate_table(estimates, seeds, "seeds", confidence)
    lines += [
        "",
        f"Scores are the final {score_label} of each run. Each cell is the point estimate with "
        f"its {pct} stratified-bootstrap confidence interval ({reps} resamples of the seeds, "
        f"Agarwal et al., 2021). IQM is the mean of the middle 50% of all runs, robust to "
        f"outlier seeds.",
        "",
    ]
    if num_tasks == {1}:
        lines += [
            "With a single task, rliable's median (the median over tasks of each task's mean "
            "over seeds) equals the mean.",
            "",
        ]
    lines += [
        f"**How to read this:** a difference between two strategies is supported only when "
        f"their {pct} CIs do not overlap; overlapping CIs mean the data (at this number of seeds) "
        f"do not separate them. With 1 seed the CI collapses to the point and says nothing.",
        "",
    ]

    intervals_png = out.with_name(f"{out.stem}_intervals.png")
    plot_interval_estimates(estimates, intervals_png, xlabel=score_label)
    lines += [f"![interval estimates]({intervals_png.name})", ""]

    if compare and baseline is not None:
        lines += _comparison_sections(out, scores, poi, baseline, score_label, reps, seed,
                                      confidence)

    if learning_curves:
        curve_est = curves(
            learning_curves, metric=curve_metric, reps=reps, seed=seed, confidence=confidence
        )
        refs = None
        if zero_shot:
            refs = {
                f"{name} (zero-shot)": float(np.mean(np.asarray(v, dtype=np.float64)))
                for name, v in zero_shot.items()
            }
        curves_png = out.with_name(f"{out.stem}_curves.png")
        plot_learning_curves(
            curve_est, curves_png, title=title, ylabel=score_label, reference_lines=refs
        )
        metric_name = _METRIC_HEADERS.get(curve_metric, curve_metric)
        lines += [
            "## Learning curves",
            "",
            f"![learning curves]({curves_png.name})",
            "",
            f"{metric_name} over seeds of the evaluation {score_label}, each run linearly "
            f"interpolated onto a common env-step grid; shaded: {pct} bootstrap CI.",
            "",
        ]

    if zero_shot:
        zs = {name: _as_matrix(name, v) for name, v in zero_shot.items()}
        zs_est = aggregate_scores(zs, reps=reps, seed=seed, confidence=confidence)
        lines += [
            "## Zero-shot (pretrained policy, no training on the task)",
            "",
        ]
        lines += _estimate_table(zs_est, {n: a.shape[0] for n, a in zs.items()}, "n", confidence)
        lines += [
            "",
            "Per-value data: "
            + "; ".join(
                f"{n}: {', '.join(_fmt(float(v)) for v in a.reshape(-1))}" for n, a in zs.items()
            ),
            "",
        ]

    lines += ["## Per-seed raw numbers", ""]
    lines += _raw_table(scores, task_names, seed_labels)
    lines += [""]

    if extra_sections:
        for heading, body in extra_sections.items():
            lines += [f"## {heading}", "", body.strip(), ""]

    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(out)
    return out
