"""One runner for every recipe: build its config, apply the overrides, hand it to its kind's
experiment runner (:mod:`rltransfer.experiments.registry` lists the kinds)."""

from __future__ import annotations

from pathlib import Path

from rltransfer.experiments.behavior_transfer import BTExperiment
from rltransfer.experiments.encoder_recipes import EncoderExperiment
from rltransfer.experiments.registry import RecipeOverrides, build_recipe


def run_recipe(name: str, overrides: RecipeOverrides | None = None,
               out_dir: str | Path | None = None) -> Path:
    """Run recipe ``name`` end to end under ``out_dir`` (default ``runs/<name>``) and write
    its report; re-running the same call resumes it.

    Returns:
        The path of the experiment's ``report.md``.

    Raises:
        UnknownRecipeError, ConfigError: see
            :func:`~rltransfer.experiments.registry.build_recipe` (raised before anything
            runs); whatever the runs raise.
    """
    exp = build_recipe(name, overrides)
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    if isinstance(exp, BTExperiment):
        from rltransfer.experiments.behavior_transfer import run_experiment

        return run_experiment(exp, out)
    if isinstance(exp, EncoderExperiment):
        from rltransfer.methods.encoder_pretraining.experiment import run_encoder_experiment

        return run_encoder_experiment(exp, out)
    from rltransfer.experiments.xtra import XTRAExperiment, run_xtra_experiment

    if isinstance(exp, XTRAExperiment):
        return run_xtra_experiment(exp, out)
    from rltransfer.experiments.efficientzero import run_ez_experiment

    return run_ez_experiment(exp, out)
