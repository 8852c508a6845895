"""The one registry of named experiments (``rltransfer run <name>``, ``rltransfer run --list``).

Every recipe is a :class:`Recipe`: its name, its kind, a builder of its typed experiment
config, a one-line description, its runtime on the project's 2-core CPU machine as recorded
in ``docs/benchmarks.md`` (``"not measured"`` where nothing was recorded) and whether it
needs a GPU. Three kinds, each with its config type and runner:

* ``bt``: :class:`~rltransfer.experiments.behavior_transfer.BTExperiment` (Behavior
  Transfer, Campos et al. 2021), run by
  :func:`rltransfer.experiments.behavior_transfer.run_experiment`;
* ``encoder``: :class:`~rltransfer.experiments.encoder_recipes.EncoderExperiment` (encoder
  pretraining for pixel SAC, Kadavath et al. 2021), run by
  :func:`rltransfer.methods.encoder_pretraining.experiment.run_encoder_experiment`;
* ``efficientzero``: :class:`~rltransfer.experiments.efficientzero.EZExperiment`
  (EfficientZero, Ye et al. 2021), run by
  :func:`rltransfer.experiments.efficientzero.run_ez_experiment`;
* ``xtra``: :class:`~rltransfer.experiments.xtra.XTRAExperiment` (XTRA, Xu et al. 2023:
  teachers, distilled student, cross-task finetuning), run by
  :func:`rltransfer.experiments.xtra.run_xtra_experiment`.

The presets themselves (their settings and sources) are in
:mod:`rltransfer.experiments.behavior_transfer`, :mod:`rltransfer.experiments.encoder_recipes`
and :mod:`rltransfer.experiments.efficientzero`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from rltransfer.core.config import ConfigError
from rltransfer.errors import UnknownRecipeError
from rltransfer.experiments.behavior_transfer import (
    BTExperiment,
    bt_atari,
    bt_minigrid,
    bt_minigrid_benchmark,
)
from rltransfer.experiments.bt_suite import bt_minigrid_cross, bt_suite
from rltransfer.experiments.efficientzero import (
    EZExperiment,
    ez_atari100k_experiment,
    ez_small_experiment,
)
from rltransfer.experiments.encoder_recipes import (
    EncoderExperiment,
    ik_budget,
    ik_budget_small,
    ik_cross,
    ik_distracted,
    ik_dmc,
    ik_reacher,
    ik_vs_images,
)
from rltransfer.experiments.xtra import XTRAExperiment, xtra_atari100k, xtra_minatar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RecipeKind = Literal["bt", "encoder", "efficientzero", "xtra"]
"""``bt``: Behavior Transfer; ``encoder``: encoder pretraining for pixel SAC;
``efficientzero``: EfficientZero runs over seeds; ``xtra``: the XTRA pipeline."""

Experiment = BTExperiment | EncoderExperiment | EZExperiment | XTRAExperiment
"""The typed config of any recipe."""

E = TypeVar("E", BTExperiment, EncoderExperiment, EZExperiment, XTRAExperiment)
_C = TypeVar("_C", bound="DataclassInstance")

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Recipe(Generic[E]):
    """One named experiment.

    Attributes:
        name: what ``rltransfer run`` takes, e.g. ``"bt-minigrid"``.
        kind: which runner runs it (see the module docstring).
        build: returns a fresh config of the experiment (type per ``kind``).
        description: one line.
        runtime: wall time of the whole recipe on the project's 2-core CPU machine, as
            recorded in ``docs/benchmarks.md``; ``"not measured"`` (with what was measured
            at a smaller scale, if anything) otherwise.
        needs_gpu: its budgets are GPU (or cluster) work; on a CPU only a shortened smoke
            run is practical.
    """

    name: str
    kind: RecipeKind
    build: Callable[[], E]
    description: str
    runtime: str = NOT_MEASURED
    needs_gpu: bool = False


AnyRecipe = (Recipe[BTExperiment] | Recipe[EncoderExperiment] | Recipe[EZExperiment]
             | Recipe[XTRAExperiment])

BT_RECIPES: tuple[Recipe[BTExperiment], ...] = (
    Recipe("bt-minigrid", "bt", bt_minigrid,
           "The demo: RND reward-free pretraining on MiniGrid DoorKey-5x5, then 5 transfer "
           "strategies x 3 seeds on the goal task.",
           runtime="4 min 36 s"),
    Recipe("bt-minigrid-benchmark", "bt", bt_minigrid_benchmark,
           "NGU reward-free pretraining on MiniGrid DoorKey-8x8, then 5 transfer strategies "
           "x 5 seeds on the goal task.",
           runtime="not measured (estimated 1.5 h)"),
    Recipe("bt-suite", "bt", bt_suite,
           "Behavior Transfer suite: one NGU policy per env (DoorKey-5x5, -6x6) transferred "
           "to goal/key/door, 9 strategies and ablations x 5 seeds, verdict vs scratch.",
           runtime="not measured (estimated 1.5 h; ~3 h on a loaded CPU)"),
    Recipe("bt-minigrid-cross", "bt", bt_minigrid_cross,
           "Across environments: NGU reward-free pretraining on MiniGrid DoorKey-6x6, then 5 "
           "transfer strategies x 3 seeds on the goal task of LavaGapS6 (same 6x6 spaces).",
           runtime="3 min 2 s (idle 2-core CPU, docs/benchmarks.md)"),
    Recipe("bt-atari", "bt", bt_atari,
           "Paper-scale Behavior Transfer on Ms. Pac-Man: conv + LSTM R2D2 agent, NGU "
           "pretraining, 50M env steps per run.",
           needs_gpu=True),
)
"""Behavior Transfer recipes (:mod:`rltransfer.experiments.behavior_transfer`)."""

ENCODER_RECIPES: tuple[Recipe[EncoderExperiment], ...] = (
    Recipe("ik-reacher", "encoder", ik_reacher,
           "Pixel SAC on reacher-easy from an inverse-dynamics (IK) pretrained encoder vs "
           "a random one, 3 seeds (the CPU benchmark).",
           runtime="not measured (1 h 25 min at 2k RL steps)"),
    Recipe("ik-dmc", "encoder", ik_dmc,
           "IK-pretrained (finetuned, frozen) vs random encoder on cheetah-run, reacher-easy "
           "and walker-walk, 3 seeds."),
    Recipe("ik-cross", "encoder", ik_cross,
           "Cross-environment matrix: IK on each of three DMC tasks, SAC on each."),
    Recipe("ik-distracted", "encoder", ik_distracted,
           "ik-dmc with distracting video backgrounds in pretraining, RL and evaluation."),
    Recipe("ik-budget", "encoder", ik_budget,
           "Budget split at paper scale: N = 80k agent steps, T in {0, 5k, 10k, 20k} of "
           "them on IK data.",
           needs_gpu=True),
    Recipe("ik-budget-small", "encoder", ik_budget_small,
           "Budget split at CPU scale: N = 3k agent steps, T in {0, 500, 1000}, 2 seeds."),
    Recipe("ik-vs-images", "encoder", ik_vs_images,
           "IK vs image-classification (grouped encoder, synthetic shapes) vs scratch on "
           "three DMC tasks."),
)
"""Encoder-pretraining recipes for pixel SAC (:mod:`rltransfer.experiments.encoder_recipes`)."""

EZ_RECIPES: tuple[Recipe[EZExperiment], ...] = (
    Recipe("ez-small", "efficientzero", ez_small_experiment,
           "EfficientZero on MinAtar Breakout at CPU scale (small network, 8 simulations, "
           "20k env steps per seed).",
           runtime="about 45 min per seed (21-22 min per 10k env steps)"),
    Recipe("ez-atari100k", "efficientzero", ez_atari100k_experiment,
           "EfficientZero's Atari100k settings on Ms. Pac-Man (50 simulations, batch 256).",
           needs_gpu=True),
)
"""EfficientZero recipes (:mod:`rltransfer.experiments.efficientzero`)."""

XTRA_RECIPES: tuple[Recipe[XTRAExperiment], ...] = (
    Recipe("xtra-minatar", "xtra", xtra_minatar,
           "XTRA on MinAtar: 4 source games -> teachers -> distilled student, finetuned on "
           "Breakout; XTRA vs plain finetune vs scratch, 3 seeds.",
           runtime="estimated ~2 h with workers=2 (per-stage timings; not run in full)"),
    Recipe("xtra-atari100k", "xtra", xtra_atari100k,
           "XTRA at paper scale: Shooter leave-one-out (Assault target), 100k env steps, "
           "batch 256 + 256, atari-l network.",
           needs_gpu=True),
)
"""XTRA recipes (:mod:`rltransfer.experiments.xtra`)."""

KIND_CONFIG: dict[RecipeKind, type] = {
    "bt": BTExperiment, "encoder": EncoderExperiment, "efficientzero": EZExperiment,
    "xtra": XTRAExperiment,
}
"""The experiment config type each kind's builder returns."""


