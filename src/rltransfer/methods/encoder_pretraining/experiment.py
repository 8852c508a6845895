"""Run an encoder-pretraining experiment
(:class:`~rltransfer.experiments.encoder_recipes.EncoderExperiment`):
inverse-dynamics (and image-classification) pretraining, pixel SAC with each encoder strategy
over seeds, report.

Layout of an experiment directory::

    <out>/pretrain/<task>/T_<n>/              one IK pretraining (its encoder/ is transferred)
    <out>/pretrain/<task>/T_<n>/clip_<d>/     ... per distraction clip (builtin distraction)
    <out>/pretrain/image_classification/      the grouped-conv image-classification encoder
    <out>/data/shapes/                        its synthetic images (when no folder is given)
    <out>/runs/<train task>/<strategy>/seed_<k>/   one SAC run each
    <out>/report.md, <out>/<train task>/report.md, *.png

Strategy names: ``scratch``; ``ik`` / ``ik_frozen`` (encoder pretrained on the same task);
``ik_from_<task>`` (cross-environment matrix); ``T_<n>`` (budget split: ``n`` agent steps of
IK data, the rest of the total on RL); ``image_classification`` / ``scratch_grouped`` (the
grouped encoder, pretrained on images or random).

Pretraining renders at the SAC runs' render size and centre-crops to their crop size (with
crop augmentation), and uses their frame stack, action repeat and distraction clip, so that
the encoder transfers with the image geometry RL sees.

Every step is resumable: a finished pretraining (its ``encoder/`` exists) and finished runs
are skipped, interrupted SAC runs resume from their last checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from rltransfer.agents.sac.config import SACTrainConfig, resolved_render_size
from rltransfer.agents.sac.train import train_sac
from rltransfer.evaluation.aggregate import aggregate_scores
from rltransfer.evaluation.plots import plot_interval_estimates
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.experiments.encoder_recipes import GROUPED_STRATEGIES, EncoderExperiment
from rltransfer.experiments.pool import run_jobs
from rltransfer.methods.encoder_pretraining.image_classification import (
    ImageClassificationConfig,
    pretrain_image_classification,
)
from rltransfer.methods.encoder_pretraining.image_classification_data import (
    generate_shape_images,
)
from rltransfer.methods.encoder_pretraining.inverse_dynamics import (
    InverseDynamicsConfig,
    pretrain_inverse_dynamics,
)

PretrainJob = InverseDynamicsConfig | ImageClassificationConfig
"""One pretraining of an experiment."""

console = Console(stderr=True)


def task_slug(env_id: str) -> str:
    """``"DMC/reacher-easy"`` -> ``"reacher-easy"`` (a folder / strategy name)."""
    return env_id.split("/", 1)[-1].replace("/", "_")


def distraction_seed(exp: EncoderExperiment, seed: int) -> int:
    """The distraction clip of RL seed ``seed`` (index ``0 .. num_seeds - 1``) and of the IK
    pretraining it loads: ``exp.distraction_seed + seed`` with the builtin clips (one clip per
    run), else ``exp.distraction_seed`` (a folder or file is the same clip for every seed)."""
    if exp.distraction == "builtin":
        return int(exp.distraction_seed) + int(seed)
    return int(exp.distraction_seed)


def _per_clip(exp: EncoderExperiment) -> bool:
    return exp.distraction == "builtin"


def _pretrain_dir(out: Path, task: str, transitions: int, clip: int | None = None) -> Path:
    base = out / "pretrain" / task_slug(task) / f"T_{transitions}"
    return base if clip is None else base / f"clip_{clip}"


def sac_input_size(sac: SACTrainConfig) -> int:
    """Side of the images the SAC encoder sees: the crop size with crop augmentation, else the
    render size."""
    if sac.agent.augmentation == "crop":
        return int(sac.agent.crop_size)
    return resolved_render_size(sac)


def ik_config(exp: EncoderExperiment, task: str, transitions: int, out: Path,
              clip: int | None = None) -> InverseDynamicsConfig:
    """The IK pretraining config of one (task, T[, clip]) cell: the SAC runs' encoder, frame
    stack, action repeat, render size, crop (centre crop to the SAC crop size with crop
    augmentation, none otherwise) and distraction clip (``clip``, default
    ``exp.distraction_seed``), so that the encoder transfers with RL's image geometry."""
    sac = exp.sac
    return dataclasses.replace(
        exp.ik, env_id=task, num_transitions=transitions, encoder=sac.encoder,
        frame_stack=sac.frame_stack, render_size=resolved_render_size(sac),
        crop_size=sac.agent.crop_size if sac.agent.augmentation == "crop" else None,
        action_repeat=sac.action_repeat, distraction=exp.distraction,
        distraction_seed=int(exp.distraction_seed if clip is None else clip),
        out_dir=str(_pretrain_dir(out, task, transitions, clip)), progress=False,
    )


