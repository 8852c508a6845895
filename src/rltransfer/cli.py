"""Command line: ``rltransfer pretrain | pretrain-encoder | pretrain-images | train |
train-sac | train-ez | train-xtra-teacher | pretrain-xtra | finetune-xtra | evaluate | report |
run | demo``.

Every flag maps to a typed config field (tyro); ``rltransfer <verb> --help`` lists them.
Errors the user can fix (:class:`rltransfer.errors.UserError`: unknown env, recipe or task,
bad flag values, mismatched checkpoint, conflicting run directory, missing optional
dependency; and a missing file) end with one message and exit status 2, never a traceback.
Any other exception (a programming error, even a ``KeyError`` or ``ValueError``) keeps its
traceback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from rltransfer.agents.efficientzero.config import EZTrainConfig
from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.agents.r2d2.suites import apply_suite_defaults
from rltransfer.agents.sac.config import SACTrainConfig
from rltransfer.errors import UserError
from rltransfer.methods.encoder_pretraining.image_classification import ImageClassificationConfig
from rltransfer.methods.encoder_pretraining.inverse_dynamics import InverseDynamicsConfig
from rltransfer.methods.reward_free import PRETRAIN_DEFAULTS, pretrain_reward_free
from rltransfer.methods.xtra.config import DistillConfig, TeacherConfig
from rltransfer.methods.xtra.finetune import FinetuneConfig

Flat = tyro.conf.arg(name="")
"""Flags of a verb's config without a ``--cfg.`` prefix (nested ones keep theirs)."""


def pretrain(cfg: Annotated[TrainConfig, Flat] = PRETRAIN_DEFAULTS) -> None:
    """Reward-free pretraining: the agent learns from an intrinsic reward only."""
    result = pretrain_reward_free(cfg)
    print(f"pretrained policy: {result.run_dir / 'final'} "
          f"(task return of its greedy policy: {result.final_return_mean:.3f})")


def train_cmd(cfg: Annotated[TrainConfig, Flat]) -> None:
    """Train on the task reward: from scratch, with weight init, or with Behavior Transfer."""
    from rltransfer.agents.r2d2.train import train

    result = train(cfg)
    print(f"run {result.run_dir}: {result.env_steps} env steps, {result.num_updates} updates, "
          f"final evaluation return {result.final_return_mean:.3f}")


def pretrain_encoder(cfg: Annotated[InverseDynamicsConfig, Flat]) -> None:
    """Pretrain a pixel encoder by inverse dynamics on random-action data (Kadavath et al.)."""
    from rltransfer.methods.encoder_pretraining.inverse_dynamics import pretrain_inverse_dynamics

    print(f"pretrained encoder: {pretrain_inverse_dynamics(cfg)}")


def pretrain_images(cfg: Annotated[ImageClassificationConfig, Flat]) -> None:
    """Pretrain a grouped-conv pixel encoder by image classification on an image folder."""
    from rltransfer.methods.encoder_pretraining.image_classification import (
        pretrain_image_classification,
    )

    print(f"pretrained encoder: {pretrain_image_classification(cfg)}")


def train_sac_cmd(cfg: Annotated[SACTrainConfig, Flat]) -> None:
    """Train pixel SAC on DeepMind Control, optionally from a pretrained encoder (whose
    architecture and image geometry are the defaults then)."""
    from rltransfer.agents.sac.config import config_from_pretrained_encoder
    from rltransfer.agents.sac.train import train_sac

    if cfg.init_encoder_from is not None:
        # the defaults came from the checkpoint: a difference is a flag the user set
        cfg = config_from_pretrained_encoder(cfg, strict=True)
    result = train_sac(cfg)
    print(f"run {result.run_dir}: {result.env_steps} env steps, {result.num_updates} updates, "
          f"final evaluation return {result.final_return_mean:.3f}")


def train_ez_cmd(cfg: Annotated[EZTrainConfig, Flat]) -> None:
    """Train EfficientZero (batched MCTS over a learned world model)."""
    from rltransfer.agents.efficientzero.train import train_efficientzero

    result = train_efficientzero(cfg)
    print(f"run {result.run_dir}: {result.env_steps} env steps, {result.num_updates} updates, "
          f"final evaluation return {result.final_return_mean:.3f}")


def train_xtra_teacher_cmd(cfg: Annotated[TeacherConfig, Flat]) -> None:
    """XTRA teacher: EfficientZero trained offline on one dataset (MuZero Reanalyze)."""
    from rltransfer.methods.xtra.teachers import train_teacher

    result = train_teacher(cfg)
    print(f"teacher {result.run_dir}: {result.num_updates} updates, final evaluation return "
          f"{result.final_return_mean:.3f}")