def _index(sections: Iterable[tuple[RecipeKind, tuple[AnyRecipe, ...]]]) -> dict[str, AnyRecipe]:
    index: dict[str, AnyRecipe] = {}
    for kind, recipes in sections:
        for recipe in recipes:
            if recipe.kind != kind:
                raise TypeError(f"recipe {recipe.name!r} is of kind {recipe.kind!r} but "
                                f"registered with the {kind!r} recipes")
            if recipe.name in index:
                raise ValueError(f"two recipes are named {recipe.name!r}")
            index[recipe.name] = recipe
    return index


RECIPES: dict[str, AnyRecipe] = _index(
    [("bt", BT_RECIPES), ("encoder", ENCODER_RECIPES), ("efficientzero", EZ_RECIPES),
     ("xtra", XTRA_RECIPES)]
)
"""Every recipe by name, in listing order (``bt``, then ``encoder``, then ``efficientzero``)."""


def get_recipe(name: str) -> AnyRecipe:
    """The recipe named ``name``.

    Raises:
        UnknownRecipeError (a ``KeyError``): no such recipe; the one-line message lists
            every name.
    """
    if name not in RECIPES:
        raise UnknownRecipeError(
            f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))} "
            "(rltransfer run --list describes them)"
        )
    return RECIPES[name]


