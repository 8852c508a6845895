"""Benchmark of inverse-dynamics (IK) encoder pretraining for pixel SAC on reacher-easy:
the ``ik-reacher`` recipe (IK-pretrained vs scratch, 3 seeds), scaled by the flags below.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ik_reacher.py --rl-env-steps 2000 \
        --ik-transitions 2000 --ik-epochs 5 --out runs/bench-ik-reacher

Writes ``<out>/report.md`` and ``<out>/reacher-easy/report.md`` (IQM / mean / median of the
final return with 95% stratified-bootstrap CIs, learning curves).
"""

from __future__ import annotations

import argparse
import dataclasses

from rltransfer.experiments.encoder_recipes import ik_reacher
from rltransfer.methods.encoder_pretraining.experiment import run_encoder_experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rl-env-steps", type=int, default=6_000)
    parser.add_argument("--ik-transitions", type=int, default=5_000)
    parser.add_argument("--ik-epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default="runs/bench-ik-reacher")
    args = parser.parse_args()
    exp = ik_reacher()
    n = args.rl_env_steps
    exp = dataclasses.replace(
        exp, num_seeds=args.seeds, workers=args.workers,
        ik=dataclasses.replace(exp.ik, num_transitions=args.ik_transitions,
                               epochs=args.ik_epochs),
        sac=dataclasses.replace(exp.sac, total_env_steps=n, replay_capacity_env_steps=n,
                                eval_every_env_steps=max(250, n // 4),
                                checkpoint_every_env_steps=max(500, n // 2)),
    )
    print(run_encoder_experiment(exp, args.out))


if __name__ == "__main__":
    main()