def pretrain_xtra_cmd(cfg: Annotated[DistillConfig, Flat]) -> None:
    """XTRA pretraining: distil the teachers into one multi-task student."""
    from rltransfer.methods.xtra.distill import distill_student, student_vs_teacher

    result = distill_student(cfg)
    print(f"student {result.run_dir}: {result.num_updates} updates")
    for row in student_vs_teacher(result.run_dir):
        print(f"  {row['task']}: student {row['student']:.3f} vs teacher "
              f"{row['teacher']:.3f}{'  (' + row['deviation'] + ')' if row['deviation'] else ''}")


def finetune_xtra_cmd(cfg: Annotated[FinetuneConfig, Flat]) -> None:
    """XTRA finetuning: online EfficientZero on the target with the offline sources."""
    from rltransfer.methods.xtra.finetune import finetune_xtra

    result = finetune_xtra(cfg)
    print(f"run {result.run_dir}: {result.env_steps} env steps, {result.num_updates} updates, "
          f"final evaluation return {result.final_return_mean:.3f}")


@dataclass
class EvaluateArgs:
    """Score a checkpoint (or a run's final policy) on a task's reward."""

    policy: Annotated[str, tyro.conf.Positional]
    """Checkpoint or run directory."""
    env_id: str | None = None
    """Environment (default: the one the policy was trained on)."""
    task: str | None = None
    episodes: int = 10
    seed: int = 12_345
    epsilon: float = 0.0
    output: str | None = None
    """Write the returns as JSON here."""




def evaluate(args: Annotated[EvaluateArgs, Flat]) -> None:
    """Zero-shot or final evaluation of a saved policy, on its training env's settings (except
    the evaluation protocol's documented differences) unless ``--env-id`` names another env."""
    from rltransfer.api import evaluate as evaluate_saved
    from rltransfer.api import trained_env_settings

    returns = evaluate_saved(args.policy, env_id=args.env_id, task=args.task,
                             episodes=args.episodes, seed=args.seed, epsilon=args.epsilon)
    env_id, _, _ = trained_env_settings(args.policy, args.env_id, args.task)
    summary = {"policy": args.policy, "env_id": env_id, "task": args.task,
               "returns": [float(r) for r in returns], "mean": float(np.mean(returns)),
               "std": float(np.std(returns))}
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))


@dataclass
class ReportArgs:
    """Rebuild the report of an experiment directory from its runs."""

    experiment_dir: Annotated[str, tyro.conf.Positional]


def report(args: Annotated[ReportArgs, Flat]) -> None:
    """Write ``report.md`` with IQM/mean/median and 95% CIs, and learning curves."""
    from rltransfer.experiments.behavior_transfer import write_experiment_report

    out = Path(args.experiment_dir)
    runs = out / "runs"
    if not runs.is_dir():
        raise FileNotFoundError(f"{out} has no runs/ directory: is it an experiment directory?")
    strategies = sorted(p.name for p in runs.iterdir() if p.is_dir())
    num_seeds = max(len(list((runs / s).glob("seed_*"))) for s in strategies)
    zero = out / "zero_shot.json"
    zero_shot = json.loads(zero.read_text())["returns"] if zero.exists() else None
    path = write_experiment_report(out, title=out.name, strategies=strategies,
                                   num_seeds=num_seeds, zero_shot_returns=zero_shot)
    print(path)


@dataclass
class RunArgs:
    """Run a named experiment recipe (pretraining, every strategy over seeds, report)."""

    recipe: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="RECIPE")] = None
    """A recipe name; ``rltransfer run --list`` lists them (Behavior Transfer: bt-*, encoder
    pretraining for pixel SAC: ik-*, EfficientZero: ez-*, XTRA: xtra-*)."""
    list: Annotated[bool, tyro.conf.FlagCreatePairsOff] = False
    """Print every recipe with its kind, runtime on 2 CPU cores and description, and exit."""
    out_dir: str | None = None
    """Experiment directory (default: runs/<recipe>)."""
    num_seeds: int | None = None
    workers: int | None = None
    pretrain_env_steps: int | None = None
    """Reward-free pretraining env steps (bt-*) or IK transitions (ik-*)."""
    train_env_steps: int | None = None
    strategies: tuple[str, ...] | None = None


def run(args: Annotated[RunArgs, Flat]) -> None:
    """Run a recipe end to end (re-running the same command resumes it), or list them."""
    from rltransfer.core.config import ConfigError
    from rltransfer.experiments import RecipeOverrides, recipe_table, run_recipe

    if args.list:
        print(recipe_table())
        return
    if args.recipe is None:
        raise ConfigError("name a recipe (rltransfer run NAME), or list them with "
                          "rltransfer run --list")
    overrides = RecipeOverrides(
        num_seeds=args.num_seeds, workers=args.workers,
        pretrain_env_steps=args.pretrain_env_steps, train_env_steps=args.train_env_steps,
        strategies=args.strategies,
    )
    run_recipe(args.recipe, overrides, args.out_dir)


