"""The XTRA-specific sections of an experiment's report: the task-weight (eta) curves, the
student-vs-teacher table, and a diagnosis of the weights (collapsed to 0 or not).

Read from the run directories (``metrics.jsonl``'s ``train`` records carry ``eta/<task>``;
the student's ``final/meta.json`` and ``eval_task`` records carry the table).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rltransfer.core.checkpoint import CheckpointError
from rltransfer.methods.xtra.distill import student_vs_teacher

__all__ = ["eta_curves", "plot_eta_curves", "xtra_sections"]


def eta_curves(run_dirs: Sequence[str | Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per source task: ``(env_steps int64[T], mean eta over runs float64[T])`` from the
    ``train`` records of ``run_dirs`` (runs without ``eta/*`` entries are skipped; steps
    present in every run that has them)."""
    per_task: dict[str, list[dict[int, float]]] = {}
    for d in run_dirs:
        path = Path(d) / "metrics.jsonl"
        if not path.is_file():
            continue
        series: dict[str, dict[int, float]] = {}
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") != "train":
                continue
            for key, value in rec.items():
                if key.startswith("eta/"):
                    series.setdefault(key[4:], {})[int(rec["env_steps"])] = float(value)
        for task, points in series.items():
            per_task.setdefault(task, []).append(points)
    out = {}
    for task, runs in per_task.items():
        steps = sorted(set.intersection(*(set(r) for r in runs)))
        out[task] = (np.array(steps, dtype=np.int64),
                     np.array([np.mean([r[s] for r in runs]) for s in steps]))
    return out


def plot_eta_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """One line per source task: mean eta against env steps (PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for task, (x, y) in curves.items():
        ax.plot(x, y, marker="o", label=task)
    ax.set_xlabel("env steps")
    ax.set_ylabel("task weight eta")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def xtra_sections(out: Path, run_dirs: Mapping[str, Sequence[str | Path]]
                  ) -> dict[str, str]:
    """Markdown sections for :func:`~rltransfer.evaluation.report.write_report`: the eta
    curves of every variant with cross-task data (figure + final weights + whether they
    collapsed to 0) and the student-vs-teacher table."""
    sections: dict[str, str] = {}
    lines = []
    for variant, dirs in run_dirs.items():
        curves = eta_curves(dirs)
        if not curves:
            continue
        fig = plot_eta_curves(curves, out / f"eta_{variant}.png")
        lines.append(f"![eta curves, {variant}]({fig.name})")
        lines.append("")
        lines.append("| task | final eta (mean over seeds) | min over the run |")
        lines.append("|---|---|---|")
        for task, (_, y) in curves.items():
            lines.append(f"| {task} | {y[-1]:.2f} | {y.min():.2f} |")
        collapsed = [t for t, (_, y) in curves.items() if y[-1] == 0.0]
        lines.append("")
        lines.append(f"{variant}: weights collapsed to 0 for {', '.join(collapsed)}."
                     if collapsed else f"{variant}: no task weight collapsed to 0.")
        lines.append("")
    if lines:
        sections["Task weights (eta)"] = "\n".join(lines)
    try:
        rows = student_vs_teacher(out / "student")
    except CheckpointError as e:
        sections["Student vs teachers"] = f"not available: {e}"
        return sections
    table = ["| source task | student | teacher | student / teacher | note |",
             "|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}"
        table.append(f"| {r['task']} | {r['student']:.2f} | {r['teacher']:.2f} | {ratio} | "
                     f"{r['deviation'] or ''} |")
    sections["Student vs teachers"] = "\n".join(table)
    return sections
