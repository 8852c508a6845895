"""Named experiments: the one recipe registry and the one runner.

``rltransfer run --list`` prints :func:`recipe_table`; ``rltransfer run NAME`` is
:func:`run_recipe`. The presets' settings are in :mod:`rltransfer.experiments.behavior_transfer`.
"""

from rltransfer.experiments.registry import (
    RECIPES,
    Experiment,
    Recipe,
    RecipeKind,
    RecipeOverrides,
    apply_overrides,
    build_recipe,
    get_recipe,
    recipe_table,
)
from rltransfer.experiments.runner import run_recipe

__all__ = ["RECIPES", "Experiment", "Recipe", "RecipeKind", "RecipeOverrides",
           "apply_overrides", "build_recipe", "get_recipe", "recipe_table", "run_recipe"]