@dataclass
class DemoArgs:
    """The small default experiment: bt-minigrid, about 10 minutes on 2 CPU cores."""

    out_dir: str = "runs/demo"
    num_seeds: int | None = None
    workers: int | None = None
    pretrain_env_steps: int | None = None
    train_env_steps: int | None = None
    strategies: tuple[str, ...] | None = None


def demo(args: Annotated[DemoArgs, Flat]) -> None:
    """Pretrain without reward on MiniGrid, transfer five ways, 3 seeds each, report."""
    run(RunArgs(recipe="bt-minigrid", **dataclasses.asdict(args)))


def env_id_flag(argv: list[str]) -> str | None:
    """The value of ``--env-id`` (or ``--env_id``, ``--env-id=ID``) in ``argv``; ``None``
    if absent."""
    for i, arg in enumerate(argv):
        for flag in ("--env-id", "--env_id"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
    return None


def with_suite_defaults(verb: Any, base: TrainConfig, argv: list[str]) -> Any:
    """``verb`` (a function of one :class:`TrainConfig`) with its flags defaulting to
    ``base`` plus the R2D2 defaults of the suite of the env ``argv`` names
    (:func:`rltransfer.agents.r2d2.suites.apply_suite_defaults`; ``base.env_id`` without
    ``--env-id``).

    Flags the user passes override these defaults, so an explicit value always wins; the run
    records the resolved values in its ``config.json``. An env id of no suite (or DMC) keeps
    ``base``: the run then stops with its usual message.
    """
    from rltransfer.errors import UserError

    try:
        default = apply_suite_defaults(base, env_id_flag(argv) or base.env_id)
    except UserError:
        default = base

    def command(cfg: Annotated[TrainConfig, Flat] = default) -> None:
        verb(cfg)

    command.__doc__ = verb.__doc__
    command.__name__ = verb.__name__
    return command


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--<name>`` (dashes or underscores, ``--name VALUE`` or ``--name=VALUE``)
    in ``argv``; ``None`` if absent."""
    for i, arg in enumerate(argv):
        for flag in (f"--{name}", f"--{name.replace('-', '_')}"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
    return None


def with_encoder_defaults(verb: Any, argv: list[str]) -> Any:
    """``verb`` (a function of one :class:`SACTrainConfig`) whose defaults, when ``argv`` has
    ``--init-encoder-from PATH``, are the encoder architecture and image geometry recorded in
    that checkpoint (:func:`rltransfer.agents.sac.config.config_from_pretrained_encoder`): flags the
    user passes override them, and ``verb`` reports a passed flag that contradicts the
    checkpoint as one error. An unreadable checkpoint keeps the plain defaults (the run then
    stops with its message)."""
    from rltransfer.agents.sac.config import config_from_pretrained_encoder
    from rltransfer.errors import UserError

    default = SACTrainConfig()
    path = flag_value(argv, "init-encoder-from")
    if path is not None and path != "None":
        try:
            default = config_from_pretrained_encoder(SACTrainConfig(init_encoder_from=path))
        except (UserError, FileNotFoundError):
            pass

    def command(cfg: Annotated[SACTrainConfig, Flat] = default) -> None:
        verb(cfg)

    command.__doc__ = verb.__doc__
    command.__name__ = verb.__name__
    return command


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rltransfer`` command.

    Raises:
        SystemExit: status 2 after one ``rltransfer: error: ...`` line on stderr for a
            :class:`~rltransfer.errors.UserError` or a missing file (``FileNotFoundError``);
            tyro's own exits for bad flags. Any other exception propagates with its traceback.
    """
    logging.basicConfig(level=os.environ.get("RLTRANSFER_LOG", "WARNING"))
    cli_args = sys.argv[1:] if argv is None else list(argv)
    try:
        tyro.extras.subcommand_cli_from_dict(
            {
                "pretrain": with_suite_defaults(pretrain, PRETRAIN_DEFAULTS, cli_args),
                "pretrain-encoder": pretrain_encoder,
                "pretrain-images": pretrain_images,
                "train": with_suite_defaults(train_cmd, TrainConfig(), cli_args),
                "train-sac": with_encoder_defaults(train_sac_cmd, cli_args),
                "train-ez": train_ez_cmd,
                "train-xtra-teacher": train_xtra_teacher_cmd,
                "pretrain-xtra": pretrain_xtra_cmd,
                "finetune-xtra": finetune_xtra_cmd,
                "evaluate": evaluate,
                "report": report,
                "run": run,
                "demo": demo,
            },
            args=argv,
            prog="rltransfer",
            description="rltransfer: pretrain RL agents and transfer what they learned.",
        )
    except (UserError, FileNotFoundError) as e:
        print(f"rltransfer: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
