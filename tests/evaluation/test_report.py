from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rltransfer.evaluation.aggregate import Estimate
from rltransfer.evaluation.plots import plot_interval_estimates, plot_learning_curves
from rltransfer.evaluation.report import (
    MetricsFileError,
    collect_runs,
    eval_curve,
    final_return,
    read_metrics,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(run_dir: Path, lines: list[str], tail: str = "") -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(x + "\n" for x in lines) + tail)
    (run_dir / "config.json").write_text(json.dumps({"env_id": "MinAtar/Breakout-v1"}))
    return run_dir


def _eval(step: int, ret: float) -> str:
    return json.dumps({"kind": "eval", "env_steps": step, "return_mean": ret, "returns": [ret]})


def test_eval_curve_skips_truncated_last_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"kind": "train", "env_steps": 5, "loss": 0.1}),
        _eval(20, 2.0),
        _eval(10, 1.0),  # out of order
        json.dumps({"kind": "episode", "env_steps": 12, "return": 3.0}),
        json.dumps({"kind": "eval", "env_steps": 30, "returns": [1.0, 2.0, 6.0]}),  # no mean
        _eval(20, 2.5),  # re-evaluated after a resume: the later record wins
    ]
    run = _write_run(tmp_path / "run", lines, tail='{"kind": "eval", "env_steps": 40, "ret')
    assert len(read_metrics(run)) == 6
    steps, returns = eval_curve(run)
    assert steps.dtype == np.int64 and returns.dtype == np.float64
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_allclose(returns, [1.0, 2.5, 3.0])
    assert final_return(run) == pytest.approx(3.0)
    assert final_return(run, last_k_evals=2) == pytest.approx(2.75)


def test_read_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metrics\.jsonl"):
        read_metrics(tmp_path)
    run = _write_run(tmp_path / "bad", [_eval(1, 0.0), '{"kind": "ev', _eval(2, 1.0)])
    with pytest.raises(MetricsFileError, match=r"metrics\.jsonl:2"):
        read_metrics(run)
    empty = _write_run(tmp_path / "empty", [json.dumps({"kind": "train", "env_steps": 1})])
    assert eval_curve(empty)[0].size == 0
    with pytest.raises(ValueError, match="no eval records"):
        final_return(empty)


def test_collect_runs(tmp_path: Path) -> None:
    a0 = _write_run(tmp_path / "a0", [_eval(0, 0.0), _eval(100, 1.0)])
    a1 = _write_run(tmp_path / "a1", [_eval(0, 0.0), _eval(100, 3.0)], tail='{"kin')
    finals, learning = collect_runs({"a": [a0, a1]})
    np.testing.assert_allclose(finals["a"], [1.0, 3.0])
    assert len(learning["a"]) == 2
    np.testing.assert_array_equal(learning["a"][1][0], [0, 100])


def test_plots_write_png(tmp_path: Path) -> None:
    x = np.linspace(0, 1000, 11)
    data = {"a": (x, x / 1000, x / 1000 - 0.1, x / 1000 + 0.1), "b": (x, -x, -x, -x)}
    p = plot_learning_curves(data, tmp_path / "sub" / "c.png", "t", reference_lines={"z": 0.5})
    assert p.read_bytes()[:8] == PNG_MAGIC
    est = {"a": {"iqm": Estimate(1, 0, 2), "mean": Estimate(1, 1, 1), "median": Estimate(0, -1, 1)}}
    q = plot_interval_estimates(est, tmp_path / "i.png")
    assert q.read_bytes()[:8] == PNG_MAGIC and q.stat().st_size > 1000
    with pytest.raises(ValueError, match="equal length"):
        plot_learning_curves({"a": (x, x[:3], x, x)}, tmp_path / "x.png", "t")
    with pytest.raises(ValueError, match="missing estimates"):
        plot_interval_estimates(est, tmp_path / "j.png", metrics=["iqm", "max"])


