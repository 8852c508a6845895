"""Our Q-learning loop vs Stable-Baselines3's ``DQN``, side by side (issue 11, "Speed").

Both train on ``MinAtar/Breakout-v1`` for the same number of env steps with one env, one torch
thread each, the same network, batch, replay ratio, replay kind, exploration schedule,
learning start and target-copy period, each in its own subprocess, back to back. Reported for
each: the wall time of the whole training (building the learner and env included), the
training loop's time, the learning time (sampling a batch plus the gradient step: our
``Trainer.update``, SB3's ``DQN.train``), env steps/s of the loop, the number of gradient
updates, and the final greedy return over 10 evaluation episodes (our
:func:`~rltransfer.evaluation.protocol.evaluate_policy` for both, SB3's model wrapped as an
:class:`~rltransfer.sb3.SB3Policy`: same eval envs and seeds). Prints a table and writes JSON.

Matched settings (SB3 name = ours):

* network: ``Flatten -> 400 -> 128 -> 128 -> 128 -> |A|`` with ReLUs. Our agent is torso
  (``mlp``, feature_dim 128) -> feedforward core (Linear 128 + ReLU) -> plain head (Linear 128
  + ReLU + Linear |A|), i.e. three hidden layers of 128, so SB3 gets ``net_arch=[128, 128,
  128]`` by default (``--sb3-net-arch 128 128`` gives SB3 one layer fewer than ours);
* ``batch_size=32``; ``train_freq=4``, ``gradient_steps=1`` = ``updates_per_env_step=1/4``;
  ``learning_starts`` = ``learning_starts_env_steps``; uniform replay (``prioritized=False``),
  ``buffer_size`` = ``replay_capacity_env_steps``;
* epsilon: SB3's linear ``exploration_initial_eps -> exploration_final_eps`` over
  ``exploration_fraction * total`` env steps = our ``epsilon_schedule="linear"`` with
  ``epsilon_start``, ``epsilon``, ``epsilon_decay_env_steps``;
* ``target_update_interval`` (env steps, tau = 1) = ``target_update_period_updates`` x 4;
  ``gamma``; Adam lr and eps (SB3's default Adam eps is 1e-5); ``max_grad_norm``;
* observations: both get our :class:`~rltransfer.envs.minatar.MinAtarEnv` frames (uint8
  ``[4, 10, 10]`` 0/1 planes, sticky actions 0.1, ``minatar_env_fn``), SB3 through a wrapper
  that declares the space ``Box(0, 1)`` so that SB3 does not treat it as an image and divide
  by 255 (our torso's MinAtar ``obs_scale`` is 1); frame stack 1; seed 0 for both.

Differences that remain (ours = R2D2's learner): double Q (SB3 DQN: max over the target
network; ``--no-double-q`` makes ours bootstrap the same way, one forward pass fewer),
loss ``0.5 delta^2`` (SB3: Huber / smooth L1), value rescaling off and n = 1 for both;
before ``learning_starts`` SB3 acts uniformly at random while ours already follows the
epsilon schedule; our replay keeps each frame once and rebuilds ``next_obs`` at sample time,
SB3 stores ``obs`` and ``next_obs``.

Times are wall-clock (``time.perf_counter``) and CPU time of the process
(``time.process_time``); on a shared machine the CPU time moves less with other load. Each
learner runs in a fresh interpreter with ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``;
with ``--repeats N`` the pairs run back to back, the order alternating.

Usage::

    python -m benchmarks.sb3_compare [--env-steps 30000] [--seed 0] [--repeats 1]
        [--before-src DIR] [--out runs/benchmarks/sb3_compare.json]
    python -m benchmarks.sb3_compare --acting [ENV_ID ...] [--num-envs 8] [--env-steps N]

``--before-src DIR`` also runs ours with ``rltransfer`` imported from ``DIR`` (e.g. ``git
archive <commit> src | tar -x -C /tmp/before`` and ``--before-src /tmp/before/src``): the
before/after times of an optimisation, in the same run. ``--acting`` measures the acting loop
(training loop with learning off) against the raw vector env instead, with small networks
(:data:`ACTING_NETWORKS`).

Results (with the machine and load) go in ``docs/benchmarks.md``, "Ours vs Stable-Baselines3
DQN".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_ID = "MinAtar/Breakout-v1"


@dataclass
class Settings:
    """The shared settings of both learners (see the module docstring for the mapping)."""

    env_steps: int = 30_000
    seed: int = 0
    hidden: int = 128
    batch_size: int = 32
    train_freq: int = 4
    """Env steps per gradient update (SB3's ``train_freq``; ours: ``updates_per_env_step =
    1 / train_freq``)."""
    learning_starts: int = 1_000
    buffer_size: int = 100_000
    gamma: float = 0.99
    lr: float = 1e-4
    adam_eps: float = 1e-5
    max_grad_norm: float = 10.0
    target_update_env_steps: int = 1_000
    epsilon_start: float = 1.0
    epsilon_final: float = 0.05
    exploration_fraction: float = 0.1
    sticky_action_prob: float = 0.1
    max_episode_steps: int = 108_000
    eval_episodes: int = 10
    double_q: bool = True
    sb3_net_arch: list[int] = field(default_factory=lambda: [128, 128, 128])



def _set_learning_start(trainer: object, env_steps: int) -> None:
    """Set when the trainer starts learning: ``learning_starts_at`` (``learning_resumes_at``
    in code before issue 11, which ``--before-src`` runs)."""
    old = hasattr(trainer, "learning_resumes_at") and not hasattr(trainer, "learning_starts_at")
    setattr(trainer, "learning_resumes_at" if old else "learning_starts_at", env_steps)

def _suite_config() -> Any:
    """``suite_config`` from ``rltransfer.agents.r2d2.suites`` (``...r2d2.config`` in code
    before the R2D2 folder split, which ``--before-src`` runs)."""
    import importlib

    for name in ("rltransfer.agents.r2d2.suites", "rltransfer.agents.r2d2.config"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "suite_config"):
            return module.suite_config
    raise ImportError("no rltransfer.agents.r2d2 module defines suite_config")


def _replay_ratio(suite_config: Any, train_freq: int) -> dict[str, float]:
    """Our replay-ratio field for one update every ``train_freq`` env steps:
    ``updates_per_env_step = 1 / train_freq`` (``env_steps_per_update = train_freq`` in code
    before issue 11's renaming, which ``--before-src`` runs). 1/4 is exact in binary, so the
    update debt is the same float either way."""
    names = {f.name for f in fields(suite_config(ENV_ID))}
    if "updates_per_env_step" in names:
        return {"updates_per_env_step": 1.0 / train_freq}
    return {"env_steps_per_update": float(train_freq)}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _evaluate(policy: Any, s: Settings) -> list[float]:
    from rltransfer.evaluation.protocol import evaluate_policy

    returns = evaluate_policy(
        policy, ENV_ID, num_episodes=s.eval_episodes, seed=s.seed + 1_000_003, frame_stack=1,
        num_envs=min(s.eval_episodes, 8),
        env_kwargs={"sticky_action_prob": s.sticky_action_prob,
                    "max_episode_frames": s.max_episode_steps},
    )
    return [float(r) for r in returns]


def run_ours(s: Settings) -> dict[str, Any]:
    """Train our agent (``rltransfer.agents.r2d2.train.Trainer``, local loop) and time it."""
    import torch

    suite_config = _suite_config()
    from rltransfer.agents.r2d2.train import Trainer
    from rltransfer.core.metrics import MetricsLogger

    torch.set_num_threads(1)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cfg = suite_config(
            ENV_ID,
            agent={
                "torso": "mlp", "feature_dim": s.hidden, "hidden": s.hidden, "dueling": False,
                "double_q": s.double_q, "n_step": 1, "gamma": s.gamma, "lr": s.lr,
                "adam_eps": s.adam_eps, "max_grad_norm": s.max_grad_norm,
                "value_rescaling": False, "batch_size": s.batch_size,
                "target_update_period_updates": max(
                    1, s.target_update_env_steps // s.train_freq),
            },
            num_envs=1, total_env_steps=s.env_steps, seed=s.seed, run_dir=tmp, frame_stack=1,
            sticky_action_prob=s.sticky_action_prob, max_episode_frames=s.max_episode_steps,
            prioritized=False, replay_capacity_env_steps=s.buffer_size,
            learning_starts_env_steps=s.learning_starts,
            **_replay_ratio(suite_config, s.train_freq),
            epsilon_schedule="linear", epsilon_start=s.epsilon_start, epsilon=s.epsilon_final,
            epsilon_decay_env_steps=int(s.exploration_fraction * s.env_steps),
            eval_every_env_steps=10**12, checkpoint_every_env_steps=10**12,
            checkpoint_replay=False, tensorboard=False, progress=False, torch_threads=1,
        )
        trainer = Trainer(cfg)
        t_built = time.perf_counter()
        update_time = [0.0, 0.0]
        # ``update`` (``_update`` in code before issue 11, run by --before-src)
        update_name = "_update" if hasattr(trainer, "_update") else "update"
        update = getattr(trainer, update_name)

        def timed_update() -> dict[str, float]:
            start, cpu = time.perf_counter(), time.process_time()
            out = update()
            update_time[0] += time.perf_counter() - start
            update_time[1] += time.process_time() - cpu
            return out

        setattr(trainer, update_name, timed_update)
        _set_learning_start(trainer, cfg.learning_starts_env_steps)
        logger = MetricsLogger(tmp, tensorboard=False)
        t_loop, cpu_loop = time.perf_counter(), time.process_time()
        trainer._loop(logger)
        t_end, cpu_end = time.perf_counter(), time.process_time()
        logger.close()
        trainer.envs.close()
        returns = _evaluate(trainer.eval_policy(), s)
    return {
        "learner": "ours", "build_s": t_built - t0, "loop_s": t_end - t_loop,
        "wall_s": t_end - t0, "learning_s": update_time[0], "loop_cpu_s": cpu_end - cpu_loop,
        "learning_cpu_s": update_time[1], "env_steps": trainer.env_steps,
        "updates": trainer.num_updates, "env_steps_per_s": trainer.env_steps / (t_end - t_loop),
        "eval_returns": returns, "eval_return_mean": sum(returns) / len(returns),
        "load_before": load_before, "load_after": _load(),
    }


def sb3_env(s: Settings) -> Any:
    """Our MinAtar env (one, with a time limit) for SB3, its space declared ``Box(0, 1)``."""
    import gymnasium as gym
    import numpy as np

    from rltransfer.envs.minatar import minatar_env_fn

    class ZeroOneBox(gym.ObservationWrapper):
        """Same frames; the space says 0/1 (not an image to divide by 255)."""

        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            shape = env.observation_space.shape
            assert shape is not None
            self.observation_space = gym.spaces.Box(0, 1, shape=shape, dtype=np.uint8)

        def observation(self, observation: Any) -> Any:
            return observation

    env = minatar_env_fn(ENV_ID, sticky_action_prob=s.sticky_action_prob,
                         max_episode_steps=s.max_episode_steps)()
    return ZeroOneBox(env)


def run_sb3(s: Settings) -> dict[str, Any]:
    """Train Stable-Baselines3's DQN with the matched settings and time it."""
    import torch
    from stable_baselines3 import DQN

    from rltransfer.sb3 import SB3Policy

    torch.set_num_threads(1)
    load_before = _load()
    t0 = time.perf_counter()
    model = DQN(
        "MlpPolicy", sb3_env(s), learning_rate=s.lr, buffer_size=s.buffer_size,
        learning_starts=s.learning_starts, batch_size=s.batch_size, tau=1.0, gamma=s.gamma,
        train_freq=s.train_freq, gradient_steps=1,
        target_update_interval=s.target_update_env_steps,
        exploration_fraction=s.exploration_fraction,
        exploration_initial_eps=s.epsilon_start, exploration_final_eps=s.epsilon_final,
        max_grad_norm=s.max_grad_norm,
        policy_kwargs={"net_arch": list(s.sb3_net_arch),
                       "optimizer_kwargs": {"eps": s.adam_eps}},
        seed=s.seed, device="cpu", verbose=0,
    )
    t_built = time.perf_counter()
    update_time = [0.0, 0.0]
    train = model.train

    def timed_train(gradient_steps: int, batch_size: int = 100) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        train(gradient_steps, batch_size)
        update_time[0] += time.perf_counter() - start
        update_time[1] += time.process_time() - cpu

    model.train = timed_train  # type: ignore[method-assign]
    t_loop, cpu_loop = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=s.env_steps, log_interval=10**9)
    t_end, cpu_end = time.perf_counter(), time.process_time()
    returns = _evaluate(SB3Policy(model), s)
    return {
        "learner": "sb3", "build_s": t_built - t0, "loop_s": t_end - t_loop,
        "wall_s": t_end - t0, "learning_s": update_time[0], "loop_cpu_s": cpu_end - cpu_loop,
        "learning_cpu_s": update_time[1], "env_steps": int(model.num_timesteps),
        "updates": int(model._n_updates),
        "env_steps_per_s": model.num_timesteps / (t_end - t_loop),
        "eval_returns": returns, "eval_return_mean": sum(returns) / len(returns),
        "load_before": load_before, "load_after": _load(),
    }


