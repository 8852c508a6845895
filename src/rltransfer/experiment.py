"""Run a Behavior Transfer experiment: pretrain, transfer with each strategy, report.

Layout of an experiment directory::

    <out>/pretrain/                   the reward-free run (its final/ is pi_p)
    <out>/zero_shot.json              pi_p's returns on the task reward
    <out>/runs/<strategy>/seed_<k>/   one training run each
    <out>/report.md, *.png            the comparison

Every step is resumable: finished runs are skipped, interrupted ones resume from their last
checkpoint, so re-running the same command after a kill continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from rltransfer.agents.agent_policy import load_policy
from rltransfer.config import TrainConfig
from rltransfer.errors import UnknownRecipeError, UserError
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.recipes import STRATEGIES, BTExperiment
from rltransfer.runtime.pool import run_jobs
from rltransfer.train_r2d2 import train, train_env_kwargs

log = logging.getLogger(__name__)
console = Console(stderr=True)


def strategy_config(exp: BTExperiment, strategy: str, seed: int, out: Path) -> TrainConfig:
    """The training config of one (strategy, seed) run of ``exp``.

    Raises:
        UnknownRecipeError (a ``KeyError``): unknown strategy name.
    """
    if strategy not in STRATEGIES:
        raise UnknownRecipeError(
            f"unknown strategy {strategy!r}; available: {', '.join(STRATEGIES)}"
        )
    s = STRATEGIES[strategy]
    prior = str(out / "pretrain") if s.uses_pretraining else None
    return dataclasses.replace(
        exp.train,
        explore=s.explore,
        init=s.init,
        flights=s.flights,
        extra_action=s.extra_action,
        prior=prior if s.explore == "bt" else None,
        init_from=prior if s.init != "none" else None,
        seed=exp.train.seed + seed,
        run_dir=str(out / "runs" / strategy / f"seed_{seed}"),
        progress=False,
    )


def _train_quiet(cfg: TrainConfig) -> tuple[str, float, float]:
    result = train(cfg)
    return str(result.run_dir), result.final_return_mean, result.wall_seconds


def zero_shot(exp: BTExperiment, out: Path) -> list[float]:
    """Score the pretrained policy on the task reward (cached in ``zero_shot.json``), on the
    transfer runs' evaluation env (``eval_env_kwargs(train_env_kwargs(exp.train))``: the same
    sticky actions, episode cap and task as the runs it is compared with)."""
    path = out / "zero_shot.json"
    if path.exists():
        return [float(r) for r in json.loads(path.read_text())["returns"]]
    policy = load_policy(out / "pretrain", epsilon=exp.train.eval_epsilon)
    returns = evaluate_policy(
        policy, exp.train.env_id, exp.zero_shot_episodes, seed=exp.train.seed + 2_000_003,
        frame_stack=exp.train.frame_stack, env_kwargs=eval_env_kwargs(train_env_kwargs(exp.train)),
    )
    data = {"env_id": exp.train.env_id, "task": exp.train.task,
            "returns": [float(r) for r in returns], "mean": float(np.mean(returns))}
    tmp = path.with_name(".zero_shot.json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return [float(r) for r in returns]


def run_experiment(exp: BTExperiment, out_dir: str | Path) -> Path:
    """Run every stage of ``exp`` under ``out_dir`` and write the report.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    needs_pretraining = any(STRATEGIES[s].uses_pretraining for s in exp.strategies)
    zero_shot_returns: list[float] | None = None
    if needs_pretraining:
        console.print(f"[bold]1/3 reward-free pretraining[/] on {exp.pretrain.env_id} "
                      f"({exp.pretrain.intrinsic}, {exp.pretrain.total_env_steps} env steps)")
        pre = train(dataclasses.replace(exp.pretrain, run_dir=str(out / "pretrain")))
        console.print(f"    done in {pre.wall_seconds:.0f}s")
        zero_shot_returns = zero_shot(exp, out)
        console.print(f"    zero-shot return of pi_p on task {exp.train.task!r}: "
                      f"{np.mean(zero_shot_returns):.3f}")
    configs = [strategy_config(exp, s, k, out) for s in exp.strategies
               for k in range(exp.num_seeds)]
    console.print(f"[bold]2/3 transfer[/]: {len(exp.strategies)} strategies x {exp.num_seeds} "
                  f"seeds, {exp.train.total_env_steps} env steps each, {exp.workers} at a time")
    def done(count: int, total: int, result: tuple[str, float, float]) -> None:
        run_dir, ret, secs = result
        console.print(f"    [{count}/{total}] {run_dir}: final return {ret:.3f} ({secs:.0f}s)")

    run_jobs(_train_quiet, configs, exp.workers, on_done=done)
    console.print("[bold]3/3 report[/]")
    report = write_experiment_report(
        out, title=exp.name,
        strategies=list(exp.strategies), num_seeds=exp.num_seeds,
        zero_shot_returns=zero_shot_returns,
    )
    console.print(f"    {report} ({time.perf_counter() - start:.0f}s in all)")
    return report


def write_experiment_report(
    out: Path,
    title: str,
    strategies: list[str],
    num_seeds: int,
    zero_shot_returns: list[float] | None,
) -> Path:
    """Aggregate the final evaluation of every ``runs/<strategy>/seed_<k>`` into ``report.md``.

    The score of a run is the mean return of its last evaluation (``eval_episodes`` episodes
    on the task reward). Strategies are compared by IQM, mean and median over seeds with
    stratified-bootstrap 95% CIs (rliable), with learning curves.

    Raises:
        UserError (a ``ValueError``): no finished runs at all. MetricsFileError: a run's
            metrics file is unreadable.
    """
    run_dirs = {
        s: [out / "runs" / s / f"seed_{k}" for k in range(num_seeds)
            if (out / "runs" / s / f"seed_{k}" / "metrics.jsonl").is_file()]
        for s in strategies
    }
    run_dirs = {s: dirs for s, dirs in run_dirs.items() if dirs}
    if not run_dirs:
        raise UserError(f"{out} has no finished runs under runs/<strategy>/seed_<k>")
    finals, learning = collect_runs(run_dirs)
    zero = {"pretrained policy": zero_shot_returns} if zero_shot_returns else None
    first = run_dirs[next(iter(run_dirs))][0]
    cfg = json.loads((first / "config.json").read_text())
    description = (
        f"Environment `{cfg['env_id']}`, task `{cfg['task']}`; {cfg['total_env_steps']} env "
        f"steps per run; each score is the mean return of {cfg['eval_episodes']} evaluation "
        "episodes at the end of training (greedy policy; with the extra action a+ the "
        "pretrained policy resolves a+). Strategies: scratch_* learn from nothing with "
        "epsilon- or ez-greedy exploration; full_init / partial_init start from the pretrained "
        "weights; bt explores with the frozen pretrained policy (flights + extra action, "
        "Campos et al. 2021)."
    )
    return write_report(
        out / "report.md", title, finals, learning_curves=learning, zero_shot=zero,
        seed_labels={s: [d.name for d in dirs] for s, dirs in run_dirs.items()},
        description=description,
    )