def _row(text: str, prefix: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, (prefix, rows)
    return rows[0]


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _interval(cell: str) -> tuple[float, float, float]:
    point, rest = cell.split(" [")
    low, high = rest.rstrip("]").split(", ")
    return float(point), float(low), float(high)


def test_write_report(tmp_path: Path) -> None:
    # 8 seeds [0, 0, 1, 2, 3, 4, 10, 100]: IQM drops the lowest and highest 2 (25% each side)
    # -> (1 + 2 + 3 + 4) / 4 = 2.5; mean = 120 / 8 = 15; with one task rliable's median (the
    # median over tasks of the per-task mean) is the mean, 15.
    skewed = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 100.0])
    # every seed equal: each bootstrap resample is the same, so every CI is [0.75, 0.75].
    flat = np.array([0.75, 0.75, 0.75])
    finals = {"scratch": skewed, "behavior transfer": flat}
    steps = np.array([0, 500, 1000])
    learning = {
        "scratch": [(steps, np.array([0.0, 1.0, 2.0]))] * 8,
        "behavior transfer": [(steps, np.array([0.0, 0.5, 0.75]))] * 3,
    }
    zero_shot = {"pretrained": np.array([0.2, 0.2, 0.2, 0.2])}
    path = write_report(
        tmp_path / "out" / "report.md",
        "MinAtar Breakout",
        finals,
        learning_curves=learning,
        zero_shot=zero_shot,
        seed_labels={"scratch": [f"s{i}" for i in range(8)]},
        extra_sections={"Config": "`lr = 1e-4`"},
        reps=200,
    )
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "# MinAtar Breakout"
    assert "| strategy | seeds | IQM [95% CI] | mean [95% CI] | median [95% CI] |" in lines
    assert ("| behavior transfer | 3 | 0.75 [0.75, 0.75] | 0.75 [0.75, 0.75] "
            "| 0.75 [0.75, 0.75] |") in lines
    cells = _cells(_row(text, "| scratch | 8 |"))
    assert len(cells) == 5
    iqm, mean, median = (_interval(c) for c in cells[2:])
    assert iqm[0] == 2.5 and mean[0] == 15.0 and median[0] == 15.0
    for point, low, high in (iqm, mean, median):
        # a bootstrap statistic of resampled seeds stays within the data's range
        assert 0.0 <= low <= point <= high <= 100.0
    # zero-shot table: 4 equal values
    assert "| pretrained | 4 | 0.2 [0.2, 0.2] | 0.2 [0.2, 0.2] | 0.2 [0.2, 0.2] |" in lines
    assert "Per-value data: pretrained: 0.2, 0.2, 0.2, 0.2" in lines
    # per-seed raw table, with and without labels (values >= 100 get one decimal)
    assert "| scratch | 0 | s0: 0, s1: 0, s2: 1, s3: 2, s4: 3, s5: 4, s6: 10, s7: 100.0 |" in lines
    assert "| behavior transfer | 0 | 0.75, 0.75, 0.75 |" in lines
    assert "equals the mean" in text  # one task: the note on rliable's median
    assert "## Config" in lines and "`lr = 1e-4`" in lines
    assert lines.index("## Config") > lines.index("## Per-seed raw numbers")
    assert "![learning curves](report_curves.png)" in lines
    assert "![interval estimates](report_intervals.png)" in lines
    for png in ("report_curves.png", "report_intervals.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_write_report_without_curves_and_bad_input(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.md", "one seed", {"a": [0.5]}, reps=20)
    text = path.read_text()
    assert "| a | 1 | 0.5 [0.5, 0.5] |" in text
    assert not (tmp_path / "r_curves.png").exists()
    assert (tmp_path / "r_intervals.png").stat().st_size > 0
    with pytest.raises(ValueError, match="NaN"):
        write_report(tmp_path / "n.md", "nan", {"a": [0.5, float("nan")]}, reps=20)
    with pytest.raises(ValueError, match="task_names"):
        write_report(tmp_path / "t.md", "t", {"a": np.ones((2, 3))}, task_names=["x"], reps=20)


def test_write_report_multi_task_with_task_names(tmp_path: Path) -> None:
    scores = {"a": np.array([[0.1, 0.9], [0.2, 0.8]]), "b": np.array([[0.5, 0.5]])}
    text = write_report(
        tmp_path / "m.md", "two tasks", scores, task_names=["easy", "hard"], reps=20
    ).read_text()
    assert "| a | easy | 0.1, 0.2 |" in text and "| a | hard | 0.9, 0.8 |" in text
    assert "| b | 1 |" in text
    assert "equals the mean" not in text
