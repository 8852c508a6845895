"""Replay memory per transition for pixel SAC on DeepMind Control.

Our :class:`rltransfer.replay.TransitionReplay` stores each RGB frame once (stacks and next
observations are rebuilt at sampling time), plus a float32 action, reward, flags and the sum
tree. The public PAD / Kadavath et al. code stores ``obs`` and ``next_obs`` as full
``frame_stack * 3 x 100 x 100`` uint8 stacks per transition (they render 100 and crop to 84 at
sampling), i.e. ``2 * 9 * 100 * 100 = 180,000`` bytes plus the action and reward.

Usage::

    python benchmarks/replay_memory.py [--capacity 10000]
"""

from __future__ import annotations

import argparse

import numpy as np

from rltransfer.replay import TransitionReplay


def bytes_per_transition(render_size: int, frame_stack: int = 3, action_dim: int = 6,
                         capacity: int = 10_000) -> float:
    """Exact ``nbytes / capacity`` of a continuous-action replay of RGB frames."""
    replay = TransitionReplay(
        1, capacity, (3, render_size, render_size), frame_stack=frame_stack, n_step=1,
        gamma=0.99, prioritized=False, action_shape=(action_dim,), action_dtype=np.float32,
    )
    return replay.nbytes / capacity


def public_code_bytes_per_transition(render_size: int = 100, frame_stack: int = 3,
                                     action_dim: int = 6) -> int:
    """obs + next_obs stacks (uint8) + float32 action + float32 reward + float32 not_done."""
    return 2 * 3 * frame_stack * render_size**2 + 4 * action_dim + 4 + 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--capacity", type=int, default=10_000)
    args = parser.parse_args()
    public = public_code_bytes_per_transition()
    print("| storage | render | bytes / transition | 100k transitions |")
    print("|---|---|---|---|")
    for size in (84, 100):
        ours = bytes_per_transition(size, capacity=args.capacity)
        print(f"| rltransfer (frame once) | {size} | {ours:,.0f} | {ours * 1e5 / 2**30:.2f} GiB |")
    print(f"| PAD / Kadavath code (obs + next_obs stacks) | 100 | {public:,} | "
          f"{public * 1e5 / 2**30:.2f} GiB |")


if __name__ == "__main__":
    main()
