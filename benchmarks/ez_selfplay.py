"""Self-play speed of EfficientZero: env steps/s of acting by batched MCTS with a real
network (one initial inference + ``num_simulations`` batched recurrent inferences per step
for all envs), on MinAtar with the ``small`` preset and on Atari (96x96 RGB, stack 4) with the
paper's ``atari`` preset.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ez_selfplay.py --simulations 50 --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import numpy as np
import torch

from rltransfer.agents.efficientzero.actor import SearchPolicy
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.networks import EfficientZeroNet, world_model_preset
from rltransfer.envs import env_spec, make_env
from rltransfer.replay import FrameStacker


def run(env_id: str, preset: str, num_envs: int, simulations: int, steps: int,
        **env_kwargs: object) -> float:
    envs = make_env(env_id, num_envs, 0, **env_kwargs)  # type: ignore[arg-type]
    spec = env_spec(env_id)
    stack = 4 if spec.suite == "atari" else spec.frame_stack
    shape = envs.single_observation_space.shape
    assert shape is not None
    c, h, w = shape
    net_cfg = dataclasses.replace(world_model_preset(preset), obs_scale=spec.obs_scale)
    n_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]
    net = EfficientZeroNet(net_cfg, (c * stack, h, w), n_actions)
    policy = SearchPolicy(net, MCTSConfig(num_simulations=simulations), n_actions,
                          deterministic=False)
    stacker = FrameStacker(num_envs, (c, h, w), stack)
    obs, _ = envs.reset(seed=0)
    first = np.ones(num_envs, dtype=bool)
    for i in range(steps + 2):
        if i == 2:  # exclude numba compile / first-call costs
            start = time.perf_counter()
        actions, _ = policy.act(stacker.push(obs, first), None, first)
        obs, _, term, trunc, _ = envs.step(actions)
        first = term | trunc
    rate = steps * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, torch threads 1, {args.simulations} simulations")
    for env_id, preset, b, kw in (
        ("MinAtar/Breakout-v1", "small", 8, {}),
        ("MinAtar/Breakout-v1", "small", 32, {}),
        ("ALE/Pong-v5", "atari", 8, {"frame_size": 96, "grayscale": False}),
    ):
        rate = run(env_id, preset, b, args.simulations, args.steps, **kw)
        print(f"{env_id:22s} preset={preset:6s} envs={b:3d}: {rate:8.1f} env steps/s",
              flush=True)


if __name__ == "__main__":
    main()
