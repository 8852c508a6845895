"""Inverse-dynamics ("inverse kinematics", IK) encoder pretraining (Kadavath et al. 2021,
"Pretraining & Reinforcement Learning: Sharpening the Axe Before Cutting the Tree", Sec. 3.3).

Data (Sec. 3.3.1): ``T`` triples ``(o_t, a_t, o_{t+1})`` from uniformly random actions, the
environment reset every ``k = 100`` agent steps; ``o_t`` is the agent's frame stack (3 RGB
frames on DMC). Model (Sec. 3.3.2, Fig. 6, and the public code's ``pretraining/env_trainer.py``):
the conv layers of one encoder with tied weights applied to ``o_t`` and ``o_{t+1}``, the two
*flattened conv feature maps* concatenated, an MLP ``Dropout(0.5) -> 1024 -> LayerNorm -> ReLU
-> Dropout(0.5) -> 256 -> LayerNorm -> ReLU -> Dropout(0.5) -> action``; loss
``mean_t ||a_t - f(o_t, o_{t+1})||^2`` for continuous actions (cross-entropy for discrete
ones, our extension); Adam 1e-3, batch 128, 30 epochs, 95/5 train/validation split. The
encoder's ``Linear -> LayerNorm -> tanh`` head takes no part (as in the public code, whose IK
network has no such head), so only the conv layers are saved, for
:func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`.

Image geometry (the public code's ``CenterCrop``): frames are rendered at the RL agent's render
size (100 on DMC) and centre-cropped to its crop size (84), so that objects have the size the
RL agent's random 84 crops of 100x100 renders show them at.

Deliberate differences from the public code (REFERENCE.md): ``k`` counts agent steps, not
frames (the public code reset every 100 *frames*, i.e. every 25 transitions at action
repeat 4); pixels are scaled by the encoder itself (``obs / 255 - 0.5``), identically here
and in RL (the public code fed unscaled pixels in pretraining).

Frames are stored once (uint8); stacks are rebuilt at batch time with the project's
frame-stacking rule (:class:`rltransfer.replay.transition.FrameStacker`: the stack holds the
step's frame and the ``S - 1`` before it in the same episode, frames before the episode's
first step are zeros).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import VectorEnv
from torch import nn

from rltransfer.core.config import ConfigError, save_config, to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress
from rltransfer.core.seeding import seed_everything
from rltransfer.methods.encoder_pretraining.supervised import (
    EpochProgress,
    resolve_device,
    set_torch_threads,
    train_validation_split,
)
from rltransfer.methods.encoder_pretraining.transfer import save_encoder
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig


def _paper_encoder() -> PixelEncoderConfig:
    return PixelEncoderConfig(kind="pad11", num_filters=32, feature_dim=100, groups=1)


@dataclass
class InverseDynamicsConfig:
    """Inverse-dynamics pretraining (defaults: Kadavath et al. 2021, Sec. 3.3 / REFERENCE.md).

    Attributes:
        env_id: environment for :func:`rltransfer.envs.make.make_env` (e.g.
            ``"DMC/reacher-easy"``); any suite with pixel (uint8 ``[B, C, H, W]``) frames.
        num_transitions: ``T``, the number of ``(o_t, a_t, o_{t+1})`` triples (agent steps;
            the paper: 200,000; its budget study: 5k-20k).
        reset_every_env_steps: ``k``: every env is reset after this many agent steps (env
            steps as the agent sees them, action repeat included - not frames).
        frame_stack: frames per observation ``S``; None = ``env_spec(env_id).frame_stack``
            (3 on DMC).
        num_envs: environments stepped together (all reset together every ``k`` steps).
        action_repeat: DMC only: passed to ``make_env`` when set (None = the suite default).
        render_size: DMC only: rendered frame side in pixels, passed to ``make_env`` (100, the
            RL agent's render size with crop augmentation; None = the env's default, 84).
            Ignored for other suites.
        crop_size: every frame is centre-cropped to ``crop_size x crop_size`` pixels before it
            is stored (84: the RL agent's crop size); None keeps the full frame. Must not
            exceed the frame size.
        distraction: DMC only: passed to ``make_env`` when set (distracting backgrounds).
        distraction_seed: DMC only: selects the distraction clip (the builtin clip's seed);
            pass the RL run's value so that pretraining, training and evaluation show the same
            clip.
        encoder: the conv encoder; it must match the RL agent's to be transferred (the
            paper: 11 conv layers with BatchNorm). Its head (``feature_dim``) is not trained
            here and not saved.
        hidden_dims: MLP hidden sizes (1024, 256).
        dropout: dropout on the concatenated conv features and after every hidden layer (0.5).
        lr: Adam learning rate (1e-3).
        batch_size: triples per update (128).
        epochs: passes over the training split (30).
        validation_fraction: held-out share of the triples (0.05).
        seed: seeds the environments, actions, split, initialisation and batches.
        out_dir: run directory: ``config.json``, ``metrics.jsonl`` and the checkpoint
            ``encoder/``.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        torch_threads: ``torch.set_num_threads`` (0 = torch's default).
        progress: show progress bars (on a terminal).
    """

    env_id: str = "DMC/reacher-easy"
    num_transitions: int = 200_000
    reset_every_env_steps: int = 100
    frame_stack: int | None = None
    num_envs: int = 1
    action_repeat: int | None = None
    render_size: int | None = 100
    crop_size: int | None = 84
    distraction: str | None = None
    distraction_seed: int = 0
    encoder: PixelEncoderConfig = field(default_factory=_paper_encoder)
    hidden_dims: tuple[int, ...] = (1024, 256)
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 30
    validation_fraction: float = 0.05
    seed: int = 0
    out_dir: str = "runs/pretrain_inverse_dynamics"
    device: str = "cpu"
    torch_threads: int = 0
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid field."""
        problems = []
        for name in ("num_transitions", "reset_every_env_steps", "num_envs", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            problems.append(f"epochs must be >= 0, got {self.epochs}")
        for name in ("render_size", "crop_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (or None), got {getattr(self, name)}")
        if (self.render_size is not None and self.crop_size is not None
                and self.crop_size > self.render_size):
            problems.append(
                f"crop_size {self.crop_size} exceeds render_size {self.render_size}"
            )
        if self.frame_stack is not None and self.frame_stack < 1:
            problems.append(f"frame_stack must be >= 1 (or None), got {self.frame_stack}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            problems.append(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if problems:
            raise ConfigError("InverseDynamicsConfig: " + "; ".join(problems))


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


def center_crop_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` window of ``[..., H, W]`` frames (top row ``(H - size) // 2``,
    left column ``(W - size) // 2``: the public code's 8:-8 crop of 100 -> 84, and the same
    window as :func:`rltransfer.agents.sac.agent.center_crop`).

    Raises:
        ValueError: ``size`` exceeds ``H`` or ``W``.
    """
    h, w = frames.shape[-2:]
    if size > h or size > w:
        raise ValueError(
            f"crop_size {size} exceeds the {h}x{w} frames; render larger frames or lower crop_size"
        )
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size]


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
            (:func:`center_crop_frames`); None stores full frames.

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
        return obs if crop_size is None else center_crop_frames(obs, int(crop_size))

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
    with RunProgress("IK data (triples)", num_transitions, enabled=progress) as bar:
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


class InverseDynamicsModel(nn.Module):
    """``f(o_t, o_{t+1}) -> a_t`` with one conv encoder on both observations (tied weights).

    The flattened conv feature maps ``encoder.conv_features(o_t)`` and
    ``encoder.conv_features(o_{t+1})`` (``[B, C' H' W']`` each) are concatenated
    (``[B, 2 C' H' W']``) and mapped by ``Dropout -> Linear(hidden_dims[0]) -> LayerNorm ->
    ReLU -> Dropout -> ... -> Linear(out)`` (dropout on the input and after every hidden
    layer); ``out`` is the action dimension (Box: predicted action) or the number of actions
    (Discrete: logits). Kadavath et al. 2021, Fig. 6; layer order as in their public
    ``pretraining/env_trainer.py``. The encoder's head is not used (and gets no gradient).

    Args:
        encoder_config: the :class:`PixelEncoderConfig`.
        obs_shape: ``(C * S, H, W)`` stacked observation shape.
        action_dim: Box action size, or number of discrete actions.
        discrete: Discrete (cross-entropy) or Box (squared error) actions.
        hidden_dims: MLP hidden sizes.
        dropout: dropout probability on the concatenated features and after each hidden layer.

    Raises:
        PixelEncoderConfigError: the encoder does not fit ``obs_shape``.
    """

    def __init__(
        self,
        encoder_config: PixelEncoderConfig,
        obs_shape: tuple[int, int, int],
        action_dim: int,
        discrete: bool,
        hidden_dims: tuple[int, ...] = (1024, 256),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.encoder = PixelEncoder(encoder_config, obs_shape)
        self.discrete = bool(discrete)
        out_c, out_h, out_w = self.encoder.conv_output_shape
        self.conv_feature_size: int = out_c * out_h * out_w
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = 2 * self.conv_feature_size
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                       nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, action_dim))
        self.mlp = nn.Sequential(*layers)  # PyTorch's default init, as the public code

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``[B, C*S, H, W]`` pixels (uint8 or float in [0, 255]) twice -> ``[B, out]``."""
        features = self.encoder.conv_features(torch.cat([obs, next_obs], dim=0)).flatten(1)
        first, second = features.chunk(2, dim=0)
        return self.mlp(torch.cat([first, second], dim=1))

    def loss(self, prediction: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``||a - f||^2`` (Box, Kadavath et al. Sec. 3.3.2) or of the
        cross-entropy (Discrete; ``actions`` int64 labels)."""
        if self.discrete:
            return F.cross_entropy(prediction, actions)
        return (prediction - actions).pow(2).sum(dim=1).mean()


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


@torch.no_grad()
def evaluate_inverse_dynamics(
    model: InverseDynamicsModel,
    data: TransitionFrames,
    transitions: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation metrics of ``model`` (in eval mode) on ``transitions``.

    Returns:
        ``loss`` (the training loss, averaged over triples); Discrete: ``accuracy`` and
        ``chance_accuracy`` (frequency of the most common action); Box: ``mse_per_dim`` and
        ``chance_mse_per_dim`` (squared error per action dimension of predicting the mean
        action).
    """
    was_training = model.training
    model.eval()
    total_loss, correct, sq_err = 0.0, 0, 0.0
    for start in range(0, len(transitions), batch_size):
        idx = transitions[start : start + batch_size]
        obs, actions, next_obs = data.batch(idx)
        pred = model(_to_device(obs, device), _to_device(next_obs, device))
        target = _to_device(actions, device)
        total_loss += float(model.loss(pred, target)) * len(idx)
        if model.discrete:
            correct += int((pred.argmax(dim=1) == target).sum())
        else:
            sq_err += float((pred - target).pow(2).sum())
    model.train(was_training)
    n = max(len(transitions), 1)
    metrics = {"loss": total_loss / n}
    labels = data.actions[transitions]
    if model.discrete:
        metrics["accuracy"] = correct / n
        counts = np.bincount(labels, minlength=data.action_dim)
        metrics["chance_accuracy"] = float(counts.max() / n)
    else:
        metrics["mse_per_dim"] = sq_err / (n * data.action_dim)
        metrics["chance_mse_per_dim"] = float(labels.var(axis=0).mean())
    return metrics


def train_inverse_dynamics(
    model: InverseDynamicsModel,
    data: TransitionFrames,
    train_index: np.ndarray,
    val_index: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    device: torch.device,
    logger: MetricsLogger | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Adam on the inverse-dynamics loss for ``epochs`` shuffled passes over ``train_index``.

    Returns:
        One record per epoch: ``epoch``, ``train_loss`` (mean over the epoch's updates),
        ``seconds``, and ``val_*`` metrics of :func:`evaluate_inverse_dynamics` (when
        ``val_index`` is non-empty). Records are also logged as kind ``"pretrain"``.
    """
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    updates_per_epoch = math.ceil(len(train_index) / batch_size)
    history: list[dict[str, float]] = []
    with EpochProgress("IK training", epochs * updates_per_epoch, enabled=progress) as bar:
        for epoch in range(1, epochs + 1):
            start_time = time.perf_counter()
            model.train()
            order = rng.permutation(train_index)
            losses = []
            for start in range(0, len(order), batch_size):
                obs, actions, next_obs = data.batch(order[start : start + batch_size])
                pred = model(_to_device(obs, device), _to_device(next_obs, device))
                loss = model.loss(pred, _to_device(actions, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                bar.advance()
            record: dict[str, float] = {"epoch": epoch, "train_loss": float(np.mean(losses))}
            if len(val_index):
                val = evaluate_inverse_dynamics(model, data, val_index, device)
                record.update({f"val_{k}": v for k, v in val.items()})
            record["seconds"] = time.perf_counter() - start_time
            history.append(record)
            if logger is not None:
                logger.log("pretrain", data.num_env_steps, **record)
            shown = ", ".join(
                f"{k}={v:.4g}" for k, v in record.items() if k in ("val_loss", "val_accuracy")
            )
            bar.advance(0, info=f"epoch {epoch}: {shown}")
    return history


def ik_env_kwargs(cfg: InverseDynamicsConfig) -> dict[str, Any]:
    """The ``make_env`` keyword arguments of ``cfg``'s data collection: the DMC options
    (``action_repeat``, ``render_size``, ``distraction`` with its ``distraction_seed``) for
    ``DMC/`` ids, none for other suites."""
    if not cfg.env_id.startswith("DMC/"):
        return {}
    extra: dict[str, Any] = {
        name: getattr(cfg, name)
        for name in ("action_repeat", "render_size", "distraction")
        if getattr(cfg, name) is not None
    }
    if cfg.distraction is not None:
        extra["distraction_seed"] = int(cfg.distraction_seed)
    return extra


def _make_env_for(cfg: InverseDynamicsConfig) -> VectorEnv:
    from rltransfer.envs.make import make_env

    return make_env(cfg.env_id, cfg.num_envs, cfg.seed, **ik_env_kwargs(cfg))


def pretrain_inverse_dynamics(cfg: InverseDynamicsConfig, *, env: VectorEnv | None = None) -> Path:
    """Collect random-action triples, train the inverse-dynamics model, save its encoder.

    Writes ``cfg.out_dir/config.json``, ``metrics.jsonl`` (one ``"pretrain"`` record per
    epoch) and the encoder checkpoint ``cfg.out_dir/encoder`` (convs and head, source
    ``"inverse_dynamics"``, meta ``"metrics"`` = the last epoch's record and ``"data"`` =
    collection counts) for
    :func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`.

    Args:
        cfg: the configuration.
        env: use this VectorEnv instead of ``make_env(cfg.env_id, ...)`` (not closed here);
            then ``cfg.frame_stack`` must be set unless ``cfg.env_id`` is known to env_spec.

    Returns:
        The encoder checkpoint directory.

    Raises:
        ConfigError: invalid config or device.
        UnknownEnvError: unknown ``env_id`` (when no ``env`` is given).
        ValueError: the env's observations or actions do not fit (see
            :func:`collect_random_transitions`), or the encoder does not fit the images.
    """
    cfg.validate()
    set_torch_threads(cfg.torch_threads)
    device = resolve_device(cfg.device)
    rng = seed_everything(cfg.seed)
    frame_stack = cfg.frame_stack
    if frame_stack is None:
        from rltransfer.envs.spec import env_spec

        frame_stack = env_spec(cfg.env_id).frame_stack
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.json")
    own_env = env is None
    vec_env = _make_env_for(cfg) if env is None else env
    try:
        data = collect_random_transitions(
            vec_env,
            cfg.num_transitions,
            reset_every_env_steps=cfg.reset_every_env_steps,
            frame_stack=frame_stack,
            seed=cfg.seed,
            progress=cfg.progress,
            crop_size=cfg.crop_size,
        )
    finally:
        if own_env:
            vec_env.close()
    train_index, val_index = train_validation_split(len(data), cfg.validation_fraction, rng)
    model = InverseDynamicsModel(
        cfg.encoder, data.obs_shape, data.action_dim, data.discrete, cfg.hidden_dims, cfg.dropout
    )
    logger = MetricsLogger(out_dir, tensorboard=False)
    try:
        history = train_inverse_dynamics(
            model,
            data,
            train_index,
            val_index,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            rng=rng,
            device=device,
            logger=logger,
            progress=cfg.progress,
        )
    finally:
        logger.close()
    model.to("cpu")
    source_size = data.source_frame_size or data.obs_shape[1:]
    return save_encoder(
        model.encoder,
        out_dir / "encoder",
        data.obs_shape,
        "inverse_dynamics",
        include_head=False,
        geometry={
            "frame_stack": frame_stack,
            "render_size": int(source_size[0]) if source_size[0] == source_size[1] else None,
            "crop_size": cfg.crop_size,
        },
        extra_meta={
            "env_id": cfg.env_id,
            "frame_stack": frame_stack,
            "env_kwargs": ik_env_kwargs(cfg),
            "metrics": history[-1] if history else {},
            "data": {
                "num_transitions": len(data),
                "num_train": len(train_index),
                "num_validation": len(val_index),
                "num_env_steps": data.num_env_steps,
                "num_resets": data.num_resets,
                "reset_every_env_steps": cfg.reset_every_env_steps,
                "discrete_actions": data.discrete,
                "action_dim": data.action_dim,
            },
            "config": to_dict(cfg),
        },
    )


__all__ = [
    "InverseDynamicsConfig",
    "InverseDynamicsModel",
    "TransitionFrames",
    "center_crop_frames",
    "collect_random_transitions",
    "evaluate_inverse_dynamics",
    "ik_env_kwargs",
    "pretrain_inverse_dynamics",
    "train_inverse_dynamics",
]
