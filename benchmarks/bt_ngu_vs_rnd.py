"""BT(pi_NGU) vs BT(pi_RND) on the demo task, where Behavior Transfer learns at CPU budgets.

The ``bt-minigrid`` recipe (the demo): reward-free pretraining on MiniGrid DoorKey-5x5 for
20k env steps with a feedforward R2D2 agent, then 25k env steps on the ``goal`` task with
Behavior Transfer (the frozen pretrained policy drives zeta-distributed flights, Campos et
al. 2021). The recipe is run twice, once with RND and once with NGU's intrinsic reward
(Badia et al. 2020) in pretraining. The scratch epsilon-greedy baseline is the same in both
and runs once.

Usage (about 20 minutes on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/bt_ngu_vs_rnd.py --out runs/bt_ngu_vs_rnd

Writes ``<out>/report.md``: IQM / mean of the final greedy return with 95%
stratified-bootstrap CIs (rliable), learning curves, and each pretrained policy's zero-shot
return on the task. Re-running resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.experiments.behavior_transfer import bt_minigrid, run_experiment
from rltransfer.intrinsic.ngu import NGUConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/bt_ngu_vs_rnd")
    args = p.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    base = bt_minigrid()
    ngu_pretrain = dataclasses.replace(
        base.pretrain, intrinsic="ngu",
        ngu=NGUConfig(embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=64,
                      rnd_hidden=128),
    )
    experiments = {
        "rnd": dataclasses.replace(base, name="bt-minigrid (RND)", num_seeds=args.seeds,
                                   workers=args.workers,
                                   strategies=("bt", "scratch_eps_greedy")),
        "ngu": dataclasses.replace(base, name="bt-minigrid (NGU)", pretrain=ngu_pretrain,
                                   num_seeds=args.seeds, workers=args.workers,
                                   strategies=("bt",)),
    }
    for name, exp in experiments.items():
        run_experiment(exp, out / name)
    seeds = range(args.seeds)
    run_dirs = {
        "BT(pi_NGU)": [out / "ngu" / "runs" / "bt" / f"seed_{k}" for k in seeds],
        "BT(pi_RND)": [out / "rnd" / "runs" / "bt" / f"seed_{k}" for k in seeds],
        "scratch (epsilon-greedy)": [out / "rnd" / "runs" / "scratch_eps_greedy" / f"seed_{k}"
                                     for k in seeds],
    }
    finals, curves = collect_runs(run_dirs)
    zero_shot = {}
    for name in experiments:
        path = out / name / "zero_shot.json"
        if path.is_file():
            zero_shot[f"pi_{name.upper()} (no training)"] = json.loads(path.read_text())["returns"]
    report = write_report(
        out / "report.md", "BT(pi_NGU) vs BT(pi_RND) on MiniGrid DoorKey-5x5 (goal)", finals,
        learning_curves=curves, zero_shot=zero_shot or None,
        description=(f"bt-minigrid recipe: 20k reward-free pretraining env steps with RND or "
                     f"NGU, then 25k env steps on the goal task; {args.seeds} seeds; "
                     f"{time.perf_counter() - start:.0f}s in all."),
    )
    for k, v in finals.items():
        print(f"{k:<26} final returns {' '.join(f'{x:.3f}' for x in v)}  mean {np.mean(v):.3f}")
    print(f"report {report}")


if __name__ == "__main__":
    main()
