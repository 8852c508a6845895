"""The Behavior Transfer suite (``bt-suite``): one reward-free policy per environment, transferred
to every task variant, every strategy and ablation, aggregated over (task, seed) with CIs.

Campos et al. (2021) make their claims on a suite: one policy pretrained without reward,
transferred to many tasks, compared with epsilon-greedy, ez-greedy and weight transfer, with
the ablations "flights only" and "a+ only" (Sec. 5, Figs. 4-6, Table 1). This is that
experiment at CPU scale (feedforward agent, as the demo ``bt-minigrid``):

* environments: MiniGrid DoorKey-5x5 and DoorKey-6x6 (the larger door+key room; DoorKey-8x8
  separated nothing at 150k env steps per run, ``docs/benchmarks.md``, far beyond this budget);
* one NGU policy per environment, pretrained reward-free for ``pretrain.total_env_steps``
  (20k) env steps (NGU: its policy made BT learn on 4 of 5 seeds against RND's 3);
* tasks: ``goal``, ``key``, ``door`` (:mod:`rltransfer.envs.minigrid`);
* every strategy of :data:`~rltransfer.experiments.behavior_transfer.STRATEGIES`, 5 seeds,
  the same budget ``train.total_env_steps`` (30k env steps) for each.

**Normalisation.** A run's score is its final evaluation return divided by the task's maximum
return, :func:`task_max_return`: 1 for every MiniGrid task (``key`` / ``door``: reward 1 on the
event; ``goal``: ``1 - 0.9 * steps / max_steps``, below 1 by at least ``0.9 / max_steps``), so
scores lie in ``[0, 1]`` and tasks weigh alike in the pooled IQM.

**Pretraining budget.** Pretraining steps are reported separately (uncharged: every strategy
gets ``B`` task env steps). The *charged* variant gives the strategies that use the pretrained
policy ``B - P`` task env steps (``P`` = pretraining env steps, charged in full to every task
although one policy serves three): their score is read off the same runs at env step
``B - P`` (the last evaluation at or before it). Nothing in a run depends on its total budget
(epsilon decay, replay, learning start are absolute), so a run's first ``B - P`` steps are the
run a ``B - P`` budget would have made.

Layout::

    <out>/<Env>/pretrain/                            the env's reward-free run (pi_p)
    <out>/<Env>/<task>/zero_shot.json                pi_p's returns on the task
    <out>/<Env>/<task>/runs/<strategy>/seed_<k>/     one transfer run each
    <out>/timings.json                               wall seconds of every run
    <out>/report.md, report_*.png                    the comparison (opens with the verdict)

Re-running continues: finished runs are skipped, interrupted ones resume from their last
checkpoint, the report is rebuilt from what is on disk.

Also here, sharing the suite's settings: ``bt-minigrid-cross`` (:func:`bt_minigrid_cross`), one
env pretrained, another of the same spaces transferred to.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.core.config import ConfigError
from rltransfer.errors import UserError
from rltransfer.evaluation.aggregate import aggregate_scores
from rltransfer.evaluation.report import eval_curve, write_report
from rltransfer.evaluation.verdict import BASELINE, compare_with_baseline
from rltransfer.experiments.behavior_transfer import (
    STRATEGIES,
    BTExperiment,
    SuiteEnv,
    bt_minigrid,
    console,
    strategy_config,
    train_quiet,
    zero_shot,
)
from rltransfer.experiments.pool import run_jobs
from rltransfer.intrinsic.ngu import NGUConfig

SUITE_ENVS: tuple[SuiteEnv, ...] = (
    SuiteEnv("MiniGrid-DoorKey-5x5-v0"),
    SuiteEnv("MiniGrid-DoorKey-6x6-v0"),
)
"""The suite's environments, each with the tasks ``goal``, ``key``, ``door``."""


def bt_suite() -> BTExperiment:
    """The ``bt-suite`` recipe: 2 envs x 3 tasks x 9 strategies x 5 seeds, 30k env steps per
    run, one NGU policy (20k reward-free env steps) per env. Agent, replay and exploration
    settings are the demo's (:func:`~rltransfer.experiments.behavior_transfer.bt_minigrid`)."""
    base = bt_minigrid()
    pretrain = dataclasses.replace(
        base.pretrain, total_env_steps=20_000, intrinsic="ngu", intrinsic_scale=1.0,
        ngu=NGUConfig(embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=64,
                      rnd_hidden=128),
    )
    train_cfg = dataclasses.replace(base.train, total_env_steps=30_000,
                                    eval_every_env_steps=5_000, eval_episodes=10)
    return BTExperiment(
        name="bt-suite", pretrain=pretrain, train=train_cfg, strategies=tuple(STRATEGIES),
        num_seeds=5, workers=2, suite=SUITE_ENVS,
        description="Behavior Transfer suite: DoorKey-5x5 and -6x6, NGU pretraining, tasks "
                    "goal/key/door, 9 strategies x 5 seeds.",
    )