def image_data_dir(exp: EncoderExperiment, out: Path) -> Path:
    """The image folder of the image-classification pretraining: ``exp.image_data_dir``, or
    the synthetic shapes under ``<out>/data/shapes``."""
    return Path(exp.image_data_dir) if exp.image_data_dir else out / "data" / "shapes"


def images_config(exp: EncoderExperiment, out: Path) -> ImageClassificationConfig:
    """The image-classification pretraining of the ``image_classification`` strategy: images
    of the SAC encoder's input size, ``F`` = the SAC frame stack (3 on DMC)."""
    frames = exp.sac.frame_stack or 3
    return dataclasses.replace(
        exp.images, data_dir=str(image_data_dir(exp, out)), image_size=sac_input_size(exp.sac),
        images_per_datapoint=frames, out_dir=str(out / "pretrain" / "image_classification"),
        progress=False,
    )


@dataclasses.dataclass(frozen=True)
class Cell:
    """One group of SAC runs (one per seed) of the report.

    ``init_from[k]`` is the encoder seed ``k`` loads (empty: a random encoder); ``grouped``
    cells use the experiment's image-classification encoder architecture."""

    train_task: str
    strategy: str
    rl_env_steps: int
    init_from: tuple[Path, ...] = ()
    freeze: bool = False
    offset_env_steps: int = 0  # agent steps spent on IK data before RL (budget split)
    grouped: bool = False


def plan(exp: EncoderExperiment, out: Path) -> tuple[list[PretrainJob], list[Cell]]:
    """The pretraining jobs (IK and image-classification configs) and RL cells of ``exp``
    (nothing is run)."""
    n = int(exp.sac.total_env_steps)
    pretrain_tasks = exp.pretrain_tasks or exp.train_tasks
    jobs: dict[Path, PretrainJob] = {}
    cells: list[Cell] = []

    def pretrained(task: str, transitions: int) -> tuple[Path, ...]:
        """One encoder per seed (the same one unless every seed has its own clip)."""
        paths = []
        for k in range(exp.num_seeds):
            clip = distraction_seed(exp, k) if _per_clip(exp) else None
            cfg = ik_config(exp, task, transitions, out, clip)
            jobs[Path(cfg.out_dir)] = cfg
            paths.append(Path(cfg.out_dir) / "encoder")
        return tuple(paths)

    for train_task in exp.train_tasks:
        if exp.budget_split_transitions:
            for t in exp.budget_split_transitions:
                src = pretrained(train_task, t) if t > 0 else ()
                cells.append(Cell(train_task, f"T_{t}", n - t, src, offset_env_steps=t))
            continue
        for strategy in exp.strategies:
            if strategy in ("scratch", "scratch_grouped"):
                cells.append(Cell(train_task, strategy, n, grouped=strategy in GROUPED_STRATEGIES))
                continue
            if strategy == "image_classification":
                cfg = images_config(exp, out)
                jobs[Path(cfg.out_dir)] = cfg
                cells.append(Cell(train_task, strategy, n,
                                  (Path(cfg.out_dir) / "encoder",) * exp.num_seeds,
                                  grouped=True))
                continue
            frozen = strategy == "ik_frozen"
            sources = pretrain_tasks if exp.cross_tasks else (train_task,)
            for source in sources:
                name = strategy if source == train_task else f"{strategy}_from_{task_slug(source)}"
                cells.append(Cell(train_task, name, n, pretrained(source, exp.ik.num_transitions),
                                  freeze=frozen))
    return list(jobs.values()), cells


