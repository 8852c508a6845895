"""The one recipe registry (rltransfer.experiments): every recipe builds, names are unique,
`rltransfer run --list`, overrides reach each kind's config, one dispatch path, typed
strategies."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.cli import main
from rltransfer.core.config import ConfigError
from rltransfer.errors import UnknownRecipeError
from rltransfer.experiments import RECIPES, Recipe, RecipeOverrides, build_recipe, run_recipe
from rltransfer.experiments.behavior_transfer import STRATEGIES, BTExperiment, Strategy, bt_minigrid
from rltransfer.experiments.efficientzero import EZExperiment, ez_small
from rltransfer.experiments.encoder_recipes import EncoderExperiment
from rltransfer.experiments.registry import (
    BT_RECIPES,
    ENCODER_RECIPES,
    EZ_RECIPES,
    XTRA_RECIPES,
    _index,
)
from rltransfer.experiments.xtra import XTRAExperiment

NAMES = {
    "bt": ["bt-minigrid", "bt-minigrid-benchmark", "bt-suite", "bt-minigrid-cross", "bt-atari"],
    "encoder": ["ik-reacher", "ik-dmc", "ik-cross", "ik-distracted", "ik-budget",
                "ik-budget-small", "ik-vs-images"],
    "efficientzero": ["ez-small", "ez-atari100k"],
    "xtra": ["xtra-minatar", "xtra-atari100k"],
}
CONFIG_TYPE = {"bt": BTExperiment, "encoder": EncoderExperiment, "efficientzero": EZExperiment,
               "xtra": XTRAExperiment}


def test_every_recipe_is_registered_and_builds_its_config() -> None:
    assert list(RECIPES) == [n for kind in NAMES.values() for n in kind]  # listing order
    for kind, names in NAMES.items():
        for name in names:
            recipe = RECIPES[name]
            assert recipe.name == name and recipe.kind == kind
            exp = build_recipe(name)
            assert type(exp) is CONFIG_TYPE[kind], name
            assert recipe.build() is not recipe.build()  # a fresh config each time
            assert recipe.description and "\n" not in recipe.description, name
            assert recipe.runtime, name
    assert [r.name for r in RECIPES.values() if r.needs_gpu] == [
        "bt-atari", "ik-budget", "ez-atari100k", "xtra-atari100k"]


def test_recipe_names_are_unique_and_kinds_checked() -> None:
    names = ([r.name for r in BT_RECIPES] + [r.name for r in ENCODER_RECIPES]
             + [r.name for r in EZ_RECIPES] + [r.name for r in XTRA_RECIPES])
    assert len(names) == len(set(names)) == len(RECIPES) == 16
    twice = (BT_RECIPES[0], BT_RECIPES[0])
    with pytest.raises(ValueError, match="two recipes are named 'bt-minigrid'"):
        _index([("bt", twice)])
    with pytest.raises(TypeError, match="kind 'bt'"):
        _index([("encoder", BT_RECIPES[:1])])


def test_documented_runtimes_come_from_the_benchmarks() -> None:
    # docs/benchmarks.md: the demo took 4 min 36 s after issue 11; nothing recorded for ik-dmc
    assert RECIPES["bt-minigrid"].runtime == "4 min 36 s"
    assert RECIPES["ik-dmc"].runtime == "not measured"
    assert all(r.runtime.startswith("not measured") for r in RECIPES.values() if r.needs_gpu)


def test_run_list_prints_every_recipe_with_kind_and_runtime(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["run", "--list"])  # returns: exit status 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RECIPE", "KIND", "RUNTIME"]
    assert len(lines) == 1 + 16
    runtime_col = lines[0].index("RUNTIME")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(RECIPES)
    assert rows["bt-minigrid"].split()[1] == "bt"
    assert rows["ik-cross"].split()[1] == "encoder"
    assert rows["ez-small"].split()[1] == "efficientzero"
    assert rows["bt-minigrid"][runtime_col:].startswith("4 min 36 s ")
    assert rows["ez-atari100k"][runtime_col:].startswith("not measured ")
    assert "Ms. Pac-Man" in rows["bt-atari"]


def test_unknown_or_missing_recipe_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "no-such-recipe"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rltransfer: error: unknown recipe 'no-such-recipe'")
    assert err.count("\n") == 1 and all(name in err for name in RECIPES)
    with pytest.raises(UnknownRecipeError):
        build_recipe("no-such-recipe")
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2 and "--list" in capsys.readouterr().err


def test_overrides_reach_the_config_of_each_kind() -> None:
    changes = RecipeOverrides(num_seeds=2, workers=1, pretrain_env_steps=300,
                              train_env_steps=400, strategies=("bt",))
    bt = build_recipe("bt-minigrid", changes)
    assert isinstance(bt, BTExperiment)
    assert (bt.num_seeds, bt.workers, bt.strategies) == (2, 1, ("bt",))
    assert (bt.pretrain.total_env_steps, bt.train.total_env_steps) == (300, 400)
    assert bt.train.env_id == "MiniGrid-DoorKey-5x5-v0"  # the rest is the recipe's

    enc = build_recipe("ik-reacher", dataclasses.replace(changes, strategies=("ik",)))
    assert isinstance(enc, EncoderExperiment)
    assert (enc.num_seeds, enc.workers, enc.strategies) == (2, 1, ("ik",))
    assert (enc.ik.num_transitions, enc.sac.total_env_steps) == (300, 400)

    ez = build_recipe("ez-small", RecipeOverrides(num_seeds=3, workers=2, train_env_steps=400))
    assert isinstance(ez, EZExperiment)
    assert (ez.num_seeds, ez.workers) == (3, 2)
    assert (ez.train.total_env_steps, ez.train.replay_capacity_env_steps) == (400, 400)

    untouched = build_recipe("bt-minigrid", RecipeOverrides())
    assert untouched == bt_minigrid()


def test_overrides_are_validated() -> None:
    with pytest.raises(ConfigError, match="has no strategies"):
        build_recipe("ez-small", RecipeOverrides(strategies=("bt",)))
    with pytest.raises(ConfigError, match="has no strategies or pretraining"):
        build_recipe("ez-small", RecipeOverrides(pretrain_env_steps=10))
    with pytest.raises(UnknownRecipeError, match="no_such_strategy"):
        build_recipe("bt-minigrid", RecipeOverrides(strategies=("bt", "no_such_strategy")))
    for name in ("bt-minigrid", "ik-reacher", "ez-small"):
        with pytest.raises(ConfigError, match="num_seeds"):
            build_recipe(name, RecipeOverrides(num_seeds=0))


@pytest.mark.parametrize(("name", "runner"), [
    ("bt-minigrid", "rltransfer.experiments.behavior_transfer.run_experiment"),
    ("ik-budget-small", "rltransfer.methods.encoder_pretraining.experiment.run_encoder_experiment"),
    ("ez-small", "rltransfer.experiments.efficientzero.run_ez_experiment"),
])
def test_cli_run_dispatches_each_kind_with_its_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, runner: str
) -> None:
    calls: list[tuple[Any, Path]] = []

    def fake(exp: Any, out: Path) -> Path:
        calls.append((exp, Path(out)))
        return Path(out) / "report.md"

    monkeypatch.setattr(runner, fake)
    main(["run", name, "--num-seeds", "4", "--workers", "1", "--train-env-steps", "2500",
          "--out-dir", str(tmp_path / "x")])
    ((exp, out),) = calls
    assert out == tmp_path / "x" and exp.num_seeds == 4 and exp.workers == 1
    budget = exp.sac if isinstance(exp, EncoderExperiment) else exp.train
    assert budget.total_env_steps == 2500


def test_default_out_dir_is_runs_slash_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Path] = []

    def fake(exp: EZExperiment, out: Path) -> Path:
        seen.append(Path(out))
        return Path(out) / "report.md"

    monkeypatch.setattr("rltransfer.experiments.efficientzero.run_ez_experiment", fake)
    run_recipe("ez-small")
    assert seen == [Path("runs") / "ez-small"]


def test_strategy_fields_are_train_configs_literals() -> None:
    mine, theirs = typing.get_type_hints(Strategy), typing.get_type_hints(TrainConfig)
    for key in ("explore", "init"):
        assert typing.get_args(mine[key]) == typing.get_args(theirs[key]), key
    s = STRATEGIES["bt_partial_init"]
    assert (s.explore, s.init, s.flights, s.extra_action) == ("bt", "partial", True, True)
    assert s.uses_pretraining and not STRATEGIES["scratch_ez_greedy"].uses_pretraining


def test_typed_strategy_rejects_a_bad_value() -> None:
    bad: Any = "greedy"
    with pytest.raises(ConfigError, match="explore='greedy'"):
        Strategy("mine", explore=bad)
    bad = "half"
    with pytest.raises(ConfigError, match="init='half'"):
        Strategy("mine", init=bad)
    assert Strategy("mine", explore="ez_greedy", init="full").init == "full"


def test_strategy_config_passes_the_typed_fields_through(tmp_path: Path) -> None:
    from rltransfer.experiments.behavior_transfer import strategy_config

    exp = bt_minigrid()
    cfg = strategy_config(exp, "bt_partial_init", 2, tmp_path)
    assert (cfg.explore, cfg.init) == ("bt", "partial")
    assert cfg.prior == cfg.init_from == str(tmp_path / "pretrain")
    assert cfg.seed == 2 and cfg.run_dir == str(tmp_path / "runs" / "bt_partial_init" / "seed_2")
    cfg = strategy_config(exp, "scratch_ez_greedy", 0, tmp_path)
    assert (cfg.explore, cfg.init, cfg.prior, cfg.init_from) == ("ez_greedy", "none", None, None)


def test_old_import_paths_still_work() -> None:
    from rltransfer.experiments.behavior_transfer import get_recipe
    from rltransfer.experiments.encoder_recipes import ENCODER_RECIPES as OLD_ENCODER

    assert list(OLD_ENCODER) == NAMES["encoder"]
    assert isinstance(OLD_ENCODER["ik-cross"](), EncoderExperiment)
    assert get_recipe("bt-atari").train.env_id == "ALE/MsPacman-v5"
    with pytest.raises(UnknownRecipeError, match="ez-small"):
        get_recipe("ez-small")  # not a Behavior Transfer recipe
    assert isinstance(RECIPES["ez-small"], Recipe)


@pytest.mark.slow
def test_ez_experiment_runs_every_seed_and_reports(tmp_path: Path) -> None:
    from rltransfer.experiments.efficientzero import run_ez_experiment

    tiny = dataclasses.replace(
        ez_small(), num_envs=2, total_env_steps=60, replay_capacity_env_steps=60,
        learning_starts_env_steps=30, batch_size=4, eval_every_env_steps=60, eval_episodes=1,
        max_episode_frames=50, checkpoint_every_env_steps=60, progress=False,
        tensorboard=False, seed=10)
    exp = EZExperiment(name="ez-tiny", train=tiny, num_seeds=2)
    report = run_ez_experiment(exp, tmp_path)
    assert report == tmp_path / "report.md" and "ez-tiny" in report.read_text()
    for k in (0, 1):
        cfg = json.loads((tmp_path / "runs" / f"seed_{k}" / "config.json").read_text())
        assert cfg["seed"] == 10 + k and cfg["total_env_steps"] == 60
