"""DeepMind Control Suite pixel environments (``DMC/<domain>-<task>``) as one vectorised env.

B dm_control tasks are stepped in-process and rendered by one shared offscreen MuJoCo context.
Each agent step repeats the action for ``action_repeat`` control steps and sums the rewards
(PlaNet / DrQ convention; action repeat 4 for cheetah, reacher, walker as in Kadavath et al.
2021). Observations are one RGB frame, uint8 ``[B, 3, H, W]``, seen from the DrQ camera
(``camera_id`` 2 for quadruped, 0 otherwise). Episodes end at the task's time limit
(1000 control steps for the standard tasks = 250 agent steps at repeat 4) with ``truncated``;
a task termination (discount 0) gives ``terminated``.

Fast headless rendering (measured numbers in ``benchmarks/dmc_throughput.py``): ``MUJOCO_GL=egl``
(set when unset, before mujoco is imported), no multisampling (``offsamples = 0``), shadows,
reflections and skybox off, and coarser tessellation of the builtin capsule / sphere meshes
(16 slices x 8 stacks instead of 28 x 16; indistinguishable at 84x84). The scene is updated from
each env's own model and data (``mjv_updateScene``) and drawn into one GL context, so B envs
cost one context. With a distraction (`rltransfer.envs.distraction`) the skybox is on and shows
the clip, and the floor is made partly transparent.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rltransfer.envs.spec import UnknownEnvError
from rltransfer.errors import MissingDependencyError

DMC_PREFIX = "DMC/"
_DMC_ID = re.compile(r"^DMC/(?P<domain>[A-Za-z0-9_]+)-(?P<task>[A-Za-z0-9_]+)$")

DEFAULT_ACTION_REPEAT: dict[str, int] = {"cartpole": 8, "finger": 2}
"""Per-domain default action repeat (PlaNet, Hafner et al. 2019); every other domain uses
`DEFAULT_ACTION_REPEAT_OTHER` (4: cheetah, reacher, walker as in Kadavath et al. 2021)."""

DEFAULT_ACTION_REPEAT_OTHER = 4

DRQ_CAMERA_ID: dict[str, int] = {"quadruped": 2}
"""Camera per domain as in DrQ (Kostrikov et al. 2021): 2 for quadruped, 0 otherwise."""

DEFAULT_RENDER_SIZE = 84

_UNBOUNDED = 1e6


def ensure_headless_gl() -> str:
    """Set ``MUJOCO_GL=egl`` if it is unset (must run before ``mujoco`` is imported to take
    effect for mujoco's default context) and return the backend name in use."""
    return os.environ.setdefault("MUJOCO_GL", "egl").lower().strip()


ensure_headless_gl()  # this module is imported only when the dmc suite is used


@functools.lru_cache(maxsize=1)
def dmc_tasks() -> tuple[tuple[str, str], ...]:
    """All ``(domain, task)`` pairs of the dm_control suite.

    Raises:
        MissingDependencyError (an ``ImportError``): dm_control is not installed (names the
            pip extra).
    """
    ensure_headless_gl()
    try:
        from dm_control import suite
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] not in ("dm_control", "mujoco"):
            raise
        raise MissingDependencyError(
            "The dmc suite needs the 'dm_control' package. "
            "Install it with: pip install 'rltransfer[dmc]'"
        ) from err
    return tuple((str(d), str(t)) for d, t in suite.ALL_TASKS)


def parse_dmc_id(env_id: str) -> tuple[str, str]:
    """Split ``DMC/<domain>-<task>`` into ``(domain, task)`` and check it is a suite task.

    Raises:
        UnknownEnvError: malformed id, unknown domain (lists the known domains), or unknown
            task of a known domain (lists that domain's tasks).
    """
    match = _DMC_ID.match(env_id)
    tasks = dmc_tasks()
    domains = sorted({d for d, _ in tasks})
    if match is None or match["domain"] not in domains:
        raise UnknownEnvError(
            f"Unknown DeepMind Control id {env_id!r}: expected 'DMC/<domain>-<task>' "
            f"(e.g. 'DMC/cheetah-run', 'DMC/reacher-easy', 'DMC/walker-walk'); "
            f"known domains: {', '.join(domains)}"
        )
    domain, task = match["domain"], match["task"]
    if (domain, task) not in tasks:
        valid = sorted(t for d, t in tasks if d == domain)
        raise UnknownEnvError(
            f"Unknown DeepMind Control task {task!r} for domain {domain!r} in {env_id!r}; "
            f"its tasks are {valid}"
        )
    return domain, task


