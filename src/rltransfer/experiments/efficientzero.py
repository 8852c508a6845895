"""Run an EfficientZero experiment (:class:`~rltransfer.recipes.efficientzero.EZExperiment`):
``num_seeds`` runs of one config, then a report.

Layout of an experiment directory::

    <out>/runs/seed_<k>/   one EfficientZero run each (seed ``train.seed + k``)
    <out>/report.md, *.png the final returns (IQM / mean / median, 95% CIs) and curves

Every run is resumable: finished runs are skipped, interrupted ones resume from their last
checkpoint, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.recipes.efficientzero import EZExperiment
from rltransfer.runtime.pool import run_jobs
from rltransfer.train_efficientzero import EZTrainConfig

console = Console(stderr=True)


def seed_config(exp: EZExperiment, seed: int, out: Path) -> EZTrainConfig:
    """The config of run ``seed`` (``0 .. num_seeds - 1``): seed ``exp.train.seed + seed``,
    run directory ``<out>/runs/seed_<seed>``."""
    return dataclasses.replace(exp.train, seed=exp.train.seed + seed,
                               run_dir=f"{out}/runs/seed_{seed}")


def _train_quiet(cfg: EZTrainConfig) -> tuple[str, float, float]:
    from rltransfer.train_efficientzero import train_efficientzero

    result = train_efficientzero(cfg)
    return str(result.run_dir), result.final_return_mean, result.wall_seconds


def run_ez_experiment(exp: EZExperiment, out_dir: str | Path) -> Path:
    """Train every seed of ``exp`` under ``out_dir`` (``exp.workers`` at a time) and write
    ``report.md`` (the runs are labelled ``exp.name``).

    Returns:
        The path of ``report.md``.

    Raises:
        Whatever a run raises (e.g. ConfigError for an invalid ``exp.train``; the other runs
        of a parallel pool finish first).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = [seed_config(exp, k, out) for k in range(exp.num_seeds)]
    console.print(f"[bold]{exp.name}[/]: {exp.num_seeds} seeds, {exp.train.total_env_steps} "
                  f"env steps each, {exp.workers} at a time")

    def done(count: int, total: int, result: tuple[str, float, float]) -> None:
        run_dir, ret, secs = result
        console.print(f"    [{count}/{total}] {run_dir}: final return {ret:.3f} ({secs:.0f}s)")

    results = run_jobs(_train_quiet, configs, exp.workers, on_done=done)
    finals, curves = collect_runs({exp.name: [run_dir for run_dir, _, _ in results]})
    report = write_report(out / "report.md", exp.name, finals, learning_curves=curves,
                          description=exp.description or None)
    console.print(f"    {report}")
    return report
