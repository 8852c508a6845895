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
