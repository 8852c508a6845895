"""DeepMind Control pixel throughput: agent steps per second including rendering.

Usage: ``python benchmarks/dmc_throughput.py [--num-envs 1] [--steps 300] [--size 84]
[env ids ...]``. For each task it times (uniform random actions, pre-sampled):

* ``dm_control render``: the baseline, raw dm_control ``env.step`` x action repeat then
  ``physics.render(H, W, camera_id)`` with dm_control's default settings (4x multisampling,
  shadows, reflections, skybox);
* ``rltransfer``: ``make_env(env_id, B, seed)`` (fast renderer settings, see envs/dmc.py);
* ``rltransfer + builtin distraction``: the same with ``distraction="builtin"``;
* ``physics only``: the action-repeat loop without any rendering (the floor of the cost);
* ``segmentation render``: one extra segmentation render per step, the cost that mask
  compositing would add on top of the RGB render (why distraction swaps textures instead).

Prints the command, the machine and the GL renderer; asserts nothing (machine dependent).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from rltransfer.envs import make_env
from rltransfer.envs.dmc import (
    DRQ_CAMERA_ID,
    default_action_repeat,
    ensure_headless_gl,
    parse_dmc_id,
)

DEFAULT_ENV_IDS = ("DMC/cheetah-run", "DMC/reacher-easy", "DMC/walker-walk")


def _rate(step: Callable[[int], object], steps: int, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of ``steps`` calls of ``step(t)`` (calls per second); the
    best run is the least disturbed by other processes on a shared machine."""
    step(0)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for t in range(steps):
            step(t)
        best = max(best, steps / (time.perf_counter() - start))
    return best


def dm_control_baseline(env_id: str, steps: int, size: int, seed: int = 0) -> float:
    """Agent steps/s of raw dm_control stepping + its default ``physics.render``."""
    domain, task = parse_dmc_id(env_id)
    from dm_control import suite

    env = suite.load(domain, task, task_kwargs={"random": seed})
    env.reset()
    repeat = default_action_repeat(domain)
    camera = DRQ_CAMERA_ID.get(domain, 0)
    dim = env.action_spec().shape
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps + 1, *dim))

    def step(t: int) -> None:
        for _ in range(repeat):
            if env.step(actions[t]).last():
                env.reset()
        env.physics.render(size, size, camera_id=camera)

    return _rate(step, steps)


def rltransfer_rate(
    env_id: str, num_envs: int, steps: int, size: int, distraction: str | None, seed: int = 0
) -> tuple[float, float, float]:
    """(agent steps/s summed over envs, physics-only steps/s, extra segmentation renders/s)."""
    env = make_env(env_id, num_envs, seed, render_size=size, distraction=distraction)
    try:
        env.reset()
        dim = int(np.prod(env.single_action_space.shape or (1,)))
        actions = np.random.default_rng(seed).uniform(-1, 1, (steps + 1, num_envs, dim))
        full = _rate(lambda t: env.step(actions[t]), steps) * num_envs
        inner = env.unwrapped
        repeat = inner.action_repeat  # type: ignore[attr-defined]
        envs = inner._envs  # type: ignore[attr-defined]
        n_sub = inner._n_sub_steps  # type: ignore[attr-defined]

        def physics_only(t: int) -> None:
            for i, e in enumerate(envs):
                for _ in range(repeat):
                    e.task.before_step(actions[t, i], e.physics)
                    e.physics.step(n_sub)
                    e.task.after_step(e.physics)
                    e.task.get_reward(e.physics)

        physics = _rate(physics_only, steps) * num_envs
        seg = 0.0
        if distraction is None:
            import mujoco

            physics0 = inner.physics[0]  # type: ignore[attr-defined]
            camera = inner.camera_id  # type: ignore[attr-defined]
            with mujoco.Renderer(physics0.model.ptr, size, size) as renderer:
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
                renderer.enable_segmentation_rendering()

                def segment(t: int) -> None:
                    renderer.update_scene(physics0.data.ptr, camera=camera)
                    renderer.render()

                seg = _rate(segment, steps)
        return full, physics, seg
    finally:
        env.close()


def gl_renderer_name() -> str:
    """The OpenGL renderer string (e.g. ``llvmpipe`` for Mesa's software rasteriser)."""
    try:
        import mujoco
        from mujoco.egl import GLContext

        ctx = GLContext(8, 8)
        ctx.make_current()
        from OpenGL import GL

        name = GL.glGetString(GL.GL_RENDERER).decode()
        ctx.free()
        del mujoco
        return name
    except Exception as err:  # a benchmark only reports
        return f"unknown ({err})"


def main() -> None:
    """Print steps/s with rendering for each task, with and without distraction."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=84)
    parser.add_argument("env_ids", nargs="*", default=list(DEFAULT_ENV_IDS))
    args = parser.parse_args()
    backend = ensure_headless_gl()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, MUJOCO_GL={backend}, GL: {gl_renderer_name()}"
    )
    print(
        f"agent steps/s (step x action repeat + {args.size}x{args.size} render), "
        f"num_envs={args.num_envs}, best of 3 x {args.steps} steps"
    )
    header = (
        f"{'task':20s} {'dm_control render':>18s} {'rltransfer':>11s} {'+distraction':>13s} "
        f"{'physics only':>13s} {'+1 seg render':>14s}"
    )
    print(header)
    for env_id in args.env_ids:
        base = dm_control_baseline(env_id, max(args.steps // 5, 20), args.size)
        ours, physics, seg = rltransfer_rate(env_id, args.num_envs, args.steps, args.size, None)
        dist, _, _ = rltransfer_rate(env_id, args.num_envs, args.steps, args.size, "builtin")
        with_seg = 1.0 / (1.0 / ours + 1.0 / seg) if seg > 0 else float("nan")
        print(
            f"{env_id:20s} {base:18,.0f} {ours:11,.0f} {dist:13,.0f} {physics:13,.0f} "
            f"{with_seg:14,.0f}"
        )


if __name__ == "__main__":
    main()