def bt_minigrid_cross() -> BTExperiment:
    """Transfer across environments: NGU reward-free pretraining on MiniGrid DoorKey-6x6, the
    strategies on LavaGapS6's goal task; settings of ``bt-suite`` (20k pretraining, 30k env
    steps per run), 5 strategies x 3 seeds.

    Both envs are 6x6 grids with 7 actions: the same ``(3, 6, 6)`` observation (``full_obs``)
    and action spaces. Both split the room with a vertical wall with one opening and put the
    goal in the bottom-right corner; in LavaGapS6 the wall is lava (stepping in ends the
    episode with return 0) and the opening a gap, not a locked door. Feedforward agent, as in
    :func:`bt_minigrid`.
    """
    suite = bt_suite()
    return BTExperiment(
        name="bt-minigrid-cross",
        pretrain=dataclasses.replace(suite.pretrain, env_id="MiniGrid-DoorKey-6x6-v0"),
        train=dataclasses.replace(suite.train, task="goal"),
        transfer_env_id="MiniGrid-LavaGapS6-v0",
        description="Reward-free NGU pretraining on MiniGrid DoorKey-6x6, then the goal task "
                    "of LavaGapS6 (another 6x6 layout).",
    )


def task_max_return(env_id: str, task: str) -> float:
    """The maximum return of ``task`` in MiniGrid env ``env_id``: 1.0 for ``goal``, ``key`` and
    ``door`` (the normaliser of the suite's scores; see the module docstring).

    Raises:
        ConfigError: not a MiniGrid env, or a task other than goal / key / door.
    """
    if not env_id.startswith("MiniGrid-") or task not in ("goal", "key", "door"):
        raise ConfigError(
            f"no maximum return known for {env_id!r} task {task!r}; the suite normalises "
            "MiniGrid tasks goal / key / door (add the task's maximum to task_max_return)"
        )
    return 1.0


def env_slug(env_id: str) -> str:
    """Folder name of an env: ``"MiniGrid-DoorKey-5x5-v0"`` -> ``"DoorKey-5x5"``."""
    name = re.sub(r"-v\d+$", "", env_id.split("/")[-1])
    return name.removeprefix("MiniGrid-")


def task_experiment(exp: BTExperiment, env: SuiteEnv, task: str) -> BTExperiment:
    """The one-task experiment of ``(env, task)`` inside suite ``exp``."""
    return dataclasses.replace(
        exp, suite=(), name=f"{exp.name}/{env_slug(env.env_id)}/{task}",
        pretrain=dataclasses.replace(exp.pretrain, env_id=env.env_id),
        train=dataclasses.replace(exp.train, env_id=env.env_id, task=task),
    )


def _cells(exp: BTExperiment) -> list[tuple[SuiteEnv, str]]:
    return [(env, task) for env in exp.suite for task in env.tasks]


def _check(exp: BTExperiment) -> None:
    from rltransfer.envs.minigrid import check_minigrid_task

    for env, task in _cells(exp):
        task_max_return(env.env_id, task)
        check_minigrid_task(env.env_id, task)
    charged = exp.train.total_env_steps - exp.pretrain.total_env_steps
    if charged < 0:
        raise ConfigError(f"{exp.name}: pretraining ({exp.pretrain.total_env_steps} env steps) "
                          f"exceeds the transfer budget ({exp.train.total_env_steps})")


def _run_configs(exp: BTExperiment, out: Path) -> list[TrainConfig]:
    # seed-major: a suite stopped half-way has whole seeds of every cell, not whole cells
    configs = []
    for k in range(exp.num_seeds):
        for env, task in _cells(exp):
            sub = task_experiment(exp, env, task)
            env_dir = out / env_slug(env.env_id)
            for s in exp.strategies:
                configs.append(strategy_config(sub, s, k, env_dir / task,
                                               pretrain_dir=env_dir / "pretrain"))
    return configs