def sac_config(exp: EncoderExperiment, cell: Cell, seed: int, out: Path) -> SACTrainConfig:
    """The SAC config of one (cell, seed) run (seed index ``0 .. num_seeds - 1``)."""
    return dataclasses.replace(
        exp.sac, env_id=cell.train_task, total_env_steps=cell.rl_env_steps,
        seed=exp.sac.seed + seed, distraction=exp.distraction,
        distraction_seed=distraction_seed(exp, seed),
        encoder=exp.images.encoder if cell.grouped else exp.sac.encoder,
        init_encoder_from=str(cell.init_from[seed]) if cell.init_from else None,
        freeze_encoder=cell.freeze, progress=False,
        run_dir=str(_run_dir(out, cell, seed)),
    )


def _run_dir(out: Path, cell: Cell, seed: int) -> Path:
    return out / "runs" / task_slug(cell.train_task) / cell.strategy / f"seed_{seed}"


def _pretrain_quiet(cfg: PretrainJob) -> str:
    if (Path(cfg.out_dir) / "encoder").is_dir():
        return cfg.out_dir
    if isinstance(cfg, ImageClassificationConfig):
        pretrain_image_classification(cfg)
    else:
        pretrain_inverse_dynamics(cfg)
    return cfg.out_dir


def _train_quiet(cfg: SACTrainConfig) -> tuple[str, float, float]:
    result = train_sac(cfg)
    return str(result.run_dir), result.final_return_mean, result.wall_seconds


