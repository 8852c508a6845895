"""Env steps/s of the local training loop against the Ray backend (same config).

Both runs use the same :class:`TrainConfig` (total envs, network, replay ratio); the Ray run
splits the envs over ``--num-actors`` actor processes. Two regimes:

* ``acting``: learning off (``learning_starts`` beyond the budget): the acting throughput,
  where Ray's actors step in parallel and pay the transport of chunks to the learner;
* ``training``: learning on at ``--updates-per-env-step``: the learner's updates overlap with
  the actors' acting under Ray, while the local loop alternates them.

Reported: env steps/s of ``Trainer._loop`` over the whole loop, and in steady state (from the
first round received, i.e. without the actors' start-up; for the local loop from the first
step); ``ray.init`` is timed separately and excluded. Evaluation and checkpoints are pushed
beyond the budget.

Usage::

    python benchmarks/ray_throughput.py [--env-id MinAtar/Breakout-v1] [--num-envs 8]
        [--num-actors 2] [--env-steps 20000] [--chunk-steps 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from typing import Any

import torch

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import Trainer
from rltransfer.core.metrics import MetricsLogger
from rltransfer.distributed import ActorPool, Round, init_ray


def loop_env_steps_per_second(cfg: TrainConfig) -> tuple[float, float, int]:
    """Run ``Trainer._loop`` for ``cfg`` in a temporary run dir; returns ``(env steps/s
    overall, env steps/s in steady state, gradient updates)``."""
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(dataclasses.replace(cfg, run_dir=tmp))
        trainer.learning_starts_at = cfg.learning_starts_env_steps
        logger = MetricsLogger(tmp, tensorboard=False)
        gather, after = ActorPool.gather, Trainer._after_env_steps

        def timed_gather(pool: ActorPool) -> Round | None:
            got = gather(pool)
            if not marks:
                marks.append((time.perf_counter(), trainer.env_steps))
            return got

        def timed_after(self: Trainer, n: int, *args: Any) -> None:
            if not marks and self.cfg.backend == "local":
                marks.append((time.perf_counter(), self.env_steps))
            after(self, n, *args)

        ActorPool.gather = timed_gather
        Trainer._after_env_steps = timed_after
        try:
            start = time.perf_counter()
            trainer._loop(logger)
            end = time.perf_counter()
        finally:
            ActorPool.gather, Trainer._after_env_steps = gather, after
        logger.close()
        trainer.envs.close()
    t0, steps0 = marks[0]
    return (trainer.env_steps / (end - start), (trainer.env_steps - steps0) / (end - t0),
            trainer.num_updates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="MinAtar/Breakout-v1")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-actors", type=int, default=2)
    parser.add_argument("--env-steps", type=int, default=20_000)
    parser.add_argument("--chunk-steps", type=int, default=16)
    parser.add_argument("--updates-per-env-step", type=float, default=0.25)
    parser.add_argument("--regimes", nargs="+", default=["acting", "training"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    start = time.perf_counter()
    init_ray(num_cpus=max(args.num_actors, os.cpu_count() or 1))
    print(f"ray.init: {time.perf_counter() - start:.1f} s (excluded below)")
    never = 10**12
    base = TrainConfig(
        env_id=args.env_id, num_envs=args.num_envs, total_env_steps=args.env_steps,
        eval_every_env_steps=never, checkpoint_every_env_steps=never,
        replay_capacity_env_steps=max(args.env_steps, 10_000), tensorboard=False,
        progress=False, updates_per_env_step=args.updates_per_env_step,
        num_actors=args.num_actors, actor_chunk_steps=args.chunk_steps,
        agent=R2D2Config(feature_dim=64, hidden=64, batch_size=32),
    )
    for regime in args.regimes:
        starts = never if regime == "acting" else 1_000
        cfg = dataclasses.replace(base, learning_starts_env_steps=starts)
        local, local_steady, local_updates = loop_env_steps_per_second(
            dataclasses.replace(cfg, backend="local"))
        remote, remote_steady, remote_updates = loop_env_steps_per_second(
            dataclasses.replace(cfg, backend="ray"))
        print(f"{args.env_id} {regime:8s} num_envs={args.num_envs} env steps/s (overall / "
              f"steady): local {local:7,.0f} / {local_steady:7,.0f} ({local_updates} updates)"
              f" | ray x{args.num_actors} {remote:7,.0f} / {remote_steady:7,.0f} "
              f"({remote_updates} updates) | steady ratio {remote_steady / local_steady:.2f}")


if __name__ == "__main__":
    main()
