"""Pixel SAC's configs: the learner's hyperparameters (:class:`SACConfig`) and one training
run (:class:`SACTrainConfig`), with the settings derived from them (render size, env
options) and those taken from a pretrained encoder (:func:`config_from_pretrained_encoder`).

Defaults follow Kadavath et al. 2021's code (built on PAD, Hansen et al. 2021) as listed in
REFERENCE.md ("Pixel SAC on DeepMind Control"), except the scaled-down budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rltransfer.core.config import RunConfig
from rltransfer.nets.pixel_encoders import PixelEncoderConfig

AUGMENTATIONS: tuple[str, ...] = ("shift", "crop", "none")
"""Image augmentations accepted by :class:`SACConfig` (see
:mod:`rltransfer.agents.sac.augmentation`)."""

__all__ = [
    "AUGMENTATIONS",
    "SACConfig",
    "SACTrainConfig",
    "config_from_pretrained_encoder",
    "resolved_render_size",
    "sac_env_kwargs",
]


@dataclass
class SACConfig:
    """SAC hyperparameters; defaults from Kadavath et al. 2021's code (built on PAD) as listed
    in REFERENCE.md ("Pixel SAC on DeepMind Control").

    Raises:
        ValueError: a value out of range; one message lists every problem.
    """

    actor_lr: float = 1e-4
    """Adam learning rate of the actor (head + trunk)."""
    critic_lr: float = 1e-4
    """Adam learning rate of the two Q nets."""
    encoder_lr: float = 1e-4
    """Adam learning rate of the (critic's) encoder, trained by the critic loss."""
    alpha_lr: float = 1e-4
    """Adam learning rate of ``log_alpha``."""
    alpha_beta1: float = 0.5
    """Adam beta1 of the temperature optimizer."""
    beta1: float = 0.9
    """Adam beta1 of the actor and critic optimizers."""
    init_temperature: float = 0.1
    """Initial alpha."""
    target_entropy: float | None = None
    """Target entropy; ``None`` means ``-|A|``."""
    batch_size: int = 128
    """Transitions per update."""
    hidden_dim: int = 1024
    """Width of the actor and Q MLPs (two hidden layers)."""
    gamma: float = 0.99
    """Discount per agent step (used by the replay to build returns)."""
    n_step: int = 1
    """Steps of the return (1 in the papers)."""
    critic_tau: float = 0.01
    """Soft target update rate of the Q nets."""
    encoder_tau: float = 0.05
    """Soft target update rate of the encoder."""
    actor_update_every_updates: int = 2
    """Update actor and temperature every this many updates."""
    target_update_every_updates: int = 2
    """Soft-update the targets every this many updates."""
    log_std_min: float = -10.0
    """Lower bound of the actor's log std (SAC-AE)."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log std (SAC-AE)."""
    augmentation: str = "shift"
    """``"shift"`` (DrQ, pad ``shift_pad``), ``"crop"`` (render larger, random crop to
    ``crop_size``), ``"none"``."""
    shift_pad: int = 4
    """Padding of the random shift (DrQ: 4)."""
    crop_size: int = 84
    """Output size of ``"crop"`` (the encoder's input size); the env renders larger (100)."""
    max_grad_norm: float | None = None
    """Optional global gradient-norm clip of each loss (the papers use none)."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("actor_lr", "critic_lr", "encoder_lr", "alpha_lr", "init_temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        for name in ("batch_size", "hidden_dim", "n_step", "actor_update_every_updates",
                     "target_update_every_updates", "crop_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("critic_tau", "encoder_tau", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1] (got {getattr(self, name)})")
        for name in ("alpha_beta1", "beta1"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.log_std_min >= self.log_std_max:
            problems.append("log_std_min must be < log_std_max")
        if self.augmentation not in AUGMENTATIONS:
            problems.append(
                f"augmentation must be one of {', '.join(AUGMENTATIONS)} "
                f"(got {self.augmentation!r})"
            )
        if self.shift_pad < 0:
            problems.append(f"shift_pad must be >= 0 (got {self.shift_pad})")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append("max_grad_norm must be > 0 or None")
        if problems:
            raise ValueError("invalid SACConfig: " + "; ".join(problems))


@dataclass
class SACTrainConfig(RunConfig):
    """One pixel-SAC run. Budgets are in agent steps (``*_env_steps``); defaults follow
    Kadavath et al. 2021 / PAD (REFERENCE.md) except the scaled-down budget. Checked by
    :meth:`validate` when a trainer is built; the run-level fields are
    :class:`~rltransfer.core.config.RunConfig`'s."""

    env_id: str = "DMC/reacher-easy"
    """``DMC/<domain>-<task>`` (see :func:`rltransfer.envs.make_env`)."""
    num_envs: int = 1
    """Parallel envs collecting (the papers use 1)."""
    total_env_steps: int = 100_000
    """Agent steps (actions) to train for, over all envs."""
    run_dir: str = "runs/sac"
    """Run directory (resumed when it holds this run)."""
    replay_capacity_env_steps: int = 100_000
    """Replay slots in all (split evenly over envs)."""
    learning_starts_env_steps: int = 1000
    """Uniformly random actions before the policy acts and updates start. The step the
    warm-up ends does ``learning_starts_env_steps * updates_per_env_step`` updates at once
    (PAD's ``num_updates = init_steps if step == init_steps else 1``), so from then on the
    number of updates keeps pace with the collected steps."""
    updates_per_env_step: float = 1.0
    """SAC updates per agent step after the warm-up."""
    checkpoint_replay: bool = True
    """Store the replay in checkpoints (exact resume; ~21 kB per transition at 84x84)."""
    frame_stack: int | None = None
    """Frames stacked into an observation; ``None``: the suite's default (3 for DMC)."""
    action_repeat: int | None = None
    """Env frames per agent step; ``None``: the env's default (4 for cheetah/reacher/walker)."""
    render_size: int | None = None
    """Rendered frame size; ``None``: 100 with ``agent.augmentation="crop"`` (cropped to 84),
    else 84."""
    distraction: str | None = None
    """Distracting-background source (``"builtin"``, a folder of frames or a video file), or
    ``None``."""
    distraction_seed: int = 0
    """Which builtin distraction clip (independent of ``seed``): pass the IK pretraining's
    value so that pretraining, training and evaluation show the same clip."""
    agent: SACConfig = field(default_factory=SACConfig)
    encoder: PixelEncoderConfig = field(default_factory=PixelEncoderConfig)
    init_encoder_from: str | None = None
    """Pretrained encoder checkpoint (``transfer/encoder.save_encoder`` output) or ``None``."""
    init_encoder_head: bool = False
    """Also load the encoder's head (FC + LayerNorm) from ``init_encoder_from``."""
    freeze_encoder: bool = False
    """Keep the loaded conv layers fixed (needs ``init_encoder_from``)."""

    def problems(self) -> list[str]:
        """The run-level problems (:meth:`RunConfig.problems`) and SAC's: encoder freezing or
        head loading without ``init_encoder_from`` (the agent's fields are checked by
        :class:`SACConfig`)."""
        problems = super().problems()
        if self.freeze_encoder and self.init_encoder_from is None:
            problems.append("freeze_encoder needs init_encoder_from PATH (a pretrained encoder)")
        if self.init_encoder_head and self.init_encoder_from is None:
            problems.append("init_encoder_head needs init_encoder_from PATH")
        return problems


def resolved_render_size(cfg: SACTrainConfig) -> int:
    """The frame size rendered: ``cfg.render_size``, else 100 for crop augmentation, else 84."""
    if cfg.render_size is not None:
        return int(cfg.render_size)
    return 100 if cfg.agent.augmentation == "crop" else 84


def sac_env_kwargs(cfg: SACTrainConfig) -> dict[str, Any]:
    """The :func:`~rltransfer.envs.make_env` settings of ``cfg``'s training env (after
    ``env_id, num_envs, seed``): render size, and the action repeat and distraction ``cfg``
    sets. Evaluation uses :func:`~rltransfer.evaluation.protocol.eval_env_kwargs` of these."""
    kwargs: dict[str, Any] = {"render_size": resolved_render_size(cfg)}
    if cfg.action_repeat is not None:
        kwargs["action_repeat"] = cfg.action_repeat
    if cfg.distraction is not None:
        kwargs["distraction"] = cfg.distraction
        kwargs["distraction_seed"] = cfg.distraction_seed
    return kwargs


def config_from_pretrained_encoder(
    cfg: SACTrainConfig, *, strict: bool = False
) -> SACTrainConfig:
    """``cfg`` with the encoder architecture and image geometry of its ``init_encoder_from``
    checkpoint filled in (``cfg`` itself without one).

    Taken from the checkpoint's metadata (:func:`rltransfer.methods.encoder_pretraining.transfer.
    read_pretrained_architecture`) unless ``cfg`` sets them: the encoder config (kind,
    filters, feature size, groups), ``frame_stack``, ``render_size`` and, for an encoder
    trained on centre crops of larger renders (inverse dynamics at 100 -> 84), crop
    augmentation with the checkpoint's crop size. A value counts as set when it differs from
    :class:`SACTrainConfig`'s default (``None`` for ``frame_stack`` / ``render_size``); with
    ``strict`` every value that differs from the checkpoint's counts as set (the CLI: its
    defaults are the checkpoint's, so a difference is a flag the user passed). The feature
    size only matters with ``init_encoder_head``.

    Raises:
        EncoderMismatchError: one message listing every setting of ``cfg`` that contradicts
            the checkpoint (drop them to take the checkpoint's, or pretrain again).
        CheckpointError: unreadable checkpoint metadata.
    """
    if cfg.init_encoder_from is None:
        return cfg
    from rltransfer.methods.encoder_pretraining.transfer import (
        EncoderMismatchError,
        read_pretrained_architecture,
    )

    arch = read_pretrained_architecture(cfg.init_encoder_from)
    default = SACTrainConfig()
    conflicts: list[str] = []

    def take(name: str, ours: Any, default_value: Any, theirs: Any, matters: bool = True) -> Any:
        if theirs is None or ours == theirs:
            return ours
        if ours == default_value and not strict:
            return theirs
        if matters:
            conflicts.append(f"{name} {ours!r} (set here) vs {theirs!r} (checkpoint)")
        return ours

    encoder = dataclasses.replace(cfg.encoder, **{
        f.name: take(f"encoder.{f.name}", getattr(cfg.encoder, f.name),
                     getattr(default.encoder, f.name), getattr(arch.encoder_config, f.name),
                     matters=f.name != "feature_dim" or cfg.init_encoder_head)
        for f in dataclasses.fields(PixelEncoderConfig)
    })
    frame_stack = take("frame_stack", cfg.frame_stack, None, arch.frame_stack)
    input_size = arch.obs_shape[1]
    agent, render_size = cfg.agent, cfg.render_size
    if (arch.crop_size is not None and arch.render_size is not None
            and arch.crop_size < arch.render_size):
        # trained on centre crops of larger renders: RL crops the same renders
        augmentation = take("agent.augmentation", agent.augmentation,
                            default.agent.augmentation, "crop")
        crop_size = take("agent.crop_size", agent.crop_size, default.agent.crop_size,
                         arch.crop_size)
        agent = dataclasses.replace(agent, augmentation=augmentation, crop_size=crop_size)
        render_size = take("render_size", render_size, None, arch.render_size)
    elif agent.augmentation == "crop":
        crop_size = take("agent.crop_size", agent.crop_size, default.agent.crop_size,
                         input_size)
        agent = dataclasses.replace(agent, crop_size=crop_size)
    else:
        render_size = take("render_size", render_size, None, input_size)
    if conflicts:
        raise EncoderMismatchError(
            f"init_encoder_from {arch.path} does not fit this run's settings: "
            + "; ".join(conflicts)
            + ". Leave these settings out to take them from the checkpoint, or pretrain again "
            "with them."
        )
    return dataclasses.replace(cfg, encoder=encoder, frame_stack=frame_stack,
                               render_size=render_size, agent=agent)