def run_encoder_experiment(exp: EncoderExperiment, out_dir: str | Path) -> Path:
    """Run every stage of ``exp`` under ``out_dir`` and write the reports.

    Returns:
        The path of the top-level ``report.md``.

    Raises:
        ValueError / ConfigError: invalid experiment or configs (before anything runs).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs, cells = plan(exp, out)
    for job in jobs:
        if (isinstance(job, ImageClassificationConfig) and not exp.image_data_dir
                and not (Path(job.out_dir) / "encoder").is_dir()):
            console.print(f"[bold]0/3 synthetic images[/]: {image_data_dir(exp, out)}")
            generate_shape_images(
                image_data_dir(exp, out), num_classes=exp.synthetic_classes,
                images_per_class=exp.synthetic_images_per_class, size=job.image_size,
                seed=exp.images.seed,
            )
    if jobs:
        console.print(f"[bold]1/3 encoder pretraining[/]: {len(jobs)} encoder(s)")
        run_jobs(_pretrain_quiet, jobs, exp.workers,
                 on_done=lambda i, n, d: console.print(f"    [{i}/{n}] {d}"))
    configs = [sac_config(exp, c, k, out) for c in cells for k in range(exp.num_seeds)]
    console.print(f"[bold]2/3 pixel SAC[/]: {len(cells)} cells x {exp.num_seeds} seeds, "
                  f"{exp.workers} at a time")

    def done(i: int, n: int, result: tuple[str, float, float]) -> None:
        console.print(f"    [{i}/{n}] {result[0]}: final return {result[1]:.1f} "
                      f"({result[2]:.0f}s)")

    run_jobs(_train_quiet, configs, exp.workers, on_done=done)
    console.print("[bold]3/3 report[/]")
    report = write_encoder_report(exp, out, cells)
    console.print(f"    {report} ({time.perf_counter() - start:.0f}s in all)")
    return report


def write_encoder_report(exp: EncoderExperiment, out: Path, cells: list[Cell]) -> Path:
    """One report per train task (strategies compared by IQM / mean / median with 95%
    stratified-bootstrap CIs, learning curves) and a top-level report linking them, with the
    cross-environment matrix or the budget-split figure when the experiment has one.

    Raises:
        ValueError: no finished runs.
    """
    sections: dict[str, str] = {}
    finals_by_cell: dict[Cell, np.ndarray] = {}
    for train_task in exp.train_tasks:
        task_cells = [c for c in cells if c.train_task == train_task]
        run_dirs = {c.strategy: [_run_dir(out, c, k) for k in range(exp.num_seeds)
                                 if (_run_dir(out, c, k) / "metrics.jsonl").is_file()]
                    for c in task_cells}
        run_dirs = {s: d for s, d in run_dirs.items() if d}
        if not run_dirs:
            continue
        finals, curves = collect_runs(run_dirs)
        for c in task_cells:
            if c.strategy in finals:
                finals_by_cell[c] = finals[c.strategy]
            if c.offset_env_steps and c.strategy in curves:  # budget split: x = total steps
                curves[c.strategy] = [(x + c.offset_env_steps, y)
                                      for x, y in curves[c.strategy]]
        path = write_report(
            out / task_slug(train_task) / "report.md", f"{exp.name}: {train_task}", finals,
            learning_curves=curves,
            seed_labels={s: [d.name for d in dirs] for s, dirs in run_dirs.items()},
            description=_description(exp, train_task),
        )
        sections[train_task] = f"[{train_task}]({path.relative_to(out).as_posix()})"
    if not finals_by_cell:
        raise ValueError(f"{out} has no finished runs under runs/<task>/<strategy>/seed_<k>")
    body = ["Per-task reports: " + ", ".join(sections.values()), ""]
    if exp.cross_tasks:
        body += _matrix_table(exp, finals_by_cell)
    if exp.budget_split_transitions:
        body += _budget_split_section(exp, out, finals_by_cell)
    report = out / "report.md"
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text(f"# {exp.name}\n\n{exp.description}\n\n" + "\n".join(body) + "\n")
    tmp.replace(report)
    return report


def _description(exp: EncoderExperiment, task: str) -> str:
    sac = exp.sac
    clips = ("one builtin clip per seed" if _per_clip(exp) else exp.distraction) or "none"
    return (
        f"Pixel SAC on `{task}` ({sac.encoder.kind} encoder, render "
        f"{resolved_render_size(sac)}, distraction {clips}); "
        f"{sac.total_env_steps} agent steps per run"
        + (" in total (IK data + RL)" if exp.budget_split_transitions else " of RL")
        + f"; score = mean return of {sac.eval_episodes} evaluation episodes at the end. "
        f"IK encoders: {exp.ik.num_transitions if not exp.budget_split_transitions else 'T'} "
        f"random-action transitions, {exp.ik.epochs} epochs (Kadavath et al. 2021)."
    )


def _matrix_table(exp: EncoderExperiment, finals: dict[Cell, np.ndarray]) -> list[str]:
    sources = exp.pretrain_tasks or exp.train_tasks
    header = "| RL task \\ IK data from | scratch | " + " | ".join(
        task_slug(s) for s in sources) + " |"
    lines = ["## Cross-environment matrix (IQM of final return over seeds)", "", header,
             "|" + "---|" * (len(sources) + 2)]
    for t in exp.train_tasks:
        row = [task_slug(t)]
        for strategy in ["scratch", *[("ik" if s == t else f"ik_from_{task_slug(s)}")
                                      for s in sources]]:
            scores = [v for c, v in finals.items() if c.train_task == t and c.strategy == strategy]
            row.append(f"{float(_iqm(scores[0])):.1f}" if scores else "-")
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def _iqm(x: np.ndarray) -> float:
    from rltransfer.evaluation.aggregate import iqm

    return float(iqm(np.asarray(x, dtype=np.float64)))


def _budget_split_section(exp: EncoderExperiment, out: Path,
                          finals: dict[Cell, np.ndarray]) -> list[str]:
    lines = ["## Budget split: final return against T (agent steps spent on IK data)", ""]
    for t in exp.train_tasks:
        cells = sorted((c for c in finals if c.train_task == t), key=lambda c: c.offset_env_steps)
        if not cells:
            continue
        estimates = aggregate_scores({c.strategy: finals[c] for c in cells})
        figure = plot_interval_estimates(
            estimates, out / f"{task_slug(t)}_budget_split.png",
            xlabel="return", title=f"{task_slug(t)}: total {exp.sac.total_env_steps} agent steps",
        )
        lines += [f"### {t}", "", "| T (IK transitions) | RL agent steps | IQM [95% CI] | "
                  "seeds |", "|---|---|---|---|"]
        for c in cells:
            est = estimates[c.strategy]["iqm"]
            lines.append(f"| {c.offset_env_steps} | {c.rl_env_steps} | {est} | "
                         f"{len(finals[c])} |")
        lines += ["", f"![budget split]({Path(figure).relative_to(out).as_posix()})", ""]
    return lines
