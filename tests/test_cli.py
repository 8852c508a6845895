"""A smoke run of every CLI verb, on budgets of a few hundred env steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rltransfer.cli import main

ENV = "MiniGrid-DoorKey-5x5-v0"
TINY = [
    "--num-envs", "2", "--total-env-steps", "400", "--learning-starts-env-steps", "100",
    "--eval-every-env-steps", "200", "--eval-episodes", "2", "--checkpoint-every-env-steps",
    "200", "--agent.feature-dim", "16", "--agent.hidden", "16", "--agent.batch-size", "8",
    "--no-tensorboard", "--no-progress",
]


@pytest.mark.slow
def test_every_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pre = tmp_path / "pre"
    main(["pretrain", "--env-id", ENV, "--run-dir", str(pre), *TINY])
    assert (pre / "final" / "meta.json").is_file()

    bt = tmp_path / "bt"
    main(["train", "--env-id", ENV, "--task", "goal", "--explore", "bt", "--prior", str(pre),
          "--init", "partial", "--run-dir", str(bt), *TINY])
    evals = [json.loads(x) for x in (bt / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" for r in evals)

    out = tmp_path / "zero_shot.json"
    main(["evaluate", str(pre), "--task", "key", "--episodes", "2", "--output", str(out)])
    assert len(json.loads(out.read_text())["returns"]) == 2

    exp = tmp_path / "exp"
    main(["run", "bt-minigrid", "--out-dir", str(exp), "--num-seeds", "1", "--workers", "1",
          "--pretrain-env-steps", "300", "--train-env-steps", "300",
          "--strategies", "scratch_eps_greedy", "bt"])
    assert (exp / "report.md").is_file()
    (exp / "report.md").unlink()
    main(["report", str(exp)])
    assert "bt" in (exp / "report.md").read_text()

    demo = tmp_path / "demo"
    main(["demo", "--out-dir", str(demo), "--num-seeds", "1", "--workers", "1",
          "--pretrain-env-steps", "300", "--train-env-steps", "300", "--strategies", "bt"])
    assert (demo / "report.md").is_file()


def test_bad_input_gives_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--env-id", "NoSuchEnv-v0", "--run-dir", str(tmp_path / "r"), *TINY])
    assert exc.value.code == 2
    assert "NoSuchEnv-v0" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["train", "--env-id", ENV, "--explore", "bt", "--run-dir", str(tmp_path / "r2"),
              *TINY])
    assert "--prior" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "checkpoint" in capsys.readouterr().err


def test_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["run", "no-such-recipe", "--out-dir", str(tmp_path / "x")], "unknown recipe"),
        (["run", "ez-small", "--out-dir", str(tmp_path / "y"), "--strategies", "bt"],
         "has no strategies"),
        (["train", "--env-id", ENV, "--task", "no-such-task", "--run-dir",
          str(tmp_path / "z"), *TINY], "no-such-task"),
        (["train", "--env-id", ENV, "--sticky-action-prob", "2.0", "--run-dir",
          str(tmp_path / "w"), *TINY], "sticky_action_prob"),
        (["report", str(tmp_path / "no_experiment")], "runs/"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rltransfer: error: ") and needle in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("error", [KeyError("a bug"), ValueError("a bug")])
def test_internal_key_and_value_errors_keep_their_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    import rltransfer.agents.r2d2.train

    def broken(cfg: object) -> None:
        raise error

    monkeypatch.setattr(rltransfer.agents.r2d2.train, "train", broken)
    with pytest.raises(type(error)) as exc:
        main(["train", "--env-id", ENV, "--run-dir", str(tmp_path / "r"), *TINY])
    assert exc.value is error  # not turned into SystemExit(2)
    assert exc.traceback[-1].name == "broken"


def test_user_error_classes_keep_their_old_bases() -> None:
    from rltransfer.core.checkpoint import CheckpointError
    from rltransfer.core.config import ConfigError
    from rltransfer.core.policy import SpaceMismatchError
    from rltransfer.core.run_dir import RunConflictError
    from rltransfer.envs import EnvOptionError, UnknownEnvError
    from rltransfer.errors import MissingDependencyError, UnknownRecipeError, UserError
    from rltransfer.methods.encoder_pretraining.transfer import EncoderMismatchError

    for cls in (ConfigError, CheckpointError, RunConflictError, UnknownEnvError,
                EnvOptionError, EncoderMismatchError, SpaceMismatchError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls
    assert issubclass(UnknownRecipeError, KeyError) and issubclass(UnknownRecipeError, UserError)
    assert issubclass(MissingDependencyError, ImportError)
    assert str(UnknownRecipeError("unknown recipe 'x'")) == "unknown recipe 'x'"


def test_a_corrected_command_runs_in_the_run_dir_of_a_failed_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "r"
    with pytest.raises(SystemExit):
        main(["train", "--env-id", "MiniGrid-NoSuch-v0", "--run-dir", str(run), *TINY])
    assert "MiniGrid-NoSuch-v0" in capsys.readouterr().err
    assert not (run / "config.json").exists()
    main(["train", "--env-id", ENV, "--run-dir", str(run), *TINY])
    assert (run / "final" / "meta.json").is_file()


def test_evaluate_uses_the_runs_training_env_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rltransfer evaluate <run>` builds the run's env (its episode cap here) with the
    protocol's differences; on another env only --task carries over."""
    import rltransfer.evaluation.protocol as protocol
    from rltransfer.envs import make_env

    run = tmp_path / "run"
    main(["train", "--env-id", ENV, "--task", "key", "--max-episode-frames", "30",
          "--run-dir", str(run), *TINY])
    calls: list[tuple[str, dict[str, object]]] = []

    def recorder(env_id: str, num_envs: int, seed: int, **kwargs: object) -> object:
        calls.append((env_id, dict(kwargs)))
        return make_env(env_id, num_envs, seed, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(protocol, "make_env", recorder)
    main(["evaluate", str(run), "--episodes", "1"])
    main(["evaluate", str(run), "--episodes", "1", "--task", "goal"])
    main(["evaluate", str(run), "--episodes", "1", "--env-id", "MiniGrid-Empty-5x5-v0",
          "--task", "goal"])
    assert calls[0] == (ENV, {"task": "key", "reward_free": False,
                              "terminal_on_life_loss": False, "sticky_action_prob": None,
                              "max_episode_frames": 30})
    assert calls[1] == (ENV, dict(calls[0][1], task="goal"))
    assert calls[2] == ("MiniGrid-Empty-5x5-v0", {
        "task": "goal", "reward_free": False, "terminal_on_life_loss": False,
        "max_episode_frames": 108_000})
