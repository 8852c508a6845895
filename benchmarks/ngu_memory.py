"""Per-step cost of NGU's episodic memory: compute the k-NN reward and insert, for B envs.

One call of :meth:`EpisodicMemory.compute_and_insert` scores one embedding per env against
that env's memory (k = 10, D = 32, capacity 30,000) and appends it. The memory is pre-filled
to each fill level with random embeddings, and the fill count is held there during timing
(the counter is rewound before each call), so each row measures exactly that fill.

Usage::

    python benchmarks/ngu_memory.py [--device cpu|cuda] [--threads 1] [--steps 200]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from rltransfer.intrinsic.episodic_memory import EpisodicMemory

NUM_ENVS = (8, 32)
FILLS = (1_000, 10_000, 30_000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(num_envs: int, fill: int, steps: int, device: torch.device,
                 dim: int = 32, capacity: int = 30_000, seed: int = 0) -> float:
    """Median seconds of one ``compute_and_insert`` for ``num_envs`` envs at ``fill``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    memory = EpisodicMemory(num_envs, dim, capacity=capacity, device=device)
    memory.insert_many(torch.randn(num_envs, fill, dim, generator=gen).to(device))
    queries = torch.randn(steps + 10, num_envs, dim, generator=gen).to(device)
    times = []
    for t in range(steps + 10):
        memory.num_inserted[:] = fill
        _sync(device)
        start = time.perf_counter()
        memory.compute_and_insert(queries[t]).cpu()  # the reward goes back to the host
        _sync(device)
        if t >= 10:  # warm-up
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=200, help="timed calls per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {where}; torch {torch.__version__}; {args.threads} CPU thread(s); "
          f"D = 32, k = 10, capacity 30,000; median of {args.steps} calls")
    print(f"{'envs B':>6} {'fill':>7} {'ms/step':>9} {'us/env-step':>12}")
    for num_envs in NUM_ENVS:
        for fill in FILLS:
            sec = step_seconds(num_envs, fill, args.steps, device)
            print(f"{num_envs:>6} {fill:>7} {sec * 1e3:>9.3f} {sec * 1e6 / num_envs:>12.1f}")


if __name__ == "__main__":
    main()