def default_action_repeat(domain: str) -> int:
    """Default action repeat of ``domain`` (`DEFAULT_ACTION_REPEAT`, else 4)."""
    return DEFAULT_ACTION_REPEAT.get(domain, DEFAULT_ACTION_REPEAT_OTHER)


def _size_hw(render_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(render_size, (int, np.integer)):
        h = w = int(render_size)
    else:
        try:
            h, w = (int(v) for v in render_size)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"render_size must be an int or (height, width), got {render_size!r}"
            ) from err
    if h < 1 or w < 1:
        raise ValueError(f"render_size must be positive, got {render_size!r}")
    return h, w


class _BatchRenderer:
    """One offscreen GL + MuJoCo context drawing the scenes of many structurally identical
    models (the B copies of one domain) into uint8 ``[B, H, W, 3]`` (bottom row first)."""

    def __init__(
        self,
        model: Any,
        height: int,
        width: int,
        camera_id: int,
        *,
        skybox: bool,
        geom_slices: int,
        geom_stacks: int,
    ) -> None:
        import mujoco

        backend = ensure_headless_gl()
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        else:
            GLContext = mujoco.GLContext
        if not 0 <= camera_id < model.ncam:
            raise ValueError(f"camera_id {camera_id} out of range [0, {model.ncam})")
        # Context settings are read from the model when the MjrContext is made.
        model.vis.quality.offsamples = 0
        model.vis.quality.numslices = int(geom_slices)
        model.vis.quality.numstacks = int(geom_stacks)
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        self._gl: Any = GLContext(width, height)
        self._gl.make_current()
        self.context: Any = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self.context)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        flags = mujoco.mjtRndFlag
        self._scene.flags[flags.mjRND_SHADOW] = 0
        self._scene.flags[flags.mjRND_REFLECTION] = 0
        self._scene.flags[flags.mjRND_SKYBOX] = int(bool(skybox))
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = int(camera_id)
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._catmask = int(mujoco.mjtCatBit.mjCAT_ALL.value)

    def render(
        self, models: list[Any], datas: list[Any], out: np.ndarray, background: Any = None
    ) -> None:
        """Render env ``i`` into ``out[i]`` (uint8 ``[B, H, W, 3]``, rows bottom-up)."""
        import mujoco

        self._gl.make_current()
        for i, (model, data) in enumerate(zip(models, datas, strict=True)):
            mujoco.mjv_updateScene(
                model, data, self._option, None, self._camera, self._catmask, self._scene
            )
            if background is not None:
                background.upload(i, model, data, self.context)
            mujoco.mjr_render(self._rect, self._scene, self.context)
            mujoco.mjr_readPixels(out[i], None, self._rect, self.context)

    def close(self) -> None:
        """Free the MuJoCo and GL contexts (idempotent)."""
        if self.context is not None:
            self._gl.make_current()
            self.context.free()
            self.context = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None


class DMCVectorEnv(VectorEnv):
    """B copies of one dm_control task with pixel observations, stepped in-process.

    Args:
        env_id: ``DMC/<domain>-<task>`` (any suite task, e.g. ``DMC/cheetah-run``).
        num_envs: B >= 1.
        seed: task seed of env ``i`` is ``seed + i`` at construction (None: unseeded);
            ``reset(seed=s)`` reseeds env ``i`` with ``s + i``.
        action_repeat: control steps per agent step (None: `default_action_repeat`).
        render_size: ``H = W`` or ``(H, W)`` in pixels (84 as in DrQ; 100 for crop-to-84).
        distraction: None, ``"builtin"``, a folder of frames, a ``.gif`` or a video file
            (`rltransfer.envs.distraction_clips.load_frames`).
        distraction_seed: selects the builtin clip (ignored for files and folders). It is
            independent of ``seed``: the stages of one run (pretraining, training, evaluation)
            pass the same value and see the same clip, and every episode plays it from its
            first frame (Kadavath et al. 2021's public code), so they show the same background
            at the same step of an episode.
        ground_alpha: floor opacity under distraction.
        distraction_face_size: skybox face size in pixels for the distraction (None:
            ``2 * max(H, W)``; the camera's 45-degree field of view shows about half a face).
        camera_id: None for the DrQ camera (`DRQ_CAMERA_ID`).
        max_episode_frames: optional extra cap on control steps per episode (the task's own
            time limit always applies).
        geom_slices, geom_stacks: tessellation of builtin capsules/spheres in the renderer.

    Spaces: observation Box uint8 ``(3, H, W)``; action Box(-1, 1, (act_dim,), float32),
    clipped to [-1, 1] and mapped linearly onto the task's bounds ``[low, high]``
    (``a -> (high + low) / 2 + a (high - low) / 2``; e.g. quadruped's [-0.8, 0.8] and
    [-1, 1.1] dims); dims with bounds of 1e6 or more (lqr) are passed unscaled.

    ``step`` returns rewards float64 ``[B]`` (sum over the repeat), ``terminated`` (task
    termination, discount 0), ``truncated`` (time limit) and ``info["task_reward"]`` (= reward).
    Autoreset is NEXT_STEP: the step after an episode's end ignores that env's action and returns
    its first observation with reward 0 and both flags false.

    Raises:
        UnknownEnvError: unknown id; ValueError: bad sizes / repeats / camera;
        DistractionError: unusable distraction source.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        seed: int | None = None,
        action_repeat: int | None = None,
        render_size: int | tuple[int, int] = DEFAULT_RENDER_SIZE,
        distraction: str | Path | None = None,
        distraction_seed: int = 0,
        ground_alpha: float | None = None,
        distraction_face_size: int | None = None,
        camera_id: int | None = None,
        max_episode_frames: int | None = None,
        geom_slices: int = 16,
        geom_stacks: int = 8,
    ) -> None:
        domain, task = parse_dmc_id(env_id)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        repeat = default_action_repeat(domain) if action_repeat is None else int(action_repeat)
        if repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        if max_episode_frames is not None and int(max_episode_frames) < 1:
            raise ValueError(f"max_episode_frames must be >= 1, got {max_episode_frames}")
        height, width = _size_hw(render_size)
        from dm_control import suite

        from rltransfer.envs.distraction import (
            DEFAULT_GROUND_ALPHA,
            VideoBackground,
            small_skybox_assets,
        )
        from rltransfer.envs.distraction_clips import load_frames

        self.env_id, self.domain, self.task_name = env_id, domain, task
        self.num_envs = int(num_envs)
        self.action_repeat = repeat
        self.render_size = (height, width)
        self._envs = [
            suite.load(domain, task, task_kwargs={"random": None if seed is None else seed + i})
            for i in range(self.num_envs)
        ]
        self._renderer: _BatchRenderer | None = None
        self._background: VideoBackground | None = None
        self.distraction_seed = int(distraction_seed)
        if distraction is not None:
            face = distraction_face_size or 2 * max(height, width)
            frames = load_frames(distraction, int(face), seed=self.distraction_seed)
            alpha = DEFAULT_GROUND_ALPHA if ground_alpha is None else float(ground_alpha)
            self._background = VideoBackground(frames, self.num_envs, ground_alpha=alpha)
            xml, assets = importlib.import_module(
                f"dm_control.suite.{domain}"
            ).get_model_and_assets()
            assets = small_skybox_assets(assets, int(face))
            for env in self._envs:
                physics = env.physics
                sizes = (physics.model.nq, physics.model.nbody, physics.model.ngeom)
                physics.reload_from_xml_string(xml, assets)
                if (physics.model.nq, physics.model.nbody, physics.model.ngeom) != sizes:
                    raise ValueError(
                        f"distraction is not supported for {env_id!r}: its task builds a model "
                        "different from the domain's default XML"
                    )
                self._background.prepare_model(physics.model.ptr)
        elif ground_alpha is not None:
            raise ValueError("ground_alpha only applies with a distraction")

        first = self._envs[0]
        physics0 = first.physics
        self._n_sub_steps = max(round(first.control_timestep() / physics0.timestep()), 1)
        limit = float(getattr(first, "_step_limit", math.inf))
        if max_episode_frames is not None:
            limit = min(limit, float(max_episode_frames))
        self.max_episode_frames = limit
        spec = first.action_spec()
        low = np.broadcast_to(np.asarray(spec.minimum, np.float64), spec.shape)
        high = np.broadcast_to(np.asarray(spec.maximum, np.float64), spec.shape)
        # dims bounded by +-1e6 or more (lqr uses +-1e10) count as unbounded: passed unscaled
        bounded = (np.abs(low) < _UNBOUNDED) & (np.abs(high) < _UNBOUNDED)
        self._act_scale = np.where(bounded, (high - low) / 2.0, 1.0)
        self._act_offset = np.where(bounded, (high + low) / 2.0, 0.0)
        self._identity_actions = bool(
            np.all(self._act_scale == 1.0) and np.all(self._act_offset == 0.0)
        )
        act_dim = self._act_dim = int(np.prod(spec.shape))
        self.single_action_space = spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = spaces.Box(0, 255, (3, height, width), np.uint8)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        self.camera_id = DRQ_CAMERA_ID.get(domain, 0) if camera_id is None else int(camera_id)
        self._renderer = _BatchRenderer(
            physics0.model.ptr,
            height,
            width,
            self.camera_id,
            skybox=self._background is not None,
            geom_slices=geom_slices,
            geom_stacks=geom_stacks,
        )
        try:
            if self._background is not None:
                self._background.attach(
                    physics0.model.ptr,
                    self._renderer.context,
                    camera_id=self.camera_id,
                    height=height,
                    width=width,
                )
        except BaseException:
            # free the GL context now: left to __del__ at interpreter exit it raises EGLError
            self.close_extras()
            raise
        self._models = [env.physics.model.ptr for env in self._envs]
        self._datas = [env.physics.data.ptr for env in self._envs]
        self._pixels = np.zeros((self.num_envs, height, width, 3), dtype=np.uint8)
        self._frames = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    # -- helpers ---------------------------------------------------------------------------
    def _observe(self) -> np.ndarray:
        assert self._renderer is not None, "env is closed"
        self._renderer.render(self._models, self._datas, self._pixels, self._background)
        # rows come bottom-up from OpenGL: flip and go channels first in one copy
        return np.ascontiguousarray(self._pixels[:, ::-1].transpose(0, 3, 1, 2))

    def _reset_env(self, i: int) -> None:
        self._envs[i].reset()
        self._frames[i] = 0
        self._needs_reset[i] = False
        if self._background is not None:
            self._background.reset_env(i)

    # -- gymnasium API ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env; with ``seed`` env ``i``'s task is reseeded with ``seed + i`` (or
        ``seed[i]`` for a list). The distraction clip restarts at its first frame.

        Returns:
            obs uint8 ``[B, 3, H, W]``, info ``{"task_reward": zeros float64 [B]}``.
        """
        if seed is not None:
            seeds = list(seed) if isinstance(seed, (list, tuple)) else [
                int(seed) + i for i in range(self.num_envs)
            ]
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
            for i, s in enumerate(seeds):
                # dm_control tasks draw all episode randomness from task.random
                self._envs[i].task._random = np.random.RandomState(int(s))
        for i in range(self.num_envs):
            self._reset_env(i)
        return self._observe(), {"task_reward": np.zeros(self.num_envs, dtype=np.float64)}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env by one agent step (``action_repeat`` control steps).

        Args:
            actions: float ``[B, act_dim]`` in [-1, 1] (values outside are clipped).

        Returns:
            obs uint8 ``[B, 3, H, W]``, reward float64 ``[B]``, terminated bool ``[B]``,
            truncated bool ``[B]``, info with ``task_reward`` float64 ``[B]``.
        """
        act = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, self._act_dim)
        act = np.clip(act, -1.0, 1.0)
        if not self._identity_actions:
            act = act * self._act_scale + self._act_offset
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        n_sub, limit = self._n_sub_steps, self.max_episode_frames
        for i, env in enumerate(self._envs):
            if self._needs_reset[i]:
                self._reset_env(i)
                continue
            task, physics, action = env.task, env.physics, act[i]
            total = 0.0
            for _ in range(self.action_repeat):
                task.before_step(action, physics)
                physics.step(n_sub)
                task.after_step(physics)
                total += float(task.get_reward(physics))
                self._frames[i] += 1
                if self._frames[i] >= limit:
                    truncated[i] = True
                    break
                discount = task.get_termination(physics)
                if discount is not None:
                    terminated[i] = float(discount) == 0.0
                    truncated[i] = not terminated[i]
                    break
            rewards[i] = total
            if self._background is not None:
                self._background.advance(i)
        self._needs_reset = terminated | truncated
        info = {"task_reward": rewards.copy()}
        return self._observe(), rewards, terminated, truncated, info

    def __del__(self) -> None:
        try:
            self.close_extras()
        except Exception:  # best effort at interpreter shutdown
            pass

    def close_extras(self, **kwargs: Any) -> None:
        """Free the rendering contexts (idempotent)."""
        renderer = getattr(self, "_renderer", None)  # absent if __init__ failed early
        if renderer is not None:
            renderer.close()
            self._renderer = None

    @property
    def physics(self) -> list[Any]:
        """The B dm_control ``Physics`` objects (for tests and state inspection)."""
        return [env.physics for env in self._envs]
