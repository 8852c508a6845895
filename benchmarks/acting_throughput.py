"""Acting-loop throughput against the raw vector env (the loop's overhead).

The acting loop is the training loop with learning switched off: frame stacking, a Q-network
forward pass for the whole batch, the explorer, the env step, and the replay write. The raw
number steps the same vector env with pre-sampled random actions. Their ratio is the share of
env speed the loop keeps; results go in ``docs/benchmarks.md``.

Usage::

    python benchmarks/acting_throughput.py [--num-envs 8] [--env-steps 16000] [ENV_ID ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from benchmarks.raw_env_throughput import raw_env_steps_per_second
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import Trainer
from rltransfer.core.metrics import MetricsLogger

DEFAULT_ENV_IDS = ("MinAtar/Breakout-v1", "ALE/Pong-v5")


def acting_env_steps_per_second(env_id: str, num_envs: int, env_steps: int,
                                explore: str = "epsilon_greedy") -> float:
    """Env steps/s of the training loop with no learning updates (summed over envs)."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            env_id=env_id, num_envs=num_envs, total_env_steps=env_steps, run_dir=tmp,
            learning_starts_env_steps=10**12, eval_every_env_steps=10**12,
            checkpoint_every_env_steps=10**12, replay_capacity_env_steps=max(env_steps, 1000),
            tensorboard=False, progress=False, explore=explore,  # type: ignore[arg-type]
            agent=dataclasses.replace(R2D2Config()),
        )
        trainer = Trainer(cfg)
        trainer.learning_starts_at = 10**12
        logger = MetricsLogger(tmp, tensorboard=False)
        start = time.perf_counter()
        trainer._loop(logger)
        elapsed = time.perf_counter() - start
        logger.close()
        trainer.envs.close()
    return trainer.env_steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--env-steps", type=int, default=16_000)
    parser.add_argument("env_ids", nargs="*", default=list(DEFAULT_ENV_IDS))
    args = parser.parse_args()
    for env_id in args.env_ids:
        raw = raw_env_steps_per_second(env_id, args.num_envs, args.env_steps // args.num_envs)
        acting = acting_env_steps_per_second(env_id, args.num_envs, args.env_steps)
        print(f"{env_id:24s} num_envs={args.num_envs}  raw {raw:10,.0f}  acting {acting:10,.0f} "
              f"env steps/s  ratio {acting / raw:.2f}")


if __name__ == "__main__":
    main()
