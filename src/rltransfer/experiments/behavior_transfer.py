"""Named, typed experiment presets: the Behavior Transfer ones (``bt-*``).

Every recipe (``bt-*`` here, ``ik-*`` in :mod:`rltransfer.experiments.encoder_recipes`, ``ez-*`` in
:mod:`rltransfer.experiments.efficientzero`) is registered once, with its kind, description and
runtime, in :mod:`rltransfer.experiments.registry`; ``rltransfer run --list`` prints them.

A Behavior Transfer recipe is a :class:`BTExperiment`: reward-free pretraining on one
environment, then each transfer strategy trained on the task reward with several seeds, then a
report. The presets:

* ``bt-minigrid`` — the demo (``rltransfer demo``): small, about 10 minutes on 2 CPU cores.
  Pretrains with RND (kept: its timing is the demo's contract). **Feedforward** agent (MLP
  torso, Linear core, dueling head; transition replay), not the paper's LSTM: it is the
  CPU-budget version, so partial init loads the torso and the Linear core.
* ``bt-minigrid-benchmark`` — a sparse-reward MiniGrid task with a longer budget (about an
  hour on 2 cores), the benchmark recorded in ``docs/benchmarks.md``. Pretrains with NGU's
  intrinsic reward, as Behavior Transfer does (one policy: the feedforward agent has no
  policy-family input). **Feedforward**, like ``bt-minigrid``.
* ``bt-atari`` — paper-scale settings on Atari (Campos et al. 2021 use R2D2 with 256 actors
  and billions of frames); here it runs on short budgets, meaningful ones need a GPU/cluster.
  The paper's agent: conv torso + LSTM + dueling head (``core="lstm"``, R2D2's sequences of
  80 steps with a 40-step burn-in, overlapping by 40), so partial init loads torso + LSTM.
  Pretrains with NGU (one policy, NGU's ``beta = 0.3``).
* ``bt-minigrid-cross`` (in :mod:`rltransfer.experiments.bt_suite`, with the suite whose
  settings it shares) — transfer *across environments*: pi_p pretrained on DoorKey-6x6, the
  strategies trained on LavaGapS6 (another 6x6 layout: the same spaces).

Why NGU where it fits: ``benchmarks/ngu_exploration.py`` (DoorKey-8x8, 40k reward-free env
steps) measured NGU's pretrained policy visiting ~4x the distinct agent poses per episode of
RND's, at ~1.2x RND's cost per env step.

Run a Behavior Transfer experiment: pretrain, transfer with each strategy, report.

A transfer env other than the pretraining env (``BTExperiment.transfer_env_id``) must have the
same spaces, checked before anything runs (:func:`check_transfer_spaces`).

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
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from rltransfer.agents.agent_policy import load_policy
from rltransfer.agents.r2d2.config import Explore, Init, R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import train, train_env_kwargs
from rltransfer.core.config import ConfigError
from rltransfer.core.policy import SpaceMismatchError
from rltransfer.errors import UnknownRecipeError, UserError
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.evaluation.verdict import BASELINE
from rltransfer.experiments.pool import run_jobs
from rltransfer.intrinsic.ngu import NGUConfig


@dataclass(frozen=True)
class Strategy:
    """One way of starting the task: exploration and where the weights come from.

    ``explore`` and ``init`` take :class:`~rltransfer.agents.r2d2.config.TrainConfig`'s values
    (typed
    as the same ``Literal`` types, so they reach the config checked by mypy).

    Raises:
        ConfigError: ``explore`` or ``init`` outside its ``Literal`` values (at construction).
    """

    name: str
    explore: Explore = "epsilon_greedy"
    init: Init = "none"
    flights: bool = True
    extra_action: bool = True

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(Strategy)
        for key in ("explore", "init"):
            allowed = typing.get_args(hints[key])
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"strategy {self.name!r}: {key}={getattr(self, key)!r} is not one of "
                    f"{list(allowed)}"
                )

    @property
    def uses_pretraining(self) -> bool:
        return self.explore == "bt" or self.init != "none"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("scratch_eps_greedy"),
        Strategy("scratch_ez_greedy", explore="ez_greedy"),
        Strategy("full_init", init="full"),
        Strategy("partial_init", init="partial"),
        Strategy("bt", explore="bt"),
        Strategy("bt_partial_init", explore="bt", init="partial"),
        Strategy("bt_full_init", explore="bt", init="full"),
        Strategy("bt_flights_only", explore="bt", extra_action=False),
        Strategy("bt_extra_action_only", explore="bt", flights=False),
    )
}
"""Standard strategies (Campos et al. 2021, Sec. 5 and Table 1 ablations)."""


@dataclass(frozen=True)
class SuiteEnv:
    """One environment of a suite: one reward-free policy is pretrained on ``env_id`` and
    transferred to each of ``tasks`` (MiniGrid task variants, :mod:`rltransfer.envs.minigrid`).
    """

    env_id: str
    tasks: tuple[str, ...] = ("goal", "key", "door")


@dataclass
class BTExperiment:
    """Pretrain without reward, transfer with each strategy, compare over seeds.

    Attributes:
        pretrain: config of the reward-free pretraining run (seed ``pretrain.seed``).
        train: base config of each transfer run; ``explore``/``init``/``prior``/``seed``/
            ``run_dir`` are set per strategy and seed.
        strategies: names from :data:`STRATEGIES`.
        num_seeds: seeds per strategy (0 .. num_seeds - 1).
        zero_shot_episodes: episodes to score the pretrained policy on the task reward.
        workers: training runs in parallel (processes, one torch thread each).
        suite: empty for one task (``pretrain.env_id`` / ``train.task``); else every
            environment of the suite with its tasks, run by
            :func:`rltransfer.experiments.bt_suite.run_suite` (``pretrain`` and ``train`` give
            every other setting; their ``env_id`` / ``task`` are set per environment / task).
        transfer_env_id: the env of the transfer runs (and of the zero-shot score); ``None``:
            the pretraining env ``pretrain.env_id``. ``train.env_id`` is set to it at
            construction. Its spaces must match the pretraining env's
            (:func:`check_transfer_spaces`, run by :func:`run_experiment` before anything).

    Raises:
        UnknownRecipeError: a strategy not in :data:`STRATEGIES` (at construction).
        ConfigError: ``num_seeds``, ``workers`` or ``zero_shot_episodes`` below 1, no
            strategies, or a ``transfer_env_id`` with a suite (a suite transfers within each
            of its envs).
    """

    name: str
    pretrain: TrainConfig
    train: TrainConfig
    strategies: tuple[str, ...] = (
        "scratch_eps_greedy",
        "scratch_ez_greedy",
        "full_init",
        "bt",
        "bt_partial_init",
    )
    num_seeds: int = 3
    zero_shot_episodes: int = 20
    workers: int = 2
    description: str = ""
    suite: tuple[SuiteEnv, ...] = ()
    transfer_env_id: str | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise UnknownRecipeError(
                f"{self.name}: unknown strategies {unknown}; available: {', '.join(STRATEGIES)}"
            )
        if not self.strategies:
            raise ConfigError(f"{self.name}: strategies is empty")
        if min(self.num_seeds, self.workers, self.zero_shot_episodes) < 1:
            raise ConfigError(
                f"{self.name}: num_seeds, workers and zero_shot_episodes must be >= 1, got "
                f"{self.num_seeds}, {self.workers}, {self.zero_shot_episodes}"
            )
        if self.suite and self.transfer_env_id is not None:
            raise ConfigError(f"{self.name}: transfer_env_id does not apply to a suite")
        transfer_env = self.transfer_env_id or self.pretrain.env_id
        if self.train.env_id != transfer_env:
            self.train = dataclasses.replace(self.train, env_id=transfer_env)


def _small_agent(**overrides: Any) -> R2D2Config:
    # gamma 0.9: MiniGrid has no-op actions (pickup/drop/toggle/done in empty cells), and with
    # gamma near 1 their Q-values differ from moving by under 1%, below the approximation
    # noise; the episode cap already bounds horizons to a few hundred steps.
    # adam_eps 1e-6, not R2D2's 1e-3: MiniGrid returns are <= 1, so gradients are ~1e-4 and
    # an epsilon of 1e-3 shrinks every Adam step ~10x (Empty-8x8: greedy return 0 after 30k
    # env steps with 1e-3, 0.96 with 1e-6; docs/benchmarks.md).
    base = R2D2Config(
        torso="mlp", feature_dim=128, hidden=128, lr=1e-3, adam_eps=1e-6, batch_size=64,
        n_step=5, gamma=0.9, target_update_period_updates=250,
    )
    return dataclasses.replace(base, **overrides)


def bt_minigrid() -> BTExperiment:
    """The demo: DoorKey 5x5, RND pretraining (no reward), transfer to reaching the goal.

    The agent is feedforward (MLP torso, ``core="feedforward"``, dueling head; transition
    replay), a CPU-budget stand-in for the paper's conv + LSTM agent (see ``bt-atari``).
    """
    env = "MiniGrid-DoorKey-5x5-v0"
    common = TrainConfig(
        env_id=env, num_envs=8, replay_capacity_env_steps=50_000,
        learning_starts_env_steps=1_000, updates_per_env_step=0.25, eval_every_env_steps=5_000,
        eval_episodes=10, checkpoint_every_env_steps=10_000, epsilon_schedule="linear",
        epsilon=0.05, epsilon_decay_env_steps=10_000, prior_epsilon=0.05, agent=_small_agent(),
    )
    pretrain = dataclasses.replace(common, total_env_steps=20_000, reward_free=True,
                                   intrinsic="rnd", intrinsic_scale=1.0, seed=1_000,
                                   rnd_torso="mlp", rnd_feature_dim=64, rnd_hidden=128)
    train = dataclasses.replace(common, task="goal", total_env_steps=25_000)
    return BTExperiment(
        name="bt-minigrid", pretrain=pretrain, train=train,
        description="Reward-free RND pretraining on MiniGrid DoorKey-5x5, then the goal task.",
    )


def bt_minigrid_benchmark() -> BTExperiment:
    """The benchmark: a sparse-reward MiniGrid task, longer budgets, 5 seeds.

    Feedforward agent, as in :func:`bt_minigrid`.
    """
    exp = bt_minigrid()
    env = "MiniGrid-DoorKey-8x8-v0"
    pretrain = dataclasses.replace(
        exp.pretrain, env_id=env, total_env_steps=200_000, replay_capacity_env_steps=200_000,
        intrinsic="ngu", intrinsic_scale=1.0,
        ngu=NGUConfig(embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=64, rnd_hidden=128),
    )
    train = dataclasses.replace(exp.train, env_id=env, task="goal", total_env_steps=150_000,
                                replay_capacity_env_steps=150_000, eval_every_env_steps=10_000,
                                eval_episodes=20)
    return BTExperiment(
        name="bt-minigrid-benchmark", pretrain=pretrain, train=train,
        strategies=("scratch_eps_greedy", "scratch_ez_greedy", "full_init", "bt",
                    "bt_partial_init"),
        num_seeds=5,
        description="Reward-free NGU pretraining on MiniGrid DoorKey-8x8, then the goal task.",
    )


def bt_atari() -> BTExperiment:
    """Paper-scale settings on Atari (Ms. Pac-Man); set budgets with --total-env-steps.

    The agent is the paper's (Campos et al. 2021, Sec. 5: "a convolutional torso, an LSTM,
    and a dueling head"), trained as R2D2 (Kapturowski et al. 2019, Table 2): Nature CNN,
    LSTM(512), sequences of 80 steps after a 40-step burn-in, consecutive sequences
    overlapping by 40.
    """
    env = "ALE/MsPacman-v5"
    # R2D2 defaults: gamma 0.997, n 5, lr 1e-4, target 2500 updates; recurrent core.
    agent = R2D2Config(core="lstm", lstm_hidden=512, sequence_length=80, burn_in=40,
                       sequence_overlap=40)
    common = TrainConfig(
        env_id=env, num_envs=8, replay_capacity_env_steps=1_000_000,
        learning_starts_env_steps=20_000, updates_per_env_step=0.25,
        eval_every_env_steps=250_000, eval_episodes=10, checkpoint_every_env_steps=250_000,
        checkpoint_replay=False, agent=agent, sticky_action_prob=0.0,
    )
    pretrain = dataclasses.replace(common, total_env_steps=50_000_000, reward_free=True,
                                   intrinsic="ngu", intrinsic_scale=0.3, seed=1_000)
    train = dataclasses.replace(common, total_env_steps=50_000_000)
    return BTExperiment(
        name="bt-atari", pretrain=pretrain, train=train, num_seeds=3, workers=1,
        description="Paper-scale Behavior Transfer on Ms. Pac-Man (needs a GPU or a cluster).",
    )


def get_recipe(name: str) -> BTExperiment:
    """The config of Behavior Transfer recipe ``name``, from the one recipe registry
    (:mod:`rltransfer.experiments.registry`).

    Raises:
        UnknownRecipeError (a ``KeyError``): no Behavior Transfer recipe of that name (the
            message lists them).
    """
    from rltransfer.experiments.registry import BT_RECIPES

    bt = {r.name: r for r in BT_RECIPES}
    if name not in bt:
        raise UnknownRecipeError(
            f"unknown recipe {name!r}; Behavior Transfer recipes: {', '.join(sorted(bt))}"
        )
    return bt[name].build()


__all__ = ["STRATEGIES", "BTExperiment", "Explore", "Init", "Strategy", "SuiteEnv", "bt_atari",
           "bt_minigrid", "bt_minigrid_benchmark", "check_transfer_spaces", "get_recipe"]


log = logging.getLogger(__name__)
console = Console(stderr=True)


def check_transfer_spaces(exp: BTExperiment) -> None:
    """Check that pi_p, pretrained on ``exp.pretrain``'s env, can act (``bt``) and its weights
    load (``full`` / ``partial`` init) in ``exp.train``'s env: the agent observation shapes
    ``(C * frame_stack, H, W)``, their dtypes and the action spaces must be equal. Builds one
    env of each (with each stage's task and settings) and closes it.

    Raises:
        SpaceMismatchError (a ``UserError``): a difference; the message names both envs and
            what differs.
    """
    from rltransfer.envs import env_spec, make_env

    def spaces(cfg: TrainConfig) -> tuple[tuple[int, ...], str, Any]:
        env = make_env(cfg.env_id, 1, cfg.seed, **train_env_kwargs(cfg))
        try:
            obs, act = env.single_observation_space, env.single_action_space
        finally:
            env.close()
        shape = tuple(int(n) for n in obs.shape or ())
        stack = cfg.frame_stack or env_spec(cfg.env_id).frame_stack
        return (shape[0] * stack, *shape[1:]), str(obs.dtype), act

    (pre_shape, pre_dtype, pre_act), (shape, dtype, act) = spaces(exp.pretrain), spaces(exp.train)
    problems = []
    if (pre_shape, pre_dtype) != (shape, dtype):
        problems.append(f"observations {pre_shape} {pre_dtype} vs {shape} {dtype}")
    if pre_act != act:
        problems.append(f"actions {pre_act} vs {act}")
    if problems:
        raise SpaceMismatchError(
            f"{exp.name}: pretraining env {exp.pretrain.env_id!r} and transfer env "
            f"{exp.train.env_id!r} have different spaces ({'; '.join(problems)}); pi_p and its "
            "weights transfer only between envs of the same spaces (MiniGrid: the same grid "
            "size)"
        )


def strategy_config(exp: BTExperiment, strategy: str, seed: int, out: Path,
                    pretrain_dir: Path | None = None) -> TrainConfig:
    """The training config of one (strategy, seed) run of ``exp``, in
    ``out/runs/<strategy>/seed_<seed>``; the pretrained policy is read from ``pretrain_dir``
    (default ``out/pretrain``).

    Raises:
        UnknownRecipeError (a ``KeyError``): unknown strategy name.
    """
    if strategy not in STRATEGIES:
        raise UnknownRecipeError(
            f"unknown strategy {strategy!r}; available: {', '.join(STRATEGIES)}"
        )
    s = STRATEGIES[strategy]
    pretrained = out / "pretrain" if pretrain_dir is None else pretrain_dir
    prior = str(pretrained) if s.uses_pretraining else None
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


def train_quiet(cfg: TrainConfig) -> tuple[str, float, float]:
    """Train one run without progress output (a pool job); ``(run_dir, final return,
    wall seconds)``."""
    result = train(cfg)
    return str(result.run_dir), result.final_return_mean, result.wall_seconds


def zero_shot(exp: BTExperiment, out: Path, pretrain_dir: Path | None = None) -> list[float]:
    """Score the pretrained policy (``pretrain_dir``, default ``out/pretrain``) on the task
    reward (cached in ``out/zero_shot.json``), on the transfer runs' evaluation env
    (``eval_env_kwargs(train_env_kwargs(exp.train))``: the same sticky actions, episode cap
    and task as the runs it is compared with)."""
    path = out / "zero_shot.json"
    if path.exists():
        return [float(r) for r in json.loads(path.read_text())["returns"]]
    policy = load_policy(out / "pretrain" if pretrain_dir is None else pretrain_dir,
                         epsilon=exp.train.eval_epsilon)
    returns = evaluate_policy(
        policy, exp.train.env_id, exp.zero_shot_episodes, seed=exp.train.seed + 2_000_003,
        frame_stack=exp.train.frame_stack, env_kwargs=eval_env_kwargs(train_env_kwargs(exp.train)),
    )
    data = {"env_id": exp.train.env_id, "pretrain_env_id": exp.pretrain.env_id,
            "task": exp.train.task,
            "returns": [float(r) for r in returns], "mean": float(np.mean(returns))}
    tmp = path.with_name(".zero_shot.json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return [float(r) for r in returns]


def run_experiment(exp: BTExperiment, out_dir: str | Path) -> Path:
    """Run every stage of ``exp`` under ``out_dir`` and write the report.

    Returns:
        The path of ``report.md``.

    Raises:
        SpaceMismatchError: a strategy uses pi_p and the pretraining and transfer envs differ
            in spaces (:func:`check_transfer_spaces`, before anything runs). Whatever the
            runs raise.
    """
    if exp.suite:
        from rltransfer.experiments.bt_suite import run_suite

        return run_suite(exp, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    needs_pretraining = any(STRATEGIES[s].uses_pretraining for s in exp.strategies)
    if needs_pretraining:
        check_transfer_spaces(exp)
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
                  f"seeds on {exp.train.env_id}, {exp.train.total_env_steps} env steps each, "
                  f"{exp.workers} at a time")
    def done(count: int, total: int, result: tuple[str, float, float]) -> None:
        run_dir, ret, secs = result
        console.print(f"    [{count}/{total}] {run_dir}: final return {ret:.3f} ({secs:.0f}s)")

    run_jobs(train_quiet, configs, exp.workers, on_done=done)
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
    stratified-bootstrap 95% CIs (rliable), with learning curves. The description names the
    env of each stage (pretraining: read from ``out/pretrain/config.json`` when present).

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
    pre_path = out / "pretrain" / "config.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else None
    stages = (
        f"Pretraining (reward-free, {pre['intrinsic']}, {pre['total_env_steps']} env steps) on "
        f"`{pre['env_id']}`; transfer runs on `{cfg['env_id']}`"
        + (" (another env of the same spaces)" if pre["env_id"] != cfg["env_id"] else "")
        if pre is not None else f"Environment `{cfg['env_id']}`"
    )
    description = (
        f"{stages}, task `{cfg['task']}`; {cfg['total_env_steps']} env "
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
        task_names=[f"{cfg['env_id']} {cfg['task']}"],
        description=description, baseline=BASELINE,
    )
