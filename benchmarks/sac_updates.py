"""SAC learner throughput: updates per second at batch 128 on 84x84x9 (3 stacked RGB frames).

Measures :meth:`rltransfer.agents.sac.learner.SACAgent.update` (critic every update, actor +
temperature + soft target update every 2nd, DrQ shift augmentation) with the paper's sizes
(hidden 1024; drq4: feature 50, pad11: feature 100) on random uint8 batches, for the two
pixel encoders and 1 / 2 torch threads. Sampling from replay is not included (see
``benchmarks/replay_memory.py``).

Usage::

    python benchmarks/sac_updates.py [--updates 20] [--threads 1 2] [--kinds drq4 pad11]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rltransfer.agents.sac.config import SACConfig
from rltransfer.agents.sac.learner import SACAgent
from rltransfer.nets.pixel_encoders import PixelEncoderConfig

FEATURE_DIM = {"drq4": 50, "pad11": 100}


def sac_updates_per_second(kind: str, threads: int, updates: int, batch_size: int = 128,
                           device: str = "cpu", augmentation: str = "shift") -> float:
    """Updates/s of one SAC agent on random 9x84x84 batches (after 2 warm-up updates)."""
    torch.set_num_threads(threads)
    agent = SACAgent(SACConfig(batch_size=batch_size, augmentation=augmentation), (9, 84, 84),
                     6, PixelEncoderConfig(kind=kind, feature_dim=FEATURE_DIM[kind]),
                     device=device)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.integers(0, 256, (batch_size, 9, 84, 84), dtype=np.uint8),
        "next_obs": rng.integers(0, 256, (batch_size, 9, 84, 84), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (batch_size, 6)).astype(np.float32),
        "n_step_return": rng.normal(size=batch_size).astype(np.float32),
        "bootstrap_discount": np.full(batch_size, 0.99, np.float32),
    }
    for _ in range(2):
        agent.update(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(updates):
        agent.update(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinds", nargs="+", default=["drq4", "pad11"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print("| encoder | threads | device | updates/s (batch 128, 9x84x84) |")
    print("|---|---|---|---|")
    for kind in args.kinds:
        for threads in args.threads:
            rate = sac_updates_per_second(kind, threads, args.updates, device=args.device)
            print(f"| {kind} | {threads} | {args.device} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
