"""Learning benchmark of EfficientZero on a CPU: ``ez-small`` on MinAtar Breakout, 3 seeds.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ez_small_learning.py --out runs/bench-ez-small
    # or seeds in parallel processes, then the report:
    python benchmarks/ez_small_learning.py --seed-list 1 --out ... &   (one per seed)
    python benchmarks/ez_small_learning.py --report-only --out ...

Writes ``<out>/report.md`` (IQM / mean / median of the final greedy-search return with 95%
stratified-bootstrap CIs, learning curves) and prints the mean return of a uniformly random
policy over the same evaluation protocol, the reference the threshold is stated against.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np

from rltransfer.agents.efficientzero.train import train_efficientzero
from rltransfer.core.policy import RandomPolicy
from rltransfer.evaluation.protocol import evaluate_policy
from rltransfer.evaluation.report import collect_runs, write_report
from rltransfer.experiments.efficientzero import ez_small


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total-env-steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", type=int, nargs="*", default=None,
                        help="train only these seeds (no report)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--env-id", default="MinAtar/Breakout-v1")
    parser.add_argument("--out", default="runs/bench-ez-small")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    seeds = args.seed_list if args.seed_list is not None else range(args.seeds)
    if not args.report_only:
        for seed in seeds:
            cfg = ez_small(run_dir=str(out / "runs" / f"seed_{seed}"), seed=seed,
                           env_id=args.env_id, total_env_steps=args.total_env_steps)
            cfg = dataclasses.replace(cfg, progress=False, tensorboard=False)
            result = train_efficientzero(cfg)
            print(f"seed {seed}: final return {result.final_return_mean:.2f} "
                  f"({result.wall_seconds:.0f}s)", flush=True)
        if args.seed_list is not None:
            return
    run_dirs = [out / "runs" / f"seed_{seed}" for seed in range(args.seeds)]
    probe = ez_small()
    random_returns = evaluate_policy(
        RandomPolicy(num_actions=_num_actions(args.env_id), seed=0), args.env_id,
        num_episodes=32, seed=12_345, frame_stack=probe.frame_stack,
    )
    finals, curves = collect_runs({"ez-small": run_dirs})
    report = write_report(
        out / "report.md", f"EfficientZero ez-small on {args.env_id}", finals,
        learning_curves=curves, zero_shot={"uniform random policy": random_returns},
        description=f"{args.total_env_steps} env steps per seed, 8 simulations, small "
                    f"network; machine {platform.machine()}, {time.perf_counter() - start:.0f}s "
                    "in all.",
    )
    print(f"random policy mean return {np.mean(random_returns):.2f}; report {report}")


def _num_actions(env_id: str) -> int:
    from rltransfer.envs import make_env

    env = make_env(env_id, 1, 0)
    n = int(env.single_action_space.n)  # type: ignore[attr-defined]
    env.close()
    return n


if __name__ == "__main__":
    main()
