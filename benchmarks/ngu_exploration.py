"""Reward-free exploration with NGU vs RND vs a uniform random policy, then Behavior Transfer.

Stage 1 (pretraining, no reward): the same R2D2 agent (small MLP torso, LSTM core without
reward inputs, so the saved policy acts the same way as BT's prior) is trained on a MiniGrid
maze by :func:`rltransfer.agents.r2d2.train.train` with ``reward_free=True`` and

* ``ngu``: NGU's intrinsic reward (episodic k-NN novelty x RND life-long multiplier,
  Badia et al. 2020), one policy (``num_policies=1``);
* ``ngu_family``: the same with NGU's policy family (``--family N``; env ``i`` acts as
  ``j = i mod N``, the saved/evaluated policy is the most exploratory ``j = N - 1``), for the
  exploration table only;
* ``rnd``: RND (Burda et al. 2019);
* ``random``: uniform random actions (epsilon 1, no updates),

all at the SAME env-step budget. Exploration is measured as distinct states, where a state is
either the agent's (x, y, direction) or the hash of the full grid (fully observable
encoding: it also changes with the key's and door's states):

* ``train``: over the last ``--window`` env steps of training, read back from the replay
  saved in the run's last checkpoint: the mean number of distinct states per complete
  episode, and the total distinct over the window (all envs);
* ``eval``: ``--eval-episodes`` episodes of the final policy (epsilon ``--prior-epsilon``,
  the way BT runs it as pi_p): mean distinct per episode and total.

Stage 2 (transfer): BT(pi_NGU), BT(pi_RND) and scratch (epsilon-greedy) on ``--task`` with
``--seeds`` seeds each; IQM of the final evaluation returns with 95% stratified-bootstrap CIs
(:func:`rltransfer.evaluation.aggregate.aggregate_scores`).

Usage (the recorded run; 20-35 minutes on one core of a shared 2-core machine)::

    OMP_NUM_THREADS=1 python benchmarks/ngu_exploration.py --out runs/ngu_exploration

``--quick`` shrinks every budget for a smoke test (about a minute).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rltransfer.agents.agent_policy import load_policy
from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.agents.r2d2.train import train
from rltransfer.core.checkpoint import latest_checkpoint, load_checkpoint
from rltransfer.envs import make_env
from rltransfer.evaluation.aggregate import aggregate_scores
from rltransfer.experiments.behavior_transfer import _small_agent
from rltransfer.intrinsic.ngu import NGUConfig

AGENT_CELL = 10  # minigrid OBJECT_TO_IDX["agent"]; its state channel holds the direction


def agent_pose_keys(frames: np.ndarray) -> np.ndarray:
    """``(x, y, dir)`` of the agent as one int64 per frame.

    Args:
        frames: ``uint8[K, 3, H, W]`` fully observable MiniGrid encodings.

    Returns:
        ``int64[K]`` ``(y * W + x) * 4 + dir``; -1 where no agent cell is visible (zero
        frames).
    """
    k = frames.shape[0]
    is_agent = frames[:, 0].reshape(k, -1) == AGENT_CELL
    cell = is_agent.argmax(axis=1)
    direction = frames[:, 2].reshape(k, -1)[np.arange(k), cell].astype(np.int64)
    return np.where(is_agent.any(axis=1), cell.astype(np.int64) * 4 + direction, -1)


def grid_keys(frames: np.ndarray) -> np.ndarray:
    """Python's hash of each full grid's bytes (``uint8[K, 3, H, W]`` -> ``int64[K]``); only
    compared within one process (bytes hashes are salted per process)."""
    flat = np.ascontiguousarray(frames.reshape(frames.shape[0], -1))
    return np.array([hash(row.tobytes()) for row in flat], dtype=np.int64)


def coverage(episodes: list[np.ndarray]) -> dict[str, float]:
    """Distinct poses / grids per episode (mean) and in total over ``episodes``.

    Args:
        episodes: one ``uint8[K_e, 3, H, W]`` frame array per episode (every observation of
            the episode, its final one included).
    """
    if not episodes:
        return {"episodes": 0, "pose_per_episode": float("nan"), "pose_total": 0,
                "grid_per_episode": float("nan"), "grid_total": 0}
    poses = [agent_pose_keys(e) for e in episodes]
    grids = [grid_keys(e) for e in episodes]
    return {
        "episodes": len(episodes),
        "pose_per_episode": float(np.mean([np.unique(p[p >= 0]).size for p in poses])),
        "pose_total": int(np.unique(np.concatenate(poses)[np.concatenate(poses) >= 0]).size),
        "grid_per_episode": float(np.mean([np.unique(g).size for g in grids])),
        "grid_total": int(np.unique(np.concatenate(grids)).size),
    }


def replay_window_coverage(run_dir: Path, window_env_steps: int) -> dict[str, float]:
    """:func:`coverage` of the complete episodes in the last ``window_env_steps`` env steps
    (summed over envs) of a run, from the sequence replay in its last checkpoint."""
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}/checkpoints")
    tensors, _ = load_checkpoint(ckpt)
    frames = tensors["replay/frames"].numpy()  # [B, C, 3, H, W]
    first = tensors["replay/first"].numpy().astype(bool)
    num_added = int(tensors["replay/num_added"].reshape(-1)[0])
    b, cap = first.shape
    span = min(num_added, cap, max(1, window_env_steps // b))
    steps = np.arange(num_added - span, num_added)
    slots = steps % cap
    episodes: list[np.ndarray] = []
    for e in range(b):
        f = first[e, slots]
        starts = np.flatnonzero(f)
        # complete episodes: from a first slot to the slot before the next first slot
        for s0, s1 in itertools.pairwise(starts):
            episodes.append(frames[e, slots[s0:s1]])
    return coverage(episodes)


def rollout_coverage(policy: Any, env_id: str, num_episodes: int, seed: int,
                     num_envs: int = 8) -> dict[str, float]:
    """:func:`coverage` of ``num_episodes`` episodes of ``policy`` (``None``: uniform random
    actions) on the fully observable env, reward-free."""
    envs = make_env(env_id, num_envs, seed, reward_free=True)
    rng = np.random.default_rng(seed)
    space = envs.single_action_space
    assert isinstance(space, gym.spaces.Discrete), space
    n_actions = int(space.n)
    obs, _ = envs.reset()
    state = policy.reset(num_envs) if policy is not None else None
    first = np.ones(num_envs, dtype=bool)
    current: list[list[np.ndarray]] = [[obs[i]] for i in range(num_envs)]
    episodes: list[np.ndarray] = []
    started = num_envs
    active = np.ones(num_envs, dtype=bool)
    autoreset = np.zeros(num_envs, dtype=bool)
    try:
        while active.any():
            if policy is None:
                actions = rng.integers(0, n_actions, size=num_envs)
            else:
                actions, state = policy.act(obs, state, first)
            obs, _, term, trunc, _ = envs.step(actions)
            for i in range(num_envs):
                if not active[i]:
                    continue
                if autoreset[i]:  # obs is the next episode's first observation
                    if started < num_episodes:
                        started += 1
                        current[i] = [obs[i]]
                    else:
                        active[i] = False
                    continue
                current[i].append(obs[i])
                if term[i] or trunc[i]:
                    episodes.append(np.stack(current[i]))
            first = autoreset.copy()
            autoreset = term | trunc
    finally:
        envs.close()
    return coverage(episodes[:num_episodes])


def training_episode_return(run_dir: Path) -> float:
    """Mean task return of the training episodes in ``run_dir/metrics.jsonl`` (the behaviour
    policy's episodes, BT's flights included): how often exploration found the reward."""
    returns = [rec["ret"] for rec in map(json.loads, (run_dir / "metrics.jsonl").open())
               if rec.get("kind") == "episode"]
    return float(np.mean(returns)) if returns else float("nan")


def pretrain_config(method: str, args: argparse.Namespace, out: Path) -> TrainConfig:
    agent = _small_agent(
        core="lstm", feature_dim=64, hidden=64, lstm_hidden=64, sequence_length=20, burn_in=5,
        sequence_overlap=10, batch_size=16, core_reward_inputs=False,
    )
    if method == "ngu_family":
        agent = dataclasses.replace(agent, num_policies=args.family,
                                    eval_policy=args.family - 1, gamma_min=0.8)
    common: dict[str, Any] = dict(
        env_id=args.env, num_envs=8, seed=1_000, total_env_steps=args.pretrain_steps,
        run_dir=str(out / "pretrain" / method), reward_free=True, agent=agent,
        replay_capacity_env_steps=max(args.window, 20_000), learning_starts_env_steps=1_000,
        updates_per_env_step=0.25, eval_every_env_steps=10**9, eval_episodes=4,
        checkpoint_every_env_steps=10**9, epsilon_schedule="linear", epsilon=0.05,
        epsilon_decay_env_steps=max(1, args.pretrain_steps // 4), intrinsic_warmup_env_steps=500,
        progress=False, tensorboard=False, torch_threads=1,
    )
    if method in ("ngu", "ngu_family"):
        return TrainConfig(**common, intrinsic="ngu", intrinsic_scale=1.0, ngu=NGUConfig(
            embedding_torso="mlp", rnd_torso="mlp", rnd_feature_dim=64, rnd_hidden=128))
    if method == "rnd":
        return TrainConfig(**common, intrinsic="rnd", intrinsic_scale=1.0, rnd_torso="mlp",
                           rnd_feature_dim=64, rnd_hidden=128)
    if method == "random":
        common.update(epsilon_schedule="constant", epsilon=1.0,
                      learning_starts_env_steps=10 * args.pretrain_steps)
        return TrainConfig(**common, intrinsic="none")
    raise ValueError(f"unknown pretraining method {method!r}")


def transfer_config(strategy: str, seed: int, args: argparse.Namespace, out: Path) -> TrainConfig:
    base: dict[str, Any] = dict(
        env_id=args.env, task=args.task, num_envs=8, seed=seed,
        total_env_steps=args.transfer_steps, run_dir=str(out / "transfer" / strategy / str(seed)),
        agent=_small_agent(feature_dim=64, hidden=64), replay_capacity_env_steps=50_000,
        learning_starts_env_steps=1_000, updates_per_env_step=0.25,
        eval_every_env_steps=max(args.transfer_steps // 4, 1), eval_episodes=args.final_episodes,
        checkpoint_every_env_steps=10**9, checkpoint_replay=False, epsilon_schedule="linear",
        epsilon=0.05, epsilon_decay_env_steps=max(1, args.transfer_steps // 3),
        progress=False, tensorboard=False, torch_threads=1,
    )
    if strategy == "scratch":
        return TrainConfig(**base)
    prior = str(out / "pretrain" / strategy.removeprefix("bt_"))
    return TrainConfig(**base, explore="bt", prior=prior, prior_epsilon=args.prior_epsilon)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="MiniGrid-DoorKey-8x8-v0")
    p.add_argument("--task", default="key")
    p.add_argument("--pretrain-steps", type=int, default=40_000)
    p.add_argument("--window", type=int, default=10_000,
                   help="env steps at the end of pretraining the 'train' columns cover")
    p.add_argument("--family", type=int, default=4,
                   help="policies of the extra ngu_family run (0: skip it)")
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--prior-epsilon", type=float, default=0.05)
    p.add_argument("--transfer-steps", type=int, default=40_000)
    p.add_argument("--seeds", type=int, default=3, help="transfer seeds (0: skip transfer)")
    p.add_argument("--methods", nargs="+", default=["ngu", "rnd", "random"],
                   choices=["ngu", "rnd", "random"],
                   help="pretraining methods (ngu_family is added when --family > 1)")
    p.add_argument("--final-episodes", type=int, default=20)
    p.add_argument("--out", default="runs/ngu_exploration")
    p.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    args = p.parse_args()
    if args.quick:
        args.pretrain_steps, args.window, args.transfer_steps = 3_000, 2_000, 2_000
        args.eval_episodes, args.seeds, args.final_episodes = 4, 2, 4
    torch.set_num_threads(1)
    out = Path(args.out)
    t0 = time.perf_counter()
    methods = list(args.methods) + (["ngu_family"] if args.family > 1 else [])
    rows: dict[str, dict[str, Any]] = {}
    for method in methods:
        t = time.perf_counter()
        cfg = pretrain_config(method, args, out)
        train(cfg)
        run_dir = Path(cfg.run_dir)
        policy = None if method == "random" else load_policy(
            run_dir, epsilon=args.prior_epsilon, seed=7)
        rows[method] = {
            "train": replay_window_coverage(run_dir, args.window),
            "eval": rollout_coverage(policy, args.env, args.eval_episodes, seed=123_457),
            "seconds": time.perf_counter() - t,
        }
        print(f"[pretrain {method}] {rows[method]}", flush=True)

    print(f"\nExploration on {args.env}, {args.pretrain_steps} env steps each "
          f"(train: last {args.window} steps; eval: {args.eval_episodes} episodes, "
          f"epsilon {args.prior_epsilon})")
    head = (f"{'method':<12} {'train pose/ep':>13} {'train pose':>10} {'train grid/ep':>13} "
            f"{'train grid':>10} {'eval pose/ep':>12} {'eval pose':>9} {'eval grid/ep':>12} "
            f"{'eval grid':>9} {'sec':>6}")
    print(head)
    for m, r in rows.items():
        tr, ev = r["train"], r["eval"]
        print(f"{m:<12} {tr['pose_per_episode']:>13.1f} {tr['pose_total']:>10d} "
              f"{tr['grid_per_episode']:>13.1f} {tr['grid_total']:>10d} "
              f"{ev['pose_per_episode']:>12.1f} {ev['pose_total']:>9d} "
              f"{ev['grid_per_episode']:>12.1f} {ev['grid_total']:>9d} {r['seconds']:>6.0f}")

    scores: dict[str, list[float]] = {}
    if args.seeds < 1:
        (out / "summary.json").write_text(json.dumps(
            {"args": vars(args), "exploration": rows, "seconds": time.perf_counter() - t0},
            indent=2))
        return
    behaviour: dict[str, list[float]] = {}
    strategies = [f"bt_{m}" for m in args.methods if m != "random"] + ["scratch"]
    for strategy in strategies:
        for seed in range(args.seeds):
            t = time.perf_counter()
            cfg = transfer_config(strategy, seed, args, out)
            result = train(cfg)
            scores.setdefault(strategy, []).append(result.final_return_mean)
            behaviour.setdefault(strategy, []).append(training_episode_return(Path(cfg.run_dir)))
            print(f"[transfer {strategy} seed {seed}] final return "
                  f"{result.final_return_mean:.3f}, mean training-episode return "
                  f"{behaviour[strategy][-1]:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    agg = aggregate_scores({k: np.asarray(v) for k, v in scores.items()}, reps=2000,
                           metrics=("iqm", "mean"))
    print(f"\nTransfer to task {args.task!r}, {args.transfer_steps} env steps, {args.seeds} "
          f"seeds, final return over {args.final_episodes} episodes")
    print(f"{'strategy':<10} {'IQM':>7} {'95% CI':>17} {'mean':>7}  per-seed")
    for k, v in scores.items():
        e = agg[k]["iqm"]
        print(f"{k:<10} {e.point:>7.3f} [{e.low:>6.3f}, {e.high:>6.3f}] "
              f"{agg[k]['mean'].point:>7.3f}  {' '.join(f'{x:.3f}' for x in v)}")
    print("mean return of the training episodes (behaviour policy, exploration included), "
          "per seed:")
    for k, v in behaviour.items():
        print(f"{k:<10} {' '.join(f'{x:.3f}' for x in v)}")
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s")
    summary = {"args": vars(args), "exploration": rows, "transfer": scores,
               "transfer_training_episode_return": behaviour,
               "transfer_iqm": {k: dataclasses.asdict(agg[k]["iqm"]) for k in agg},
               "seconds": total}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
