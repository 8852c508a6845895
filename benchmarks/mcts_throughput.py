"""Tree-search throughput of ``BatchedMCTS`` with a stub network (the search's own overhead).

The stub returns pre-generated random outputs (latent [B, 64, 6, 6] as in EfficientZero's Atari
network, reward-LSTM hidden [1, B, 512], random value prefixes, values and logits), so the
time measured is the tree work alone: the numba select and expand/backup kernels, the latent /
hidden pool gathers and writes, and Python overhead per simulation. Numba compilation is
excluded (one warm-up search per batch size; kernels are cached on disk with njit(cache=True)).

Usage::

    python benchmarks/mcts_throughput.py [--batch-sizes 1 8 64] [--simulations 50] \
        [--actions 18] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from rltransfer.agents.efficientzero.mcts import BatchedMCTS, MCTSConfig, ModelOutput

LATENT_SHAPE = (64, 6, 6)
REWARD_HIDDEN = 512


class StubModel:
    """A SearchModel with negligible cost: cycles through pre-generated random outputs."""

    def __init__(self, batch: int, num_actions: int, seed: int = 0, pool: int = 8) -> None:
        g = np.random.default_rng(seed)
        self.outputs = [
            ModelOutput(
                latent=torch.randn(batch, *LATENT_SHAPE),
                reward_hidden=(torch.randn(1, batch, REWARD_HIDDEN),
                               torch.randn(1, batch, REWARD_HIDDEN)),
                value_prefix=g.normal(size=batch).astype(np.float32),
                value=g.normal(size=batch).astype(np.float32),
                policy_logits=g.normal(size=(batch, num_actions)).astype(np.float32),
            )
            for _ in range(pool)
        ]
        self.calls = 0

    def recurrent_inference(self, latent: torch.Tensor,
                            reward_hidden: tuple[torch.Tensor, torch.Tensor],
                            actions: torch.Tensor) -> ModelOutput:
        self.calls += 1
        return self.outputs[self.calls % len(self.outputs)]

    def root(self) -> ModelOutput:
        out = self.outputs[0]
        return ModelOutput(out.latent, (torch.zeros_like(out.reward_hidden[0]),
                                        torch.zeros_like(out.reward_hidden[1])),
                           np.zeros_like(out.value_prefix), out.value, out.policy_logits)


def measure(batch: int, num_simulations: int, num_actions: int, seconds: float) -> dict[str, float]:
    """Time repeated searches for ``seconds``; returns simulations/s (summed over the batch),
    searches/s (roots searched per second) and milliseconds per batched search call."""
    mcts = BatchedMCTS(MCTSConfig(num_simulations=num_simulations), num_actions)
    model = StubModel(batch, num_actions)
    root = model.root()
    rng = np.random.default_rng(0)
    mcts.search(model, root, rng)  # warm-up (numba load / compile)
    model.calls = 0
    t0 = time.perf_counter()
    n = 0
    while n == 0 or time.perf_counter() - t0 < seconds:
        mcts.search(model, root, rng)
        n += 1
    elapsed = time.perf_counter() - t0
    # cost of the stub itself, for reference
    t1 = time.perf_counter()
    for _ in range(model.calls):
        model.recurrent_inference(root.latent, root.reward_hidden, torch.zeros(batch))
    t_stub = time.perf_counter() - t1
    return {
        "sims_per_s": n * batch * num_simulations / elapsed,
        "searches_per_s": n * batch / elapsed,
        "ms_per_call": 1000.0 * elapsed / n,
        "stub_share": t_stub / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    measure(1, 2, args.actions, 0.0)  # first numba load: compile or read the on-disk cache
    first = time.perf_counter() - t0
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
          f"cpus={os.cpu_count()} torch_threads={torch.get_num_threads()} "
          f"python={platform.python_version()} torch={torch.__version__}")
    print(f"first search incl. numba compile/cache load: {first:.2f} s (excluded below)")
    print(f"simulations={args.simulations} actions={args.actions} latent={LATENT_SHAPE} "
          f"reward_hidden={REWARD_HIDDEN}")
    print(f"{'batch':>6} {'sims/s':>12} {'roots/s':>10} {'ms/search':>10} {'stub %':>7}")
    for b in args.batch_sizes:
        r = measure(b, args.simulations, args.actions, args.seconds)
        print(f"{b:>6} {r['sims_per_s']:>12,.0f} {r['searches_per_s']:>10,.1f} "
              f"{r['ms_per_call']:>10.2f} {100 * r['stub_share']:>6.1f}%")


if __name__ == "__main__":
    main()