def _worker(which: str, s: Settings, src: str | None = None) -> dict[str, Any]:
    """Run one learner in a fresh interpreter; returns its result dict. ``src``: import
    ``rltransfer`` from this ``src`` folder (an earlier commit's, for before/after)."""
    cmd = [sys.executable, "-m", "benchmarks.sb3_compare", "--worker", which,
           "--settings", json.dumps(asdict(s))]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()),
                                             env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if src is not None:
        result["learner"] = "before"
        result["src"] = str(src)
    return result


ACTING_NETWORKS: dict[str, dict[str, Any]] = {
    "MinAtar/Breakout-v1": {"torso": "mlp"},
    "MiniGrid-DoorKey-8x8-v0": {"torso": "mlp"},
    "ALE/Pong-v5": {"torso": "nature_cnn"},
}
"""The small acting networks of ``--acting`` (feature and hidden width 128, plain head): the
comparison's MLP on the small grids, the Nature CNN on Atari's stacked 84x84 frames."""


def acting_vs_raw(env_id: str, num_envs: int, env_steps: int) -> dict[str, Any]:
    """Env steps/s of our acting loop (the training loop with learning off: frame stack,
    one batched Q forward, epsilon-greedy, env step, replay write) against the raw vector
    env stepped with pre-sampled random actions
    (:func:`benchmarks.raw_env_throughput.raw_env_steps_per_second`), one torch thread."""
    import torch

    from benchmarks.raw_env_throughput import raw_env_steps_per_second
    suite_config = _suite_config()
    from rltransfer.agents.r2d2.train import Trainer
    from rltransfer.core.metrics import MetricsLogger

    torch.set_num_threads(1)
    net = {"feature_dim": 128, "hidden": 128, "dueling": False,
           **ACTING_NETWORKS.get(env_id, {"torso": "auto"})}
    load_before = _load()
    raw = raw_env_steps_per_second(env_id, num_envs, max(1, env_steps // num_envs))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = suite_config(
            env_id, agent=net, num_envs=num_envs, total_env_steps=env_steps, run_dir=tmp,
            learning_starts_env_steps=10**12, eval_every_env_steps=10**12,
            checkpoint_every_env_steps=10**12, replay_capacity_env_steps=max(env_steps, 1000),
            prioritized=False, tensorboard=False, progress=False,
        )
        trainer = Trainer(cfg)
        _set_learning_start(trainer, 10**12)
        logger = MetricsLogger(tmp, tensorboard=False)
        start = time.perf_counter()
        trainer._loop(logger)
        acting = trainer.env_steps / (time.perf_counter() - start)
        logger.close()
        trainer.envs.close()
    return {"env_id": env_id, "num_envs": num_envs, "network": net, "raw_env_steps_per_s": raw,
            "acting_env_steps_per_s": acting, "ratio": acting / raw,
            "load_before": load_before, "load_after": _load()}


def _table(results: list[dict[str, Any]]) -> str:
    head = (f"{'learner':8s} {'wall s':>8s} {'loop s':>8s} {'learn s':>8s} {'loop cpu':>8s} "
            f"{'learn cpu':>9s} {'steps/s':>8s} {'updates':>8s} {'return':>7s}  "
            "load (1/5/15 min, before)")
    lines = [head]
    for r in results:
        lines.append(
            f"{r['learner']:8s} {r['wall_s']:8.2f} {r['loop_s']:8.2f} {r['learning_s']:8.2f} "
            f"{r['loop_cpu_s']:8.2f} {r['learning_cpu_s']:9.2f} "
            f"{r['env_steps_per_s']:8.0f} {r['updates']:8d} {r['eval_return_mean']:7.2f}  "
            f"{r['load_before']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="ours/SB3 pairs, run back to back (order alternates)")
    parser.add_argument("--only", choices=("ours", "sb3"), default=None)
    parser.add_argument("--sb3-net-arch", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--no-double-q", action="store_true",
                        help="ours bootstraps from max_a Q_target as SB3's DQN does (one "
                             "forward pass fewer per update)")
    parser.add_argument("--before-src", default=None,
                        help="also run ours from this src folder (e.g. an earlier commit's, "
                             "from git archive), labelled 'before'")
    parser.add_argument("--acting", nargs="*", default=None, metavar="ENV_ID",
                        help="instead: acting loop vs raw vector env for these env ids "
                             f"(none given: {', '.join(ACTING_NETWORKS)})")
    parser.add_argument("--num-envs", type=int, default=8, help="--acting: vector width")
    parser.add_argument("--out", default="runs/benchmarks/sb3_compare.json")
    parser.add_argument("--worker", choices=("ours", "sb3"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        s = Settings(**json.loads(args.settings))
        result = run_ours(s) if args.worker == "ours" else run_sb3(s)
        print(json.dumps(result))
        return
    if args.acting is not None:
        rows = [acting_vs_raw(env_id, args.num_envs, args.env_steps)
                for env_id in (args.acting or list(ACTING_NETWORKS))]
        for r in rows:
            print(f"{r['env_id']:26s} num_envs={r['num_envs']}  raw "
                  f"{r['raw_env_steps_per_s']:9,.0f}  acting {r['acting_env_steps_per_s']:9,.0f}"
                  f" env steps/s  ratio {r['ratio']:.2f}  load {r['load_before']}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"acting": rows}, indent=2))
        print(f"wrote {out}")
        return
    s = Settings(env_steps=args.env_steps, seed=args.seed, sb3_net_arch=args.sb3_net_arch,
                 double_q=not args.no_double_q)
    runs: list[tuple[str, str | None]] = [("ours", None), ("sb3", None)]
    if args.before_src:
        runs.append(("ours", args.before_src))
    results = []
    for k in range(args.repeats):
        for which, src in (runs if k % 2 == 0 else runs[::-1]):
            if args.only in (None, which):
                results.append(_worker(which, s, src))
                print(_table(results[-1:]).splitlines()[-1], flush=True)
    print(_table(results))
    summary: dict[str, Any] = {}
    for key in ("wall_s", "loop_s", "learning_s", "loop_cpu_s", "learning_cpu_s"):
        means = {}
        for who in ("ours", "sb3", "before"):
            vals = [r[key] for r in results if r["learner"] == who]
            if vals:
                means[who] = sum(vals) / len(vals)
        if "ours" in means and "sb3" in means:
            summary[f"sb3_over_ours_{key}"] = means["sb3"] / means["ours"]
        if "ours" in means and "before" in means:
            summary[f"before_over_ours_{key}"] = means["before"] / means["ours"]
        if "before" in means and "sb3" in means:
            summary[f"sb3_over_before_{key}"] = means["sb3"] / means["before"]
    for key, value in summary.items():
        print(f"{key}: {value:.2f}  (> 1: the second is faster)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "env_id": ENV_ID, "settings": asdict(s), "results": results, "summary": summary,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
