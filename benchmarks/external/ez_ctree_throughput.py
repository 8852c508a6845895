"""Tree-work throughput of EfficientZero's public C++ tree (YeWR/EfficientZero core/ctree),
for comparison with benchmarks/mcts_throughput.py. The C++ tree is NOT part of rltransfer and
is not committed: build it yourself and point PYTHONPATH at the built module:

    git clone https://github.com/YeWR/EfficientZero && cd EfficientZero/core/ctree
    python -m venv /tmp/ezvenv && /tmp/ezvenv/bin/pip install cython numpy setuptools
    /tmp/ezvenv/bin/python setup.py build_ext --inplace
    PYTHONPATH=$PWD /tmp/ezvenv/bin/python benchmarks/external/ez_ctree_throughput.py

The driver mirrors EfficientZero's own search loop (core/ctree usage in core/mcts.py): per
simulation one batch_traverse, a stub "network" (random numpy outputs, negligible cost,
converted to Python lists as EfficientZero does) and one batch_back_propagate.
"""

from __future__ import annotations

import platform
import time

import cytree  # type: ignore[import-not-found]
import numpy as np


def run(batch: int, num_actions: int, num_simulations: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    total_sims = 0
    start = time.perf_counter()
    for _ in range(repeats):
        roots = cytree.Roots(batch, num_actions, num_simulations)
        noises = [rng.dirichlet([0.3] * num_actions).astype(np.float32).tolist()
                  for _ in range(batch)]
        roots.prepare(0.25, noises, [0.0] * batch,
                      rng.standard_normal((batch, num_actions)).astype(np.float32).tolist())
        min_max = cytree.MinMaxStatsList(batch)
        min_max.set_delta(0.01)
        for sim in range(num_simulations):
            results = cytree.ResultsWrapper(batch)
            cytree.batch_traverse(roots, 19652, 1.25, 0.997, min_max, results)
            # stub network outputs (EfficientZero converts tensors to lists here too)
            value_prefix = rng.standard_normal(batch).astype(np.float32).tolist()
            value = rng.standard_normal(batch).astype(np.float32).tolist()
            logits = rng.standard_normal((batch, num_actions)).astype(np.float32).tolist()
            is_reset = [int((sim + 1) % 5 == 0)] * batch
            cytree.batch_back_propagate(sim + 1, 0.997, value_prefix, value, logits, min_max,
                                        results, is_reset)
        roots.get_distributions()
        roots.get_values()
        total_sims += batch * num_simulations
    return total_sims / (time.perf_counter() - start)


def main() -> None:
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, python {platform.python_version()}")
    print("EfficientZero C++ tree (stub network), 50 simulations, 18 actions")
    print(f"{'batch':>6} {'simulations/s':>14} {'searches/s':>11}")
    for batch in (1, 8, 64):
        repeats = max(2, 256 // batch)
        run(batch, 18, 50, 1)  # warm-up
        sims = run(batch, 18, 50, repeats)
        print(f"{batch:>6} {sims:>14,.0f} {sims / 50:>11,.1f}")


if __name__ == "__main__":
    main()
