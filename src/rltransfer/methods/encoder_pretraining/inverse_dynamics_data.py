"""Random-action data for inverse-dynamics pretraining (Kadavath et al. 2021, Sec. 3.3.1).

``T`` triples ``(o_t, a_t, o_{t+1})`` from uniformly random actions, every env reset every
``k = 100`` agent steps (not frames: a deliberate difference from the public code, which reset
every 100 frames, REFERENCE.md); ``o_t`` is the agent's frame stack (3 RGB frames on DMC).

Image geometry (the public code's ``CenterCrop``): frames are rendered at the RL agent's render
size (100 on DMC) and centre-cropped to its crop size (84) before they are stored, so that
objects have the size the RL agent's random 84 crops of 100x100 renders show them at.

Frames are stored once (uint8); stacks are rebuilt at batch time with the project's
frame-stacking rule (:class:`rltransfer.replay.transition.FrameStacker`: the stack holds the
step's frame and the ``S - 1`` before it in the same episode, frames before the episode's
first step are zeros).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

from rltransfer.core.images import center_crop
from rltransfer.core.progress import RunProgress


@dataclass
class TransitionFrames:
    """Random-action transitions with every frame stored once.

    Frames are kept in a flat array in step-major order: the frame of env ``b`` at collection
    step ``s`` is ``frames[s * stride + b]``, so the previous frame of the same env is
    ``stride`` (= number of envs) entries earlier.

    Attributes:
        frames: uint8 ``[N, C, H, W]``, every observed frame once.
        episode_start: int64 ``[N]``, flat index of the first frame of the frame's episode.
        stride: number of envs ``B``.
        obs_index: int64 ``[T]``, flat index of ``o_t``'s newest frame; ``o_{t+1}``'s is
            ``obs_index + stride`` (same episode by construction).
        actions: ``[T, act_dim]`` float32 (Box) or ``[T]`` int64 in ``[0, n)`` (Discrete).
        frame_stack: ``S``, frames per observation.
        discrete: whether actions are class labels.
        action_dim: ``act_dim`` (Box) or the number of actions ``n`` (Discrete).
        num_env_steps: agent steps taken (``env.step`` calls x ``B``), resets not counted.
        num_resets: forced resets (every ``k`` agent steps), the initial reset included.
        source_frame_size: ``(H0, W0)`` of the frames the env returned, before the centre
            crop (equal to ``frames.shape[2:]`` without a crop).
    """

    frames: np.ndarray
    episode_start: np.ndarray
    stride: int
    obs_index: np.ndarray
    actions: np.ndarray
    frame_stack: int
    discrete: bool
    action_dim: int
    num_env_steps: int = 0
    num_resets: int = 0
    source_frame_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return int(self.obs_index.shape[0])

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """``(C * S, H, W)``, the stacked observation shape."""
        c, h, w = self.frames.shape[1:]
        return (int(c) * self.frame_stack, int(h), int(w))

    def stacks(self, frame_index: np.ndarray) -> np.ndarray:
        """Frame stacks ending at ``frame_index`` (int ``[n]``): uint8 ``[n, C*S, H, W]``,
        oldest frame first; frames from before the episode's start are zeros."""
        frame_index = np.asarray(frame_index, dtype=np.int64)
        offsets = self.stride * np.arange(self.frame_stack - 1, -1, -1, dtype=np.int64)
        idx = frame_index[:, None] - offsets[None, :]  # [n, S]
        valid = idx >= self.episode_start[frame_index][:, None]
        out = self.frames[np.where(valid, idx, frame_index[:, None])]  # [n, S, C, H, W]
        out[~valid] = 0
        n, s, c, h, w = out.shape
        return out.reshape(n, s * c, h, w)

    def batch(self, transitions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(o_t, a_t, o_{t+1})`` for transition indices ``transitions`` (int ``[n]``):
        uint8 ``[n, C*S, H, W]``, actions ``[n, ...]``, uint8 ``[n, C*S, H, W]``."""
        first = self.obs_index[transitions]
        return self.stacks(first), self.actions[transitions], self.stacks(first + self.stride)


class _GrowingFrames:
    """Append-only uint8 frame store with int64 episode starts (amortised doubling)."""

    def __init__(self, frame_shape: tuple[int, ...], capacity: int) -> None:
        self.frames = np.zeros((max(capacity, 1), *frame_shape), np.uint8)
        self.episode_start = np.zeros(max(capacity, 1), np.int64)
        self.size = 0

    def append(self, frames: np.ndarray, episode_start: np.ndarray | None) -> np.ndarray:
        n = frames.shape[0]
        if self.size + n > self.frames.shape[0]:
            new_cap = max(2 * self.frames.shape[0], self.size + n)
            grown = np.zeros((new_cap, *self.frames.shape[1:]), np.uint8)
            grown[: self.size] = self.frames[: self.size]
            starts = np.zeros(new_cap, np.int64)
            starts[: self.size] = self.episode_start[: self.size]
            self.frames, self.episode_start = grown, starts
        idx = np.arange(self.size, self.size + n, dtype=np.int64)
        self.frames[idx] = frames
        self.episode_start[idx] = idx if episode_start is None else episode_start
        self.size += n
        return idx


def _action_sampler(space: gym.Space[Any]) -> tuple[bool, int, Any]:
    """``(discrete, action_dim, sample(rng, B) -> (env_actions, labels))`` for ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        n, start = int(space.n), int(space.start)

        def sample_discrete(rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray]:
            labels = rng.integers(0, n, size=b, dtype=np.int64)
            return labels + start, labels

        return True, n, sample_discrete
    if isinstance(space, gym.spaces.Box):
        low = np.asarray(space.low, dtype=np.float64)
        high = np.asarray(space.high, dtype=np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or low.ndim != 1:
            raise ValueError(
                f"inverse dynamics needs a bounded 1-D Box action space to sample uniformly, "
                f"got {space}"
            )
        dtype = space.dtype

        def sample_box(rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray]:
            a = rng.uniform(low, high, size=(b, low.shape[0]))
            return a.astype(dtype), a.astype(np.float32)

        return False, int(low.shape[0]), sample_box
    raise ValueError(
        f"inverse dynamics supports Discrete and Box action spaces, got {type(space).__name__}"
    )


def collect_random_transitions(
    env: VectorEnv,
    num_transitions: int,
    *,
    reset_every_env_steps: int = 100,
    frame_stack: int = 3,
    seed: int = 0,
    progress: bool = False,
    crop_size: int | None = None,
) -> TransitionFrames:
    """Collect ``T`` triples ``(o_t, a_t, o_{t+1})`` with uniformly random actions
    (Kadavath et al. 2021, Sec. 3.3.1).

    All ``B`` envs are reset together (``env.reset()``) at the start and then after every
    ``reset_every_env_steps`` agent steps (``env.step`` calls, whatever the action repeat);
    episodes that end earlier are restarted by the env's NEXT_STEP autoreset, and the
    autoreset step (whose action is ignored) yields no triple. Triples never cross an
    episode boundary.

    Args:
        env: a gymnasium VectorEnv with NEXT_STEP autoreset and uint8 ``[B, C, H, W]``
            observations (e.g. from ``make_env``); Discrete or bounded Box actions.
        num_transitions: ``T >= 1``.
        reset_every_env_steps: ``k >= 1`` agent steps between forced resets.
        frame_stack: ``S >= 1`` frames per observation.
        seed: seeds the action sampler (the env keeps its own seeding).
        progress: show a progress bar counting triples.
        crop_size: store the centre ``crop_size x crop_size`` window of every frame
            (:func:`rltransfer.core.images.center_crop`); None stores full frames.

    Returns:
        :class:`TransitionFrames` holding exactly ``T`` triples.

    Raises:
        ValueError: non-positive sizes, observations that are not uint8 ``[B, C, H, W]``, an
            unsupported action space, or ``crop_size`` larger than the frames.
    """
    if num_transitions < 1 or reset_every_env_steps < 1 or frame_stack < 1:
        raise ValueError(
            "num_transitions, reset_every_env_steps and frame_stack must be >= 1, got "
            f"{num_transitions}, {reset_every_env_steps}, {frame_stack}"
        )
    num_envs = int(env.num_envs)
    discrete, action_dim, sample = _action_sampler(env.single_action_space)
    rng = np.random.default_rng(seed)

    def check(obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[0] != num_envs:
            raise ValueError(
                f"inverse dynamics needs uint8 pixel observations [B={num_envs}, C, H, W], got "
                f"{obs.dtype}{list(obs.shape)}"
            )
        return obs if crop_size is None else center_crop(obs, int(crop_size))

    raw = np.asarray(env.reset()[0])
    source_size = (int(raw.shape[-2]), int(raw.shape[-1])) if raw.ndim == 4 else None
    obs = check(raw)
    expected_steps = math.ceil(num_transitions / num_envs)
    capacity = (expected_steps + expected_steps // reset_every_env_steps + 2) * num_envs
    store = _GrowingFrames(obs.shape[1:], capacity)
    last = store.append(obs, None)
    num_resets, num_env_steps, steps_since_reset = 1, 0, 0
    done = np.zeros(num_envs, dtype=bool)
    obs_chunks: list[np.ndarray] = []
    action_chunks: list[np.ndarray] = []
    count = 0
    with RunProgress("IK data", num_transitions, enabled=progress, unit="triples") as bar:
        while count < num_transitions:
            if steps_since_reset == reset_every_env_steps:
                last = store.append(check(env.reset()[0]), None)
                num_resets += 1
                steps_since_reset = 0
                done[:] = False
                continue
            env_actions, labels = sample(rng, num_envs)
            obs, _, terminated, truncated, _ = env.step(env_actions)
            # A step after an episode end is an autoreset step: its obs starts a new episode.
            new_index = np.arange(store.size, store.size + num_envs, dtype=np.int64)
            starts = np.where(done, new_index, store.episode_start[last])
            new = store.append(check(obs), starts)
            keep = ~done
            obs_chunks.append(last[keep])
            action_chunks.append(labels[keep])
            count += int(keep.sum())
            done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
            last = new
            steps_since_reset += 1
            num_env_steps += num_envs
            bar.update(min(count, num_transitions))
    obs_index = np.concatenate(obs_chunks)[:num_transitions]
    actions = np.concatenate(action_chunks)[:num_transitions]
    used = (int(obs_index.max()) // num_envs + 2) * num_envs  # whole rows up to o_{t+1}
    return TransitionFrames(
        frames=store.frames[:used],  # a view: no second copy of the frames in memory
        episode_start=store.episode_start[:used],
        stride=num_envs,
        obs_index=obs_index,
        actions=actions,
        frame_stack=frame_stack,
        discrete=discrete,
        action_dim=action_dim,
        num_env_steps=num_env_steps,
        num_resets=num_resets,
        source_frame_size=source_size,
    )



__all__ = ["TransitionFrames", "collect_random_transitions"]
