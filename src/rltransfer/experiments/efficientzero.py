"""EfficientZero presets as :class:`~rltransfer.agents.efficientzero.train.EZTrainConfig`.

* :func:`ez_small` — MinAtar Breakout on a CPU: small network, 8 simulations, batch 64,
  targets from the target network's value (no search at bootstrap positions) to keep
  reanalysis cheap, no data augmentation (a 4-pixel shift is 40% of a 10x10 MinAtar frame,
  where one pixel is one game cell) and the ``small`` preset's latent min-max normalisation.
  A smoke-sized run that learns on a laptop.
* :func:`ez_atari100k` — the paper's Atari100k settings (Ye et al. 2021; XTRA Table 4):
  96x96 RGB, 4 stacked frames, frame skip 4 (the ALE v5 default), no sticky actions,
  terminal on life loss, reward clipping, discount 0.997^4 per agent step, 50 simulations,
  batch 256, 100k env steps with one update per env step, 2000 warm-up env steps, priority
  alpha 0.6 / beta 0.4 -> 1, self-play network refreshed every 100 updates, root-value
  targets and full policy reanalysis, random-shift (pad 4) + intensity augmentation of the
  observations and consistency targets, no latent min-max normalisation and uniformly random
  actions before the first update (all as the public EfficientZero code). A GPU job
  (REFERENCE.md: ~20 s per training step at batch 256 on a 2-core CPU).

The ``ez-*`` recipes of ``rltransfer run`` are :class:`EZExperiment` s built from these
(:func:`ez_small_experiment`, :func:`ez_atari100k_experiment`): ``num_seeds`` runs of one
config, then a report (:func:`rltransfer.experiments.efficientzero.run_ez_experiment`).

Run an EfficientZero experiment (:class:`~rltransfer.experiments.efficientzero.EZExperiment`):
``num_seeds`` runs of one config, then a report.

Layout of an experiment directory::

    <out>/runs/seed_<k>/   one EfficientZero run each (seed ``train.seed + k``)
    <out>/report.md, *.png the final returns (IQM / mean / median, 95% CIs) and curves

Every run is resumable: finished runs are skipped, interrupted ones resume from their last
checkpoint, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from rltransfer.agents.efficientzero.config import EfficientZeroConfig, EZTrainConfig
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.core.config import ConfigError
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.experiments.pool import run_jobs


@dataclass
class EZExperiment:
    """``num_seeds`` EfficientZero runs of one config, then a report.

    Attributes:
        name: the report's title and the label of its runs.
        train: the run config; seed ``k`` (``0 .. num_seeds - 1``) trains with seed
            ``train.seed + k`` in ``<out>/runs/seed_<k>`` (``run_dir`` is set per seed).
        num_seeds: runs.
        workers: runs in parallel (processes; 1 runs them one after another here).
        description: one line on what the experiment is.

    Raises:
        ConfigError: ``num_seeds`` or ``workers`` below 1 (at construction).
    """

    name: str
    train: EZTrainConfig
    num_seeds: int = 1
    workers: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if self.num_seeds < 1 or self.workers < 1:
            raise ConfigError(
                f"{self.name}: num_seeds and workers must be >= 1, got {self.num_seeds}, "
                f"{self.workers}"
            )


def ez_small(run_dir: str = "runs/ez-small", seed: int = 0, device: str = "cpu",
             env_id: str = "MinAtar/Breakout-v1", total_env_steps: int = 20_000) -> EZTrainConfig:
    """A CPU-sized EfficientZero run on MinAtar (see the module docstring)."""
    discount = 0.99
    learner = dataclasses.replace(EfficientZeroConfig(), discount=discount, lr_warmup_updates=200,
                                  augmentation="none")
    return EZTrainConfig(
        env_id=env_id,
        num_envs=8,
        total_env_steps=total_env_steps,
        seed=seed,
        run_dir=run_dir,
        net_preset="small",
        mcts=MCTSConfig(num_simulations=8, discount=discount,
                        value_prefix_horizon=learner.value_prefix_horizon),
        learner=learner,
        # a quarter of the policy targets reanalysed by a fresh search: the search is the
        # costliest part of an update on a CPU (docs/benchmarks.md)
        reanalyse=ReanalyseConfig(reanalyse_fraction=0.25, value_target="network"),
        replay_capacity_env_steps=total_env_steps,
        batch_size=64,
        updates_per_env_step=0.25,
        learning_starts_env_steps=1_000,
        selfplay_update_interval_updates=20,
        eval_every_env_steps=4_000,
        eval_episodes=8,
        checkpoint_every_env_steps=5_000,
        device=device,
    )


def ez_atari100k(game: str = "MsPacman", run_dir: str | None = None, seed: int = 0,
                 device: str = "cuda", num_envs: int = 8) -> EZTrainConfig:
    """EfficientZero's Atari100k settings on ``ALE/<game>-v5`` (see the module docstring)."""
    discount = 0.997**4
    learner = dataclasses.replace(EfficientZeroConfig(), discount=discount,
                                  augmentation="shift_intensity", augmentation_shift_pad=4,
                                  augmentation_intensity_scale=0.05)
    return EZTrainConfig(
        env_id=f"ALE/{game}-v5",
        num_envs=num_envs,
        total_env_steps=100_000,
        seed=seed,
        run_dir=run_dir or f"runs/ez-atari100k-{game}-{seed}",
        frame_stack=4,
        frame_size=96,
        grayscale=False,
        sticky_action_prob=0.0,
        terminal_on_life_loss=True,
        max_episode_frames=108_000,
        clip_rewards=True,
        net_preset="atari",
        mcts=MCTSConfig(num_simulations=50, discount=discount,
                        value_prefix_horizon=learner.value_prefix_horizon),
        learner=learner,
        reanalyse=ReanalyseConfig(reanalyse_fraction=1.0, value_target="root",
                                  off_policy_tau=0.3),
        replay_capacity_env_steps=100_000,
        batch_size=256,
        updates_per_env_step=1.0,
        learning_starts_env_steps=2_000,
        selfplay_update_interval_updates=100,
        eval_every_env_steps=10_000,
        eval_episodes=32,
        checkpoint_every_env_steps=10_000,
        device=device,
    )


def ez_small_experiment() -> EZExperiment:
    """The ``ez-small`` recipe: :func:`ez_small` (MinAtar Breakout, 20k env steps), 1 seed."""
    return EZExperiment(
        name="ez-small", train=ez_small(),
        description="EfficientZero on MinAtar Breakout at CPU scale (small network, 8 "
                    "simulations, 20k env steps).",
    )


def ez_atari100k_experiment() -> EZExperiment:
    """The ``ez-atari100k`` recipe: :func:`ez_atari100k` on Ms. Pac-Man, 1 seed, on the GPU
    when one is visible at build time, else on the CPU (slow: a smoke run)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return EZExperiment(
        name="ez-atari100k", train=ez_atari100k(run_dir="runs/ez-atari100k", device=device),
        description="EfficientZero's Atari100k settings on Ms. Pac-Man (a GPU job).",
    )


console = Console(stderr=True)


def seed_config(exp: EZExperiment, seed: int, out: Path) -> EZTrainConfig:
    """The config of run ``seed`` (``0 .. num_seeds - 1``): seed ``exp.train.seed + seed``,
    run directory ``<out>/runs/seed_<seed>``."""
    return dataclasses.replace(exp.train, seed=exp.train.seed + seed,
                               run_dir=f"{out}/runs/seed_{seed}")


def _train_quiet(cfg: EZTrainConfig) -> tuple[str, float, float]:
    from rltransfer.agents.efficientzero.train import train_efficientzero

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
