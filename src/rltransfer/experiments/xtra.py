"""XTRA recipes (Xu et al. 2023): the whole pipeline as one resumable experiment.

:class:`XTRAExperiment` runs, under ``<out>/``:

1. ``sources/<game>/run``: an EfficientZero run per source task (``source_run`` with the
   game's env id and ``checkpoint_replay=True``), and ``sources/<game>/dataset``: its replay's
   complete episodes as an :class:`~rltransfer.replay.offline.OfflineDataset`;
2. ``teachers/<game>``: one teacher per source, offline on its dataset
   (``teacher_source="offline"``), or the data run itself (``"data-run"``: a deviation);
3. ``student``: the distilled multi-task student;
4. ``runs/<variant>/seed_<k>``: the target task finetuned per variant and seed, all with the
   same env-step budget (:data:`VARIANTS`), and the student's zero-shot returns on the target;
5. ``report.md``: final returns (IQM / mean / median, 95% CIs, every evaluation's curve),
   the eta curves, the student-vs-teacher table and a plain verdict against ``scratch``.

Every stage is resumable (finished runs are skipped, interrupted ones resume), so re-running
the same command continues where it stopped. ``workers`` runs that many sources (data run,
dataset, teacher) at a time, then that many finetuning runs; the student is one process.

Recipes: ``xtra-minatar`` (:func:`xtra_minatar`: target ``MinAtar/Breakout-v1``, sources
Asterix, Freeway, Seaquest, SpaceInvaders, ``ez-small``-style runs, XTRA vs plain finetune vs
scratch, 3 seeds) and ``xtra-atari100k`` (:func:`xtra_atari100k`: the paper's Shooter / Maze
leave-one-out sets or its 8-game diverse set, 100k env steps, batch 256 + 256; a GPU job).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console

from rltransfer.agents.efficientzero.config import EZTrainConfig, ez_env_kwargs
from rltransfer.core.config import ConfigError
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.experiments.efficientzero import ez_atari100k, ez_small
from rltransfer.methods.xtra.config import DistillConfig, OfflineStageConfig, TeacherConfig
from rltransfer.methods.xtra.finetune import FinetuneConfig

__all__ = ["ATARI_SETS", "VARIANTS", "XTRAExperiment", "run_xtra_experiment",
           "variant_config", "xtra_atari100k", "xtra_minatar"]

HGF = ("representation", "dynamics", "prediction")

VARIANTS: dict[str, str] = {
    "xtra": "student h+g+f, cross-task data, gradient task weights",
    "finetune": "student h+g+f, no cross-task data (plain finetuning)",
    "scratch": "EfficientZero from a fresh init, no cross-task data",
    "xtra-h": "student h only, cross-task data",
    "xtra-hg": "student h+g, cross-task data",
    "xtra-frozen-h": "student h+g+f with h frozen, cross-task data",
    "xtra-no-pretrain": "fresh init, cross-task data (w/o pretraining)",
    "xtra-constant": "student h+g+f, cross-task data, eta = 1 (w/o task weights)",
}
"""The transfer variants and ablations (paper Table 1's columns)."""

ATARI_SETS: dict[str, tuple[str, ...]] = {
    "shooter": ("Assault", "Carnival", "Centipede", "DemonAttack", "Phoenix"),
    "maze": ("Alien", "Amidar", "BankHeist", "MsPacman", "WizardOfWor"),
    "diverse-pretrain": ("Carnival", "Centipede", "Phoenix", "Pooyan", "Riverraid",
                         "VideoPinball", "WizardOfWor", "YarsRevenge"),
}
"""The paper's game sets: Table 1 leave-one-out categories, Table 2's 8 pretraining games."""


@dataclass
class XTRAExperiment:
    """The XTRA pipeline (module docstring).

    Attributes:
        name: the report's title.
        target: the target task's env id; sources: the source env ids.
        source_run: the data runs' EfficientZero config (env id and run dir set per source).
        stage: the offline stages' shared settings (teachers and student).
        finetune: the target runs' template (``train`` env id, budget, shared space).
        variants: keys of :data:`VARIANTS`; the verdict compares each with ``scratch``.
        num_seeds / workers: seeds per variant; parallel finetuning runs.
        teacher_source: ``"offline"`` (the paper) or ``"data-run"`` (deviation).
        zero_shot_episodes: episodes of the student's zero-shot evaluation (0: none).
    """

    name: str
    target: str
    sources: tuple[str, ...]
    source_run: EZTrainConfig
    stage: OfflineStageConfig = field(default_factory=OfflineStageConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    variants: tuple[str, ...] = ("xtra", "finetune", "scratch")
    num_seeds: int = 3
    workers: int = 1
    teacher_source: Literal["offline", "data-run"] = "offline"
    zero_shot_episodes: int = 8
    description: str = ""

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or self.num_seeds < 1 or self.workers < 1 or not self.sources:
            raise ConfigError(
                f"{self.name}: need sources, num_seeds/workers >= 1 and variants among "
                f"{sorted(VARIANTS)} (unknown: {unknown})")


def _game(env_id: str) -> str:
    return env_id.split("/")[-1].split("-")[0]


def variant_config(exp: XTRAExperiment, variant: str, seed: int, out: Path) -> FinetuneConfig:
    """The finetuning config of ``variant`` and seed ``seed`` (``0 ..``) under ``out``."""
    data = tuple(str(out / "sources" / _game(s) / "dataset") for s in exp.sources)
    student = str(out / "student")
    train = dataclasses.replace(exp.finetune.train, env_id=exp.target,
                                seed=exp.finetune.train.seed + seed,
                                run_dir=str(out / "runs" / variant / f"seed_{seed}"),
                                init_from=None, transfer=(), freeze=(),
                                random_warmup_actions=True)
    pre = dataclasses.replace(train, init_from=student, transfer=HGF,
                              random_warmup_actions=False)
    cfg = dataclasses.replace(exp.finetune, sources=data, task_weights="gradient")
    choices = {
        "xtra": dataclasses.replace(cfg, train=pre),
        "finetune": dataclasses.replace(cfg, train=pre, sources=()),
        "scratch": dataclasses.replace(cfg, train=train, sources=()),
        "xtra-h": dataclasses.replace(cfg, train=dataclasses.replace(
            pre, transfer=("representation",))),
        "xtra-hg": dataclasses.replace(cfg, train=dataclasses.replace(
            pre, transfer=("representation", "dynamics"))),
        "xtra-frozen-h": dataclasses.replace(cfg, train=dataclasses.replace(
            pre, freeze=("representation",))),
        "xtra-no-pretrain": dataclasses.replace(cfg, train=train),
        "xtra-constant": dataclasses.replace(cfg, train=pre, task_weights="constant"),
    }
    return choices[variant]


MINATAR_DATA_ENV_STEPS = 22_000
"""Env steps of each ``xtra-minatar`` data run. MinAtar Freeway's episodes last 2,500 steps, so
with 8 envs a replay holds its first complete episodes only after 20,000 env steps (a dataset
needs complete episodes); 22,000 leaves 8 of them."""


def xtra_minatar() -> XTRAExperiment:
    """``xtra-minatar``: target Breakout, sources Asterix / Freeway / Seaquest /
    SpaceInvaders (MinAtar ``-v1``, union of 6 actions, frames padded to 10 channels),
    ``ez-small`` data runs of :data:`MINATAR_DATA_ENV_STEPS` env steps, teachers and student
    of 1,000 updates each, finetuning 10k env steps per run (2,250 updates: task weights
    measured on 11 of every 112 updates from update 225), 3 seeds of XTRA / plain finetune /
    scratch, 2 workers.

    Sized to about 2 hours on an idle 2-core CPU from per-stage timings of this code
    (EfficientZero ~0.038 s per env step after the warm-up, XTRA finetuning ~0.11 s, teacher
    0.13 s and student 0.18 s per update, an 8-episode Freeway evaluation 27 s): about 35 min
    for the sources (2 at a time), 4 min for the student, 45 min for the 9 finetuning runs,
    1.3x margin for later, longer episodes and a shared CPU."""
    sources = tuple(f"MinAtar/{g}-v1" for g in ("Asterix", "Freeway", "Seaquest",
                                                "SpaceInvaders"))
    source_run = dataclasses.replace(ez_small(total_env_steps=MINATAR_DATA_ENV_STEPS),
                                     checkpoint_replay=True, keep_checkpoints=1,
                                     eval_every_env_steps=11_000)
    train = dataclasses.replace(ez_small(total_env_steps=10_000), action_space="minatar-union",
                                pad_channels=10, keep_checkpoints=1)
    stage = OfflineStageConfig(channels=10, num_updates=1_000, eval_every_updates=1_000,
                               checkpoint_every_updates=500)
    return XTRAExperiment(
        name="xtra-minatar", target="MinAtar/Breakout-v1", sources=sources,
        source_run=source_run, stage=stage, finetune=FinetuneConfig(train=train),
        num_seeds=3, workers=2,
        description="XTRA on MinAtar: 4 source games distilled into one union-width "
                    "EfficientZero, finetuned on Breakout with cross-task data vs plain "
                    "finetuning vs scratch (equal env steps).")


def xtra_atari100k(category: Literal["shooter", "maze", "diverse"] = "shooter",
                   target: str | None = None) -> XTRAExperiment:
    """``xtra-atari100k``: Atari100k (100k env steps, batch 256 target + 256 offline, the
    ``atari-l`` network, 18-action union). ``shooter`` / ``maze``: leave one out of the
    category (default target: its first game); ``diverse``: Table 2's 8 pretraining games,
    target Assault (or ``target``). A GPU job."""
    if category == "diverse":
        games, tgt = ATARI_SETS["diverse-pretrain"], target or "Assault"
    else:
        games = ATARI_SETS[category]
        tgt = target or games[0]
        games = tuple(g for g in games if g != tgt)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = ez_atari100k(tgt, device=device)
    train = dataclasses.replace(base, net_preset="atari-l", action_space="atari-full",
                                keep_checkpoints=1)
    stage = OfflineStageConfig(net_preset="atari-l", channels=None, batch_size=256,
                               num_updates=100_000, mcts=base.mcts, learner=base.learner,
                               reanalyse=base.reanalyse, eval_every_updates=20_000,
                               checkpoint_every_updates=10_000, device=device)
    return XTRAExperiment(
        name=f"xtra-atari100k-{category}", target=f"ALE/{tgt}-v5",
        sources=tuple(f"ALE/{g}-v5" for g in games),
        source_run=dataclasses.replace(base, checkpoint_replay=True, keep_checkpoints=1),
        stage=stage, finetune=FinetuneConfig(train=train, offline_batch_size=256),
        num_seeds=5, description=f"XTRA Atari100k ({category}), target {tgt}.")


console = Console(stderr=True)


@dataclass(frozen=True)
class _SourceJob:
    """One source's data run, dataset and teacher (a picklable job of :func:`run_jobs`)."""

    exp: XTRAExperiment
    index: int
    out: str


def _prepare_source(job: _SourceJob) -> tuple[str, str]:
    """The data run, dataset and teacher of source ``job.index`` (each skipped when done);
    returns ``(dataset, teacher)`` directories."""
    from rltransfer.agents.efficientzero.train import train_efficientzero
    from rltransfer.methods.xtra.datasets import dataset_from_efficientzero_run
    from rltransfer.methods.xtra.teachers import train_teacher

    exp, k, out = job.exp, job.index, Path(job.out)
    env_id = exp.sources[k]
    home = out / "sources" / _game(env_id)
    run = home / "run"
    train_efficientzero(dataclasses.replace(
        exp.source_run, env_id=env_id, run_dir=str(run), seed=exp.source_run.seed + k))
    data = home / "dataset"
    if not (data / "meta.json").is_file():
        dataset_from_efficientzero_run(run).save(data)
    if exp.teacher_source == "data-run":
        return str(data), str(run)
    teacher = out / "teachers" / _game(env_id)
    train_teacher(TeacherConfig(**_stage_fields(exp.stage, k), run_dir=str(teacher),
                                dataset=str(data)))
    return str(data), str(teacher)


def _prepare_sources(exp: XTRAExperiment, out: Path) -> tuple[list[str], list[str]]:
    """Data runs, datasets and teachers of every source, ``exp.workers`` sources at a time
    (each stage skipped when done)."""
    from rltransfer.experiments.pool import run_jobs

    jobs = [_SourceJob(exp, k, str(out)) for k in range(len(exp.sources))]
    done = run_jobs(_prepare_source, jobs, exp.workers,
                    on_done=lambda i, n, r: console.print(f"    [{i}/{n}] source {r[0]}"))
    return [d for d, _ in done], [t for _, t in done]


def _stage_fields(stage: OfflineStageConfig, seed_offset: int) -> dict[str, Any]:
    fields = {f.name: getattr(stage, f.name) for f in dataclasses.fields(OfflineStageConfig)}
    fields.pop("run_dir")
    fields["seed"] = stage.seed + seed_offset
    return fields


def _finetune(cfg: FinetuneConfig) -> tuple[str, float, float]:
    from rltransfer.methods.xtra.finetune import finetune_xtra

    result = finetune_xtra(cfg)
    return str(result.run_dir), result.final_return_mean, result.wall_seconds


def run_xtra_experiment(exp: XTRAExperiment, out_dir: str | Path) -> Path:
    """Run every stage of ``exp`` under ``out_dir`` (resuming) and write ``report.md``.

    Returns:
        The path of ``report.md``.
    """
    from rltransfer.experiments.pool import run_jobs
    from rltransfer.methods.xtra.distill import distill_student
    from rltransfer.methods.xtra.finetune import zero_shot_returns
    from rltransfer.methods.xtra.report import xtra_sections

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]{exp.name}[/]: {len(exp.sources)} sources -> {exp.target}")
    datasets, teachers = _prepare_sources(exp, out)
    distill_student(DistillConfig(**_stage_fields(exp.stage, 0), run_dir=str(out / "student"),
                                  datasets=tuple(datasets), teachers=tuple(teachers)))
    zero_shot: dict[str, float] = {}
    if exp.zero_shot_episodes > 0:
        path = out / "zero_shot.json"
        if not path.is_file():
            t = dataclasses.replace(exp.finetune.train, env_id=exp.target)
            returns = zero_shot_returns(out / "student", exp.target, t.mcts,
                                        frame_stack=t.frame_stack or 1,
                                        episodes=exp.zero_shot_episodes, seed=t.seed + 77,
                                        env_kwargs=ez_env_kwargs(t))
            path.write_text(json.dumps([float(r) for r in returns]))
        zero_shot["zero-shot student"] = float(np.mean(json.loads(path.read_text())))
    configs = [variant_config(exp, v, k, out) for v in exp.variants
               for k in range(exp.num_seeds)]
    run_jobs(_finetune, configs, exp.workers,
             on_done=lambda i, n, r: console.print(f"    [{i}/{n}] {r[0]}: {r[1]:.3f} "
                                                   f"({r[2]:.0f}s)"))
    dirs = {v: [str(out / "runs" / v / f"seed_{k}") for k in range(exp.num_seeds)]
            for v in exp.variants}
    finals, curves = collect_runs(dirs)
    report = write_report(
        out / "report.md", exp.name, finals, learning_curves=curves,
        zero_shot=zero_shot or None, description=exp.description or None,
        baseline="scratch" if "scratch" in exp.variants else None,
        extra_sections=xtra_sections(out, dirs))
    console.print(f"    {report}")
    return report