@dataclass(frozen=True)
class RecipeOverrides:
    """Changes to a recipe's config (the flags of ``rltransfer run``); ``None`` keeps the
    recipe's value.

    Attributes:
        num_seeds: seeds per strategy (every kind).
        workers: runs in parallel (every kind).
        pretrain_env_steps: reward-free pretraining env steps (``bt``) or inverse-dynamics
            transitions (``encoder``); ``efficientzero`` has no pretraining.
        train_env_steps: env steps of each training run (``bt``, ``efficientzero``: also
            the replay capacity) or SAC's budget ``sac.total_env_steps`` (``encoder``).
        strategies: the strategies to run (``bt``, ``encoder``).
    """

    num_seeds: int | None = None
    workers: int | None = None
    pretrain_env_steps: int | None = None
    train_env_steps: int | None = None
    strategies: tuple[str, ...] | None = None


def _with(config: _C, value: int | None, *names: str) -> _C:
    """``config`` with the fields ``names`` set to ``value`` (a new config, validated
    again); ``config`` itself when ``value`` is None."""
    return config if value is None else dataclasses.replace(
        config, **dict.fromkeys(names, value))


def apply_overrides(exp: Experiment, changes: RecipeOverrides, name: str = "") -> Experiment:
    """``exp`` with ``changes`` applied (a new config, validated again).

    Raises:
        ConfigError: a change the experiment's kind has no field for (``strategies`` or
            ``pretrain_env_steps`` for EfficientZero), or an invalid value (e.g.
            ``num_seeds`` < 1). UnknownRecipeError: an unknown strategy (``bt``).
    """
    common: dict[str, Any] = {
        key: value for key, value in (("num_seeds", changes.num_seeds),
                                      ("workers", changes.workers),
                                      ("strategies", changes.strategies))
        if value is not None
    }
    pretrain_steps, train_steps = changes.pretrain_env_steps, changes.train_env_steps
    if isinstance(exp, BTExperiment):
        return dataclasses.replace(
            exp, pretrain=_with(exp.pretrain, pretrain_steps, "total_env_steps"),
            train=_with(exp.train, train_steps, "total_env_steps"), **common)
    if isinstance(exp, EncoderExperiment):
        return dataclasses.replace(
            exp, ik=_with(exp.ik, pretrain_steps, "num_transitions"),
            sac=_with(exp.sac, train_steps, "total_env_steps"), **common)
    if isinstance(exp, XTRAExperiment):  # pretraining: the source data runs' env steps
        fine = dataclasses.replace(exp.finetune, train=_with(
            exp.finetune.train, train_steps, "total_env_steps", "replay_capacity_env_steps"))
        return dataclasses.replace(
            exp, finetune=fine, source_run=_with(exp.source_run, pretrain_steps,
                                                 "total_env_steps", "replay_capacity_env_steps"),
            **{("variants" if k == "strategies" else k): v for k, v in common.items()})
    if changes.strategies is not None or pretrain_steps is not None:
        raise ConfigError(f"{name or exp.name} has no strategies or pretraining; drop those flags")
    ez = _with(exp.train, train_steps, "total_env_steps", "replay_capacity_env_steps")
    return dataclasses.replace(exp, train=ez, **common)


def build_recipe(name: str, overrides: RecipeOverrides | None = None) -> Experiment:
    """The config of recipe ``name`` with ``overrides`` applied.

    Raises:
        UnknownRecipeError: no such recipe (or, ``bt``, an unknown strategy).
        ConfigError: an override the recipe's kind cannot take, or an invalid value.
        TypeError: the builder returned another type than its kind's (a programming error).
    """
    recipe = get_recipe(name)
    exp = recipe.build()
    if not isinstance(exp, KIND_CONFIG[recipe.kind]):
        raise TypeError(f"recipe {name!r} ({recipe.kind}) built a {type(exp).__name__}")
    return exp if overrides is None else apply_overrides(exp, overrides, name)


def recipe_table() -> str:
    """Every recipe as plain aligned text, one line each after a header: name, kind, runtime
    on 2 CPU cores (``docs/benchmarks.md``), GPU (``yes`` if it needs one), description."""
    header = ("RECIPE", "KIND", "RUNTIME (2 CPU cores)", "GPU", "DESCRIPTION")
    rows = [header] + [
        (r.name, r.kind, r.runtime, "yes" if r.needs_gpu else "no", r.description)
        for r in RECIPES.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )
