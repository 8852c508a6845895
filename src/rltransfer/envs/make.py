"""`make_env`: one entry point for all suites (see docs/architecture.md, Environments)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

from rltransfer.envs.spec import EnvOptionError, env_spec, suite_of
from rltransfer.envs.wrappers import SeedOnFirstReset, TaskRewardInfo


def make_env(
    env_id: str,
    num_envs: int,
    seed: int,
    *,
    task: str | None = None,
    reward_free: bool = False,
    terminal_on_life_loss: bool = False,
    max_episode_frames: int = 108_000,
    full_obs: bool = True,
    sticky_action_prob: float | None = None,
    action_repeat: int | None = None,
    render_size: int | tuple[int, int] | None = None,
    distraction: str | Path | None = None,
    distraction_seed: int | None = None,
    frame_size: int = 84,
    grayscale: bool = True,
) -> VectorEnv:
    """Build ``num_envs`` copies of ``env_id`` as one gymnasium `VectorEnv`.

    Contract (docs/architecture.md):

    * observations uint8 channels first, one frame per step, ``[B, C, H, W]``: Atari
      ``[B, 1, 84, 84]`` gray (``[B, 3, S, S]`` with ``grayscale=False, frame_size=S``);
      MinAtar ``[B, C, 10, 10]`` 0/1; MiniGrid ``[B, 3, H, W]``
      (object, colour, state) encoding. ``single_observation_space`` is Box uint8 ``(C, H, W)``.
    * actions ``Discrete(n)``.
    * autoreset NEXT_STEP: after ``terminated | truncated`` for env ``i``, the next step
      ignores ``actions[i]`` and returns env ``i``'s first observation, reward 0, flags false.
    * rewards float64 ``[B]``; ``info["task_reward"]`` float64 ``[B]`` always (the task
      variant's reward); with ``reward_free`` the returned reward is zeros.
    * seeding: the first ``reset()`` (without a seed) seeds env ``i`` with ``seed + i``.

    Args:
        env_id: ``ALE/<Game>-v5``, ``MinAtar/<Game>-v0|v1`` or ``MiniGrid-*``.
        num_envs: B >= 1.
        seed: base seed.
        task: task variant, one of ``env_spec(env_id).tasks`` (None = the first, the game's
            own reward). MiniGrid: ``"goal"``, ``"key"``, ``"door"`` (see
            `rltransfer.envs.minigrid`); MinAtar: ``"game"``; Atari: ``"game"``, and for
            ``ALE/MsPacman-v5`` ``"ghosts-easy"``, ``"ghosts-hard"``, for ``ALE/Hero-v5``
            ``"miners-easy"``, ``"miners-hard"`` (Behavior Transfer variants, see
            `rltransfer.envs.atari_tasks`; these run on a per-env Python path with RAM access).
        reward_free: return zero rewards (task reward only in ``info["task_reward"]``).
        terminal_on_life_loss: Atari only: ``terminated`` on each life loss (game continues).
        max_episode_frames: truncate episodes after this many frames (Atari: emulator frames,
            4 per step; MinAtar, MiniGrid: env steps; MiniGrid's own ``max_steps`` still applies).
        full_obs: MiniGrid only: fully observable grid (True) or 7x7 egocentric view (False).
        sticky_action_prob: probability of repeating the previous action instead of the chosen
            one (Machado et al. 2018). None = the suite default
            (``env_spec(env_id).default_sticky_action_prob``: 0.25 for ALE v5, 0.1 for MinAtar,
            0 for MiniGrid). Pass 0.0 for the deterministic DQN/R2D2 Atari setting.
        action_repeat: DMC only: control steps per env step, rewards summed (None = the
            domain default, ``env_spec(env_id).frames_per_env_step``: 4 for cheetah, reacher,
            walker). DMC observations are RGB ``[B, 3, H, W]`` and actions Box(-1, 1).
        render_size: DMC only: ``H = W`` or ``(H, W)`` of the rendered frame (None = 84).
        distraction: DMC only: background video, ``"builtin"`` (seeded moving textures), a
            folder of image frames, a ``.gif`` or a video file (`rltransfer.envs.distraction`).
        distraction_seed: DMC only: which builtin clip (None = 0); independent of ``seed``, so
            that every stage of a run (pretraining, training, evaluation) shows the same clip.
        frame_size: Atari only: observation side in pixels, ``[8, 160]`` (84 for DQN/R2D2, 96
            for EfficientZero).
        grayscale: Atari only: 1 gray channel (True) or RGB ``[B, 3, S, S]`` (False).

    Raises:
        UnknownEnvError: unknown id (the message names the suites with examples).
        EnvOptionError (a ``ValueError``): unknown task (lists valid tasks), task needing an
            object the env lacks, options that do not apply to the suite, non-positive
            ``num_envs`` / ``max_episode_frames``, or ``sticky_action_prob`` outside [0, 1].
        MissingDependencyError (an ``ImportError``): the suite's optional dependency is
            missing (names the pip extra).
    """
    suite = suite_of(env_id)
    if int(num_envs) < 1:
        raise EnvOptionError(f"num_envs must be >= 1, got {num_envs}")
    if int(max_episode_frames) < 1:
        raise EnvOptionError(f"max_episode_frames must be >= 1, got {max_episode_frames}")
    spec = env_spec(env_id)
    sticky = spec.default_sticky_action_prob if sticky_action_prob is None else sticky_action_prob
    if not 0.0 <= float(sticky) <= 1.0:
        raise EnvOptionError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
    if suite != "minigrid" and not full_obs:
        raise EnvOptionError(f"full_obs=False only applies to MiniGrid envs, not {env_id!r}")
    if suite != "atari" and terminal_on_life_loss:
        raise EnvOptionError(
            f"terminal_on_life_loss=True only applies to Atari (games with lives), not {env_id!r}"
        )
    dmc_options = {"action_repeat": action_repeat, "render_size": render_size,
                   "distraction": distraction, "distraction_seed": distraction_seed}
    if suite != "dmc" and any(v is not None for v in dmc_options.values()):
        given = sorted(k for k, v in dmc_options.items() if v is not None)
        raise EnvOptionError(
            f"{given} only apply to DeepMind Control ('DMC/...') envs, not {env_id!r}"
        )
    if suite != "atari" and (int(frame_size) != 84 or not grayscale):
        raise EnvOptionError(
            f"frame_size / grayscale only apply to Atari ('ALE/...') envs, not {env_id!r}"
            + ("; use render_size for DMC" if suite == "dmc" else "")
        )
    if suite == "dmc" and float(sticky) != 0.0:
        raise EnvOptionError("sticky actions are not supported for DMC; pass None or 0.0")
    if suite == "minigrid" and float(sticky) != 0.0:
        raise EnvOptionError("sticky actions are not supported for MiniGrid; pass None or 0.0")

    env: VectorEnv
    if suite == "minigrid":
        from rltransfer.envs.minigrid import check_minigrid_task, minigrid_env_fn

        name = check_minigrid_task(env_id, task)
        fn = minigrid_env_fn(
            env_id, task=name, full_obs=full_obs, max_episode_steps=int(max_episode_frames)
        )
        env = gym.vector.SyncVectorEnv(
            [fn] * int(num_envs), autoreset_mode=AutoresetMode.NEXT_STEP
        )
    else:
        if task is not None and task not in spec.tasks:
            raise EnvOptionError(
                f"Unknown task {task!r} for {env_id!r}; valid tasks are {spec.tasks}"
            )
        if suite == "minatar":
            from rltransfer.envs.minatar import minatar_env_fn

            fn = minatar_env_fn(
                env_id, sticky_action_prob=float(sticky), max_episode_steps=int(max_episode_frames)
            )
            env = gym.vector.SyncVectorEnv(
                [fn] * int(num_envs), autoreset_mode=AutoresetMode.NEXT_STEP
            )
        elif suite == "dmc":
            from rltransfer.envs.dmc import DEFAULT_RENDER_SIZE, DMCVectorEnv

            env = DMCVectorEnv(
                env_id,
                int(num_envs),
                seed=int(seed),
                action_repeat=action_repeat,
                render_size=DEFAULT_RENDER_SIZE if render_size is None else render_size,
                distraction=distraction,
                distraction_seed=0 if distraction_seed is None else int(distraction_seed),
                max_episode_frames=int(max_episode_frames),
            )
        else:
            from rltransfer.envs.atari import make_atari_vector_env

            env = make_atari_vector_env(
                env_id,
                int(num_envs),
                sticky_action_prob=float(sticky),
                terminal_on_life_loss=terminal_on_life_loss,
                max_episode_frames=int(max_episode_frames),
                task=spec.tasks[0] if task is None else task,
                frame_size=int(frame_size),
                grayscale=bool(grayscale),
            )
    env = TaskRewardInfo(env, reward_free=reward_free)
    return SeedOnFirstReset(env, int(seed))
