"""Raw environment throughput (no agent): env steps per second of `make_env` per suite.

Usage: ``python benchmarks/raw_env_throughput.py [--num-envs 8] [--steps 2000]``.
Prints numbers; asserts nothing (machine dependent).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rltransfer.envs import make_env

DEFAULT_ENV_IDS = ("MiniGrid-DoorKey-8x8-v0", "MinAtar/Breakout-v1", "ALE/Pong-v5")


def raw_env_steps_per_second(env_id: str, num_envs: int, steps: int, seed: int = 0) -> float:
    """Measure raw stepping speed of ``make_env(env_id, num_envs, seed)`` with uniform random
    actions (pre-sampled, so sampling is not timed).

    Args:
        env_id: any id accepted by `make_env`.
        num_envs: B, the vector width.
        steps: number of vector ``step`` calls timed (after one untimed warm-up step).
        seed: base seed.

    Returns:
        Env steps per second summed over the B envs: ``num_envs * steps / seconds``
        (multiply by ``env_spec(env_id).frames_per_env_step`` for frames per second).

    Raises:
        ValueError: ``steps < 1``; plus whatever `make_env` raises for the id.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    env = make_env(env_id, num_envs, seed)
    try:
        env.reset()
        n_actions = int(env.single_action_space.n)  # type: ignore[attr-defined]
        actions = np.random.default_rng(seed).integers(0, n_actions, size=(steps + 1, num_envs))
        env.step(actions[0])
        start = time.perf_counter()
        for t in range(1, steps + 1):
            env.step(actions[t])
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return num_envs * steps / elapsed


def main() -> None:
    """Print env steps/s for each default suite id."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("env_ids", nargs="*", default=list(DEFAULT_ENV_IDS))
    args = parser.parse_args()
    for env_id in args.env_ids:
        rate = raw_env_steps_per_second(env_id, args.num_envs, args.steps)
        print(f"{env_id:28s} num_envs={args.num_envs:3d}  {rate:12,.0f} env steps/s")


if __name__ == "__main__":
    main()