class _Timings:
    """Wall seconds per run directory, kept in ``<out>/timings.json`` (a resumed run's
    segments add up; an already finished run reports 0 and adds nothing)."""

    def __init__(self, out: Path) -> None:
        self.path = out / "timings.json"
        self.out = out
        self.data: dict[str, float] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {}
        )

    def add(self, run_dir: str, seconds: float) -> None:
        if seconds <= 0:
            return
        key = str(Path(run_dir).resolve().relative_to(self.out.resolve()))
        self.data[key] = self.data.get(key, 0.0) + seconds
        tmp = self.path.with_name(".timings.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def run_suite(exp: BTExperiment, out_dir: str | Path) -> Path:
    """Run suite ``exp`` (``exp.suite`` non-empty) under ``out_dir`` and write its report.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: an env / task the suite cannot normalise, or pretraining longer than the
            transfer budget (before anything runs). EnvOptionError: an env without the task's
            object. Whatever the runs raise.
    """
    if not exp.suite:
        raise ConfigError(f"{exp.name}: run_suite needs a suite of environments")
    _check(exp)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timings = _Timings(out)

    def done_print(count: int, total: int, result: tuple[str, float, float]) -> None:
        run_dir, ret, secs = result
        timings.add(run_dir, secs)
        console.print(f"    [{count}/{total}] {run_dir}: final return {ret:.3f} ({secs:.0f}s)")

    if any(STRATEGIES[s].uses_pretraining for s in exp.strategies):
        console.print(f"[bold]1/3 reward-free pretraining[/]: {len(exp.suite)} env(s), "
                      f"{exp.pretrain.intrinsic}, {exp.pretrain.total_env_steps} env steps each")
        pre = [dataclasses.replace(exp.pretrain, env_id=env.env_id, progress=False,
                                   run_dir=str(out / env_slug(env.env_id) / "pretrain"))
               for env in exp.suite]
        run_jobs(train_quiet, pre, exp.workers, on_done=done_print)
        for env, task in _cells(exp):
            env_dir = out / env_slug(env.env_id)
            (env_dir / task).mkdir(parents=True, exist_ok=True)
            zero_shot(task_experiment(exp, env, task), env_dir / task, env_dir / "pretrain")
    configs = _run_configs(exp, out)
    console.print(f"[bold]2/3 transfer[/]: {len(_cells(exp))} tasks x {len(exp.strategies)} "
                  f"strategies x {exp.num_seeds} seeds, {exp.train.total_env_steps} env steps "
                  f"each, {exp.workers} at a time")
    run_jobs(train_quiet, configs, exp.workers, on_done=done_print)
    console.print("[bold]3/3 report[/]")
    report = write_suite_report(exp, out)
    console.print(f"    {report} ({time.perf_counter() - start:.0f}s in all)")
    return report


def _score_at(run_dir: Path, env_steps: int | None) -> float:
    steps, returns = eval_curve(run_dir)
    if env_steps is not None:
        keep = steps <= env_steps
        steps, returns = steps[keep], returns[keep]
    if returns.size == 0:
        raise UserError(f"{run_dir} has no evaluation at or before env step {env_steps}; "
                        "evaluate more often (eval_every_env_steps) or shorten pretraining")
    return float(returns[-1])


def suite_scores(
    exp: BTExperiment, out: Path, charged: bool = False
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Normalised scores of every strategy with runs for every task, ``[num_seeds, num_tasks]``.

    Seeds are those finished for every task of every listed strategy (so the matrix is
    complete). With ``charged``, strategies that use the pretrained policy are scored at env
    step ``B - P`` (see the module docstring).

    Returns:
        ``(scores, task_names)``; task names are ``"<Env>/<task>"``.
    """
    names = [f"{env_slug(env.env_id)}/{task}" for env, task in _cells(exp)]
    cutoff = exp.train.total_env_steps - exp.pretrain.total_env_steps
    scores: dict[str, np.ndarray] = {}
    for s in exp.strategies:
        rows = []
        for k in range(exp.num_seeds):
            dirs = [out / name / "runs" / s / f"seed_{k}" for name in names]
            if not all((d / "final").is_dir() for d in dirs):
                continue
            at = cutoff if charged and STRATEGIES[s].uses_pretraining else None
            rows.append([_score_at(d, at) / task_max_return(env.env_id, task)
                         for d, (env, task) in zip(dirs, _cells(exp), strict=True)])
        if rows:
            scores[s] = np.array(rows, dtype=np.float64)
    return scores, names


def _curves(exp: BTExperiment, out: Path, names: list[str],
            strategies: list[str]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for s in strategies:
        curves[s] = []
        for name, (env, task) in zip(names, _cells(exp), strict=True):
            for k in range(exp.num_seeds):
                d = out / name / "runs" / s / f"seed_{k}"
                if (d / "final").is_dir():
                    x, y = eval_curve(d)
                    curves[s].append((x, y / task_max_return(env.env_id, task)))
    return curves


def _per_task_tables(scores: dict[str, np.ndarray], names: list[str]) -> str:
    lines = []
    for t, name in enumerate(names):
        est = aggregate_scores({s: a[:, t] for s, a in scores.items()}, reps=1000,
                               metrics=("iqm", "mean"))
        lines += [f"**{name}**", "", "| strategy | IQM [95% CI] | mean [95% CI] | per seed |",
                  "|---|---:|---:|---|"]
        for s, a in scores.items():
            lines.append(f"| {s} | {est[s]['iqm']} | {est[s]['mean']} | "
                         + ", ".join(f"{v:.3g}" for v in a[:, t]) + " |")
        lines.append("")
    return "\n".join(lines)


def _runtime_section(exp: BTExperiment, out: Path) -> str:
    path = out / "timings.json"
    if not path.is_file():
        return "No timings recorded."
    data: dict[str, float] = json.loads(path.read_text())
    pre = sum(v for k, v in data.items() if k.endswith("pretrain"))
    runs = [v for k, v in data.items() if not k.endswith("pretrain")]
    if not runs:
        return f"Pretraining: {pre:.0f} s in all. No transfer run timed yet."
    total = len(_cells(exp)) * len(exp.strategies) * exp.num_seeds
    estimate = (pre + np.mean(runs) * total) / exp.workers
    return (
        f"Pretraining: {pre:.0f} s for {len(exp.suite)} env(s) "
        f"({exp.pretrain.total_env_steps} env steps each). Transfer runs timed: {len(runs)}, "
        f"{np.mean(runs):.0f} s each on average (min {min(runs):.0f}, max {max(runs):.0f}). "
        f"Estimated wall time of all {total} runs with {exp.workers} workers: "
        f"{estimate / 60:.0f} min."
    )


def write_suite_report(exp: BTExperiment, out: Path) -> Path:
    """Aggregate the suite's finished runs into ``out/report.md`` (opens with the verdict).

    Raises:
        UserError: no strategy has finished runs on every task.
    """
    scores, names = suite_scores(exp, out)
    if not scores:
        raise UserError(f"{out} has no seed finished on every task of {exp.name}")
    curves = _curves(exp, out, names, list(scores))
    budget, pretrain = exp.train.total_env_steps, exp.pretrain.total_env_steps
    description = (
        f"Environments {', '.join(f'`{e.env_id}`' for e in exp.suite)}; tasks "
        f"{', '.join(names)}. One policy per env pretrained without reward "
        f"({exp.pretrain.intrinsic}, {pretrain} env steps, reported separately), then every "
        f"strategy trains {budget} env steps per task and seed. Score: the final greedy "
        f"evaluation return ({exp.train.eval_episodes} episodes) divided by the task's maximum "
        "return (1 for every MiniGrid task), pooled over (task, seed)."
    )
    sections = {"Per-task results": _per_task_tables(scores, names)}
    charged, _ = suite_scores(exp, out, charged=True)
    if BASELINE in charged and len(charged) > 1:
        v = compare_with_baseline(charged, reps=1000, score_label="normalised return")
        sections[f"Pretraining charged to the transfer budget ({budget - pretrain} task env "
                 "steps for strategies using pi_p)"] = (
            "The same runs, strategies that use the pretrained policy scored at env step "
            f"{budget - pretrain} (their budget minus the {pretrain} pretraining env steps).\n\n"
            + v.markdown())
    sections["Runtime"] = _runtime_section(exp, out)
    zero = {}
    for env, task in _cells(exp):
        zpath = out / env_slug(env.env_id) / task / "zero_shot.json"
        if zpath.is_file():
            zero[f"pi_p {env_slug(env.env_id)}/{task}"] = json.loads(zpath.read_text())["returns"]
    return write_report(
        out / "report.md", exp.name, scores, learning_curves=curves, zero_shot=zero or None,
        task_names=names, score_label="normalised return", description=description,
        extra_sections=sections, baseline=BASELINE,
    )


__all__ = ["SUITE_ENVS", "bt_minigrid_cross", "bt_suite", "env_slug", "run_suite", "suite_scores",
           "task_experiment", "task_max_return", "write_suite_report"]
