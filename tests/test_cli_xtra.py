"""The XTRA verbs of the CLI: train-xtra-teacher, pretrain-xtra, finetune-xtra (tiny runs on
random MinAtar-shaped datasets), and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from rltransfer.cli import main
from tests.methods.xtra.conftest import GAMES, save_dataset

pytestmark = pytest.mark.slow  # trains agents

TINY = ["--num-updates", "2", "--batch-size", "4", "--mcts.num-simulations", "2",
        "--eval-episodes", "1", "--checkpoint-every-updates", "1", "--no-progress",
        "--no-tensorboard", "--learner.lr-warmup-updates", "1"]


def test_teacher_student_finetune_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    data = save_dataset(tmp_path, GAMES["asterix"])
    teacher = str(tmp_path / "teacher")
    main(["train-xtra-teacher", "--dataset", data, "--run-dir", teacher, *TINY])
    assert "teacher" in capsys.readouterr().out
    student = str(tmp_path / "student")
    main(["pretrain-xtra", "--datasets", data, "--teachers", teacher, "--run-dir", student,
          *TINY])
    out = capsys.readouterr().out
    assert "MinAtar/Asterix-v1: student" in out and "vs teacher" in out
    run = str(tmp_path / "ft")
    main(["finetune-xtra", "--sources", data, "--offline-batch-size", "4",
          "--train.env-id", "MinAtar/Breakout-v1", "--train.num-envs", "2",
          "--train.total-env-steps", "24", "--train.learning-starts-env-steps", "16",
          "--train.batch-size", "4", "--train.mcts.num-simulations", "2",
          "--train.mcts.discount", "0.99", "--train.learner.discount", "0.99",
          "--train.eval-episodes", "1", "--train.replay-capacity-env-steps", "100",
          "--train.action-space", "minatar-union", "--train.pad-channels", "10",
          "--train.init-from", student, "--train.transfer", "representation", "dynamics",
          "prediction", "--train.run-dir", run, "--train.no-progress",
          "--train.no-tensorboard"])
    assert "env steps" in capsys.readouterr().out
    assert (Path(run) / "xtra.json").is_file() and (Path(run) / "final").is_dir()


def test_pretrain_xtra_errors_are_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = save_dataset(tmp_path, GAMES["asterix"])
    with pytest.raises(SystemExit) as exc:
        main(["pretrain-xtra", "--datasets", data, "--run-dir", str(tmp_path / "s"), *TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rltransfer: error:") and "teachers" in err and err.count("\n") == 1
