"""Inverse-dynamics ("inverse kinematics", IK) encoder pretraining (Kadavath et al. 2021,
"Pretraining & Reinforcement Learning: Sharpening the Axe Before Cutting the Tree", Sec. 3.3):
the configuration, the training loop and the run (:func:`pretrain_inverse_dynamics`).

Data (Sec. 3.3.1, :mod:`~rltransfer.methods.encoder_pretraining.inverse_dynamics_data`):
``T`` triples ``(o_t, a_t, o_{t+1})`` from uniformly random actions, the environment reset
every ``k = 100`` agent steps, frames centre-cropped to the RL agent's crop size. Model
(Sec. 3.3.2, Fig. 6, :mod:`~rltransfer.methods.encoder_pretraining.inverse_dynamics_model`):
one conv encoder with tied weights on ``o_t`` and ``o_{t+1}`` and an MLP to the action; loss
``mean_t ||a_t - f(o_t, o_{t+1})||^2`` (cross-entropy for discrete actions). Training: Adam
1e-3, batch 128, 30 epochs, 95/5 train/validation split (the shared epoch loop,
:func:`~rltransfer.methods.encoder_pretraining.supervised.fit_epochs`). Only the conv layers
are saved, for :func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`.

Deliberate differences from the public code (REFERENCE.md): ``k`` counts agent steps, not
frames (the public code reset every 100 *frames*, i.e. every 25 transitions at action
repeat 4); pixels are scaled by the encoder itself (``obs / 255 - 0.5``), identically here
and in RL (the public code fed unscaled pixels in pretraining).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from rltransfer.core.config import ConfigError, save_config, to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress
from rltransfer.core.seeding import seed_everything
from rltransfer.methods.encoder_pretraining.inverse_dynamics_data import (
    TransitionFrames,
    collect_random_transitions,
)
from rltransfer.methods.encoder_pretraining.inverse_dynamics_model import (
    InverseDynamicsModel,
    evaluate_inverse_dynamics,
    predict_batch,
)
from rltransfer.methods.encoder_pretraining.supervised import (
    fit_epochs,
    resolve_device,
    set_torch_threads,
    train_validation_split,
)
from rltransfer.methods.encoder_pretraining.transfer import save_encoder
from rltransfer.nets.pixel_encoders import PixelEncoderConfig


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

    def epoch_batches() -> list[np.ndarray]:
        order = rng.permutation(train_index)
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    def batch_loss(transitions: np.ndarray) -> torch.Tensor:
        return model.loss(*predict_batch(model, data, transitions, device))

    def validate() -> dict[str, float]:
        return evaluate_inverse_dynamics(model, data, val_index, device)

    with RunProgress("IK training", epochs * updates_per_epoch, enabled=progress,
                     unit="updates") as bar:
        return fit_epochs(
            model,
            optimizer,
            epochs=epochs,
            epoch_batches=epoch_batches,
            batch_loss=batch_loss,
            validate=validate if len(val_index) else None,
            progress=bar,
            logger=logger,
            log_step=data.num_env_steps,
        )


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
    "ik_env_kwargs",
    "pretrain_inverse_dynamics",
    "train_inverse_dynamics",
]
