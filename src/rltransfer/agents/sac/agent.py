"""Soft actor-critic from pixels (SAC-AE / PAD / Kadavath et al. style) or from flat states.

Algorithm (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", Alg. 1 and
Eq. 5-7, 17-18, with automatic temperature), wired as in SAC-AE (Yarats et al. 2019) and the
code of PAD (Hansen et al. 2021) that Kadavath et al. 2021 build on:

* ``encoder`` (a :class:`~rltransfer.nets.pixel_encoders.PixelEncoder`) belongs to the
  critic; only the critic loss trains it. The actor uses the *same* conv layers
  (``encoder.convs``) on **detached** conv features, followed by its own head
  (``actor.head``: Linear -> LayerNorm -> tanh) and MLP trunk, so actor gradients never reach
  the shared convs (SAC-AE's ``detach_encoder``, tied conv weights).
* ``critic``: two Q MLPs (``[features, action] -> hidden -> hidden -> 1``) on the encoder's
  features (clipped double Q, Fujimoto et al. 2018).
* targets: ``encoder_target`` and ``critic_target``, soft-updated every
  ``target_update_every_updates`` updates with ``encoder_tau`` (encoder) and ``critic_tau``
  (Q nets): ``theta' <- tau theta + (1 - tau) theta'`` (parameters; BatchNorm running
  statistics are not averaged: the target always runs in training mode on batch statistics).
* ``actor``: tanh-squashed diagonal Gaussian; ``log_std`` squashed into
  ``[log_std_min, log_std_max]`` (SAC-AE: -10, 2). ``log pi(a|s) = log N(u; mu, std) -
  sum log(1 - tanh(u)^2)`` (Haarnoja et al. 2018, Appendix C).
* temperature: ``alpha = exp(log_alpha)``, loss ``alpha * (-log pi - target_entropy)``
  (gradient only into ``alpha``; Haarnoja et al. 2018, Eq. 18), target entropy ``-|A|``.

Per update (``u = num_updates`` before the update):

1. critic: ``y = R + d * (min_j Q'_j(s', a') - alpha log pi(a'|s'))`` with ``a' ~ pi(.|s')``
   (online conv features of ``s'``, no gradient), ``R`` = ``n_step_return`` and ``d`` =
   ``bootstrap_discount`` from replay (``gamma`` for 1-step, ``gamma^k`` for n-step, 0 at a
   termination); loss ``MSE(Q_1(s, a), y) + MSE(Q_2(s, a), y)`` trains ``encoder`` and
   ``critic``. With n > 1 the entropy bonus is only applied at the bootstrap state.
2. if ``u % actor_update_every_updates == 0``: actor loss
   ``E[alpha log pi(a|s) - min_j Q_j(s, a)]`` (critic and encoder head not trained by it,
   conv features detached, reusing the features of step 1 as DrQ-v2 does), then the
   temperature loss.
3. if ``u % target_update_every_updates == 0``: soft target update.

Augmentation (applied to ``obs`` and ``next_obs`` independently, at update time only):
``"shift"`` (DrQ, Kostrikov et al. 2021: replicate-pad 4 pixels, random crop back to H x W),
``"crop"`` (PAD / Kadavath: the env renders ``H x W`` (100 x 100), random ``crop_size`` crop
(84) for training, centre crop for acting), or ``"none"``.

Flat state observations (``obs_shape = (D,)``) use :class:`FlatStateEncoder` (no convs,
identity features), making this plain state-based SAC; augmentation must be ``"none"``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rltransfer.agents.r2d2.agent import NonFiniteLossError
from rltransfer.core.checkpoint_components import (
    carry_optimizer_state,
    check_component_names,
    component_tensors,
    load_optimizer_state,
    optimizer_tensors,
    summarise_problems,
    tensor_problems,
)
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig, init_weights

AUGMENTATIONS: tuple[str, ...] = ("shift", "crop", "none")
"""Image augmentations accepted by :class:`SACConfig`."""

COMPONENTS: tuple[str, ...] = ("encoder", "actor", "critic")
"""The SAC agent's named components (what weight transfer loads or freezes)."""

__all__ = [
    "AUGMENTATIONS",
    "COMPONENTS",
    "Actor",
    "DoubleQCritic",
    "FlatStateEncoder",
    "NonFiniteLossError",
    "SACAgent",
    "SACConfig",
    "center_crop",
    "random_crop",
    "random_shift",
    "soft_update_",
]


@dataclass
class SACConfig:
    """SAC hyperparameters; defaults from Kadavath et al. 2021's code (built on PAD) as listed
    in REFERENCE.md ("Pixel SAC on DeepMind Control")."""

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


# ---------------------------------------------------------------------- augmentation
def _crop_at(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int,
             width: int) -> torch.Tensor:
    """Per-sample windows ``images[i, :, top_i:top_i+height, left_i:left_i+width]`` ``[B, C,
    height, width]``, where rows / columns outside the image repeat the edge (replicate
    padding = clamped indices). One ``gather`` over the flattened pixels (4x faster on CPU
    than advanced indexing)."""
    b, c, h, w = images.shape
    rows = (top[:, None] + torch.arange(height, device=images.device)[None, :]).clamp_(0, h - 1)
    cols = (left[:, None] + torch.arange(width, device=images.device)[None, :]).clamp_(0, w - 1)
    flat = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, height * width)
    out = images.reshape(b, c, h * w).gather(2, flat.expand(b, c, height * width))
    return out.reshape(b, c, height, width)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """DrQ random shift (Kostrikov et al. 2021): replicate-pad by ``pad`` pixels, then take a
    random ``H x W`` crop per sample (integer shifts in ``[-pad, pad]``). Implemented as a
    gather with clamped indices (no padded copy).

    Args:
        images: ``[B, C, H, W]`` (any dtype; uint8 stays uint8).
        pad: pixels of padding (4 in DrQ); 0 returns ``images`` unchanged.
        generator: torch RNG for the shifts.

    Returns:
        ``[B, C, H, W]``, same dtype.
    """
    if pad == 0:
        return images
    b, _, h, w = images.shape
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(images.device)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(
        images.device
    )
    return _crop_at(images, top - pad, left - pad, h, w)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Random ``size x size`` crop per sample (PAD / CURL / Kadavath et al.: 100 -> 84).

    Raises:
        ValueError: ``size`` larger than the images.
    """
    b, _, h, w = images.shape
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds the {h}x{w} images; render larger images")
    top = torch.randint(0, h - size + 1, (b,), generator=generator, device="cpu").to(
        images.device
    )
    left = torch.randint(0, w - size + 1, (b,), generator=generator, device="cpu").to(
        images.device
    )
    return _crop_at(images, top, left, size, size)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size x size`` crop (evaluation / acting with ``"crop"`` augmentation)."""
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds the {h}x{w} images; render larger images")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging of parameters: ``theta' <- tau * theta + (1 - tau) * theta'``.

    Buffers (e.g. BatchNorm running statistics) are left alone.
    """
    with torch.no_grad():
        t_params: list[torch.Tensor] = list(target.parameters())
        s_params: list[torch.Tensor] = list(source.parameters())
        if len(t_params) != len(s_params):
            raise ValueError("soft_update_: target and source have different parameter lists")
        if t_params:
            torch._foreach_lerp_(t_params, s_params, tau)


# ---------------------------------------------------------------------- networks
class FlatStateEncoder(nn.Module):
    """The "encoder" of state-based SAC: no parameters, features = the float state.

    ``convs`` and ``head`` are identities so the agent code is the same as for pixels.
    """

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.convs = nn.Identity()
        self.head = nn.Identity()
        self.feature_dim = int(obs_dim)
        self.obs_shape = (int(obs_dim),)

    def conv_features(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` float32 states (unchanged)."""
        return obs.to(torch.float32)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` float32 states (unchanged)."""
        return obs.to(torch.float32)


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy on (detached) conv features.

    ``head`` (Linear -> LayerNorm -> tanh, its own copy, as the actor's encoder head in
    SAC-AE) maps flattened conv features to ``feature_dim``; ``trunk`` maps those to
    ``(mu, log_std)`` of ``A`` dims.
    """

    def __init__(self, conv_dim: int, feature_dim: int, action_dim: int, hidden_dim: int,
                 log_std_min: float, log_std_max: float, pixels: bool) -> None:
        super().__init__()
        self.head: nn.Module = (
            nn.Sequential(nn.Flatten(), nn.Linear(conv_dim, feature_dim),
                          nn.LayerNorm(feature_dim), nn.Tanh())
            if pixels else nn.Identity()
        )
        self.trunk = _mlp(feature_dim, hidden_dim, 2 * action_dim)
        self.log_std_min = float(log_std_min)
        self.log_std_max = float(log_std_max)
        self.apply(init_weights)

    def forward(self, conv_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_std)``, each float32 ``[B, A]`` (pre-tanh Gaussian parameters)."""
        mu, log_std = self.trunk(self.head(conv_features)).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        return mu, log_std

    def sample(self, conv_features: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised sample.

        Returns:
            ``(action, log_prob, mean_action)``: ``action = tanh(mu + std * eps)`` ``[B, A]``
            in (-1, 1), ``log_prob`` ``[B]`` of the squashed action (change of variables,
            Haarnoja et al. 2018, Eq. 26), ``mean_action = tanh(mu)`` ``[B, A]``.
        """
        mu, log_std = self(conv_features)
        std = log_std.exp()
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device)
        u = mu + std * eps
        gauss = (-0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), numerically stable.
        correction = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), gauss - correction, torch.tanh(mu)


class DoubleQCritic(nn.Module):
    """Two Q MLPs ``Q_j([features, action]) -> scalar`` (clipped double Q)."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.q1 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.apply(init_weights)

    def forward(self, features: torch.Tensor, action: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q1, Q2)``, each float32 ``[B]``, for features ``[B, F]`` and actions ``[B, A]``."""
        x = torch.cat([features, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


@contextmanager
def _no_param_grads(*modules: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into the modules' parameters (restoring the flags)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


# ---------------------------------------------------------------------- agent
class SACAgent:
    """Pixel (or state) SAC learner with named modules for weight transfer.

    Named modules: ``encoder`` (critic's; its ``convs`` are shared with the actor),
    ``actor``, ``critic``, ``encoder_target``, ``critic_target``; parameter ``log_alpha``.

    Args:
        config: :class:`SACConfig`.
        obs_shape: the (stacked) observation the env side provides: ``(C*S, H, W)`` uint8
            pixels in [0, 255] (with ``"crop"`` this is the *rendered* size, e.g. 100x100,
            and the encoder sees ``crop_size``), or ``(D,)`` float states.
        action_dim: ``A``; actions are in ``[-1, 1]^A`` (the loop rescales to env bounds).
        encoder_config: :class:`PixelEncoderConfig` (pixels only; default drq4).
        device: torch device string.
        seed: seed of the agent's own torch RNG (sampling, augmentation).

    Raises:
        ValueError: bad shapes, ``"crop"`` larger than the images, augmentation on states.
    """

    def __init__(
        self,
        config: SACConfig,
        obs_shape: tuple[int, ...],
        action_dim: int,
        encoder_config: PixelEncoderConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.action_dim = int(action_dim)
        if self.action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.pixels = len(self.obs_shape) == 3
        if not self.pixels and len(self.obs_shape) != 1:
            raise ValueError(
                f"obs_shape must be (C, H, W) pixels or (D,) states, got {self.obs_shape}"
            )
        self.encoder_config = encoder_config or PixelEncoderConfig()
        if self.pixels:
            c, h, w = self.obs_shape
            if config.augmentation == "crop":
                if config.crop_size > min(h, w):
                    raise ValueError(
                        f"augmentation='crop' with crop_size={config.crop_size} needs larger "
                        f"images than {h}x{w}; render at 100 (render_size=100)"
                    )
                h = w = config.crop_size
            self.encoder_input_shape: tuple[int, ...] = (c, h, w)
            self.encoder: PixelEncoder | FlatStateEncoder = PixelEncoder(
                self.encoder_config, (c, h, w)
            )
            conv_dim = int(np.prod(self.encoder.conv_output_shape))
        else:
            if config.augmentation != "none":
                raise ValueError(
                    "flat state observations cannot be augmented; set augmentation='none'"
                )
            self.encoder_input_shape = self.obs_shape
            self.encoder = FlatStateEncoder(self.obs_shape[0])
            conv_dim = self.obs_shape[0]
        feature_dim = self.encoder.feature_dim
        self.actor = Actor(conv_dim, feature_dim, self.action_dim, config.hidden_dim,
                           config.log_std_min, config.log_std_max, self.pixels)
        self.critic = DoubleQCritic(feature_dim, self.action_dim, config.hidden_dim)
        self.encoder_target = copy.deepcopy(self.encoder)
        self.critic_target = copy.deepcopy(self.critic)
        for module in (self.encoder_target, self.critic_target):
            module.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), requires_grad=True)
        self.target_entropy = (
            -float(self.action_dim) if config.target_entropy is None
            else float(config.target_entropy)
        )
        self.online = nn.ModuleDict(
            {"encoder": self.encoder, "actor": self.actor, "critic": self.critic}
        )
        self.target = nn.ModuleDict({"encoder": self.encoder_target, "critic": self.critic_target})
        self.online.to(self.device)
        self.target.to(self.device)
        self.log_alpha = self.log_alpha.detach().to(self.device).requires_grad_(True)
        self.encoder_frozen = False
        self._frozen_head = False
        self.frozen: set[str] = set()
        self.num_updates = 0
        self._build_optimizers()

    # ------------------------------------------------------------------ setup
    def _build_optimizers(self) -> None:
        """Adam over the trainable parameters: critic + encoder, actor, temperature. An
        optimizer with nothing to train (frozen components) is ``None`` and its step skipped."""
        cfg = self.config
        enc_params = [p for p in self.encoder.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = []
        if "critic" not in self.frozen:
            groups.append({"params": list(self.critic.parameters()), "lr": cfg.critic_lr})
        if enc_params:
            groups.append({"params": enc_params, "lr": cfg.encoder_lr})
        self.critic_optimizer: torch.optim.Adam | None = (
            torch.optim.Adam(groups, betas=(cfg.beta1, 0.999), foreach=True) if groups else None
        )
        self.actor_optimizer: torch.optim.Adam | None = (
            torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=(cfg.beta1, 0.999),
                             foreach=True) if "actor" not in self.frozen else None
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr,
                                                betas=(cfg.alpha_beta1, 0.999), foreach=True)

    def _optimizers(self) -> dict[str, torch.optim.Adam]:
        opts = {"critic": self.critic_optimizer, "actor": self.actor_optimizer,
                "alpha": self.alpha_optimizer}
        return {k: v for k, v in opts.items() if v is not None}

    def _param_names(self) -> dict[int, str]:
        names = {id(p): f"online.{n}" for n, p in self.online.named_parameters()}
        names[id(self.log_alpha)] = "log_alpha"
        return names

    @property
    def alpha(self) -> float:
        """Current temperature ``exp(log_alpha)``."""
        return float(self.log_alpha.detach().exp())

    def named_modules_for_transfer(self) -> dict[str, nn.Module]:
        """``{"encoder", "actor", "critic"}`` (what weight transfer can load or freeze)."""
        return self.named_components()

    def named_components(self) -> dict[str, nn.Module]:
        """Online ``encoder``, ``actor``, ``critic`` (:class:`rltransfer.core.types.Agent`).
        The actor's conv layers are the encoder's (``actor`` holds only its head and trunk)."""
        return {"encoder": self.encoder, "actor": self.actor, "critic": self.critic}

    def target_components(self) -> dict[str, nn.Module]:
        """Target ``encoder`` and ``critic`` (the actor has none)."""
        return {"encoder": self.encoder_target, "critic": self.critic_target}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The critic (+ encoder), actor and temperature optimizers that exist."""
        return list(self._optimizers().values())

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly the components ``names`` (no gradient steps), unfreeze the others.

        ``"encoder"`` freezes the whole encoder, convs and head, with its BatchNorm layers
        kept in eval mode (:meth:`set_encoder_frozen` with ``include_head``); without it a
        convs-only freeze made by :meth:`set_encoder_frozen` stays. Frozen ``actor`` /
        ``critic``: their losses are computed but not applied. The temperature keeps
        training. Adam moments of parameters that stay trainable are kept.

        Raises:
            UnknownComponentError: a name that is not a component.
        """
        wanted = set(check_component_names(names, COMPONENTS, "freeze"))
        if "encoder" in wanted:
            enc_frozen, head_frozen = True, True
        elif self._frozen_head:  # the whole encoder was frozen: unfreeze it
            enc_frozen, head_frozen = False, False
        else:  # keep a convs-only freeze (Kadavath et al.)
            enc_frozen, head_frozen = self.encoder_frozen, False
        old = self._optimizers()
        self.frozen = wanted
        self.encoder_frozen, self._frozen_head = enc_frozen, head_frozen
        self.encoder.convs.requires_grad_(not enc_frozen)
        self.encoder.head.requires_grad_(not head_frozen)
        self.actor.requires_grad_("actor" not in wanted)
        self.critic.requires_grad_("critic" not in wanted)
        self._build_optimizers()
        for key, opt in self._optimizers().items():
            if key in old:
                carry_optimizer_state(old[key], opt)

    def sync_targets(self) -> None:
        """Hard copy online -> target (call after loading pretrained encoder weights)."""
        self.encoder_target.load_state_dict(self.encoder.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())

    def set_encoder_frozen(self, frozen: bool, include_head: bool = False) -> None:
        """Freeze (or unfreeze) the shared conv layers (and, with ``include_head``, the
        critic's encoder head): no gradient steps, and BatchNorm layers kept in eval mode so
        running statistics do not change either. Rebuilds the critic optimizer (its Adam
        moments for the encoder are dropped); call before training."""
        self.encoder_frozen = bool(frozen)
        self.encoder.convs.requires_grad_(not frozen)
        self.encoder.head.requires_grad_(not (frozen and include_head))
        self._frozen_head = bool(frozen and include_head)
        if self._frozen_head:
            self.frozen.add("encoder")
        else:
            self.frozen.discard("encoder")
        self._build_optimizers()

    def _train_mode(self, mode: bool) -> None:
        self.online.train(mode)
        self.target.train(mode)
        if self.encoder_frozen:
            self.encoder.convs.eval()
            self.encoder_target.convs.eval()

    # ------------------------------------------------------------------ tensors
    def _obs_tensor(self, obs: Any, what: str) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(obs) if not torch.is_tensor(obs) else obs)
        if t.dim() != len(self.obs_shape) + 1 or tuple(t.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"{what} must be [B, {', '.join(map(str, self.obs_shape))}], got "
                f"{tuple(t.shape)}; check frame_stack / render_size / augmentation"
            )
        return t.to(self.device)

    def _augment(self, obs: torch.Tensor) -> torch.Tensor:
        aug = self.config.augmentation
        if aug == "shift":
            return random_shift(obs, self.config.shift_pad, self.generator)
        if aug == "crop":
            return random_crop(obs, self.config.crop_size, self.generator)
        return obs

    def _eval_view(self, obs: torch.Tensor) -> torch.Tensor:
        if self.pixels and self.config.augmentation == "crop":
            return center_crop(obs, self.config.crop_size)
        return obs

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of observations.

        Args:
            obs: ``[B, *obs_shape]`` (uint8 pixels in [0, 255], or float states).
            deterministic: ``tanh(mu)`` (evaluation) instead of a sample.

        Returns:
            float32 ``[B, A]`` in [-1, 1].

        Raises:
            ValueError: wrong observation shape.
        """
        x = self._eval_view(self._obs_tensor(obs, "obs"))
        self._train_mode(False)
        feats = self.encoder.conv_features(x)
        action, _, mean = self.actor.sample(feats, self.generator)
        out = mean if deterministic else action
        return out.float().cpu().numpy()

    # ------------------------------------------------------------------ learning
    def _batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        for key in ("obs", "action", "next_obs", "n_step_return", "bootstrap_discount"):
            if key not in batch:
                raise KeyError(f"SAC update batch lacks {key!r} (use TransitionReplay.sample)")
        obs = self._obs_tensor(batch["obs"], "batch['obs']")
        next_obs = self._obs_tensor(batch["next_obs"], "batch['next_obs']")
        b = obs.shape[0]
        action = torch.as_tensor(np.asarray(batch["action"]), dtype=torch.float32)
        if tuple(action.shape) != (b, self.action_dim):
            raise ValueError(
                f"batch['action'] must be float [{b}, {self.action_dim}], got "
                f"{tuple(action.shape)}; build the replay with action_shape=({self.action_dim},)"
            )
        out = {"obs": obs, "next_obs": next_obs, "action": action.to(self.device)}
        for key in ("n_step_return", "bootstrap_discount"):
            t = torch.as_tensor(np.asarray(batch[key]), dtype=torch.float32).reshape(-1)
            if t.shape[0] != b:
                raise ValueError(f"batch[{key!r}] has {t.shape[0]} entries, obs has {b}")
            out[key] = t.to(self.device)
        return out

    def critic_target_values(self, next_obs: torch.Tensor, reward: torch.Tensor,
                             discount: torch.Tensor) -> torch.Tensor:
        """Soft TD target ``y = R + d (min_j Q'_j(s', a') - alpha log pi(a'|s'))``, ``[B]``.

        ``next_obs`` is the (already augmented) encoder input ``[B, C, H, W]`` (or states);
        ``a' ~ pi(.|s')`` uses the online conv features, ``Q'`` the target encoder and
        critic. No gradient flows.
        """
        with torch.no_grad():
            next_action, next_logp, _ = self.actor.sample(
                self.encoder.conv_features(next_obs), self.generator
            )
            q1, q2 = self.critic_target(self.encoder_target(next_obs), next_action)
            v = torch.minimum(q1, q2) - self.log_alpha.exp() * next_logp
            return reward + discount * v

    def actor_loss(self, conv_features: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[alpha log pi(a|s) - min_j Q_j(s, a)], log_prob [B])`` with ``a ~ pi`` on
        *detached* conv features; only the actor's parameters receive gradients."""
        feats = conv_features.detach()
        action, logp, _ = self.actor.sample(feats, self.generator)
        with _no_param_grads(self.encoder, self.critic):
            q1, q2 = self.critic(self.encoder.head(feats), action)
        loss = (self.log_alpha.detach().exp() * logp - torch.minimum(q1, q2)).mean()
        return loss, logp

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """Temperature loss ``E[alpha (-log pi - target_entropy)]`` (Haarnoja et al. 2018,
        Eq. 18): alpha grows when the policy's entropy ``-log pi`` is below the target."""
        return (self.log_alpha.exp() * (-log_prob.detach() - self.target_entropy)).mean()

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Adam | None, what: str
              ) -> float:
        if optimizer is None:  # everything this loss trains is frozen
            return 0.0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.config.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads])) if grads else \
                torch.zeros(())
        if not bool(torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite {what} gradient at update {self.num_updates + 1}; that step was "
                "skipped. Lower the learning rates or check observations/rewards for NaN/inf"
            )
        optimizer.step()
        return float(norm)

    def _check_finite(self, value: float, what: str, applied: str) -> None:
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"non-finite {what} ({value}) at update {self.num_updates + 1}; {applied} "
                "Check rewards/observations for NaN/inf or lower the learning rates"
            )

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One SAC update (critic; actor + temperature and targets on their periods).

        Args:
            batch: ``TransitionReplay.sample`` output with continuous actions: ``obs``,
                ``next_obs`` ``[B, *obs_shape]``, ``action`` float ``[B, A]`` in [-1, 1],
                ``n_step_return`` ``[B]``, ``bootstrap_discount`` ``[B]``.

        Returns:
            ``critic_loss``, ``q_mean``, ``target_mean``, ``alpha`` and, on actor updates,
            ``actor_loss``, ``alpha_loss``, ``entropy`` (``-log pi`` mean).

        Raises:
            KeyError / ValueError: missing keys or bad shapes.
            NonFiniteLossError: NaN/inf loss or gradient; the critic step is skipped when the
                critic loss is bad (nothing changed), the actor/alpha steps when theirs is.
        """
        cfg = self.config
        t = self._batch(batch)
        self._train_mode(True)
        obs = self._augment(t["obs"])
        next_obs = self._augment(t["next_obs"])
        y = self.critic_target_values(next_obs, t["n_step_return"], t["bootstrap_discount"])
        conv = self.encoder.conv_features(obs)
        q1, q2 = self.critic(self.encoder.head(conv), t["action"])
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        loss_value = float(critic_loss.detach())
        self._check_finite(loss_value, "critic loss", "the update was skipped.")
        self._step(critic_loss, self.critic_optimizer, "critic")
        metrics = {
            "critic_loss": loss_value,
            "q_mean": float(q1.detach().mean()),
            "target_mean": float(y.mean()),
        }
        u = self.num_updates
        self.num_updates = u + 1
        if u % cfg.actor_update_every_updates == 0:
            a_loss, logp = self.actor_loss(conv)
            self._check_finite(float(a_loss.detach()), "actor loss",
                               "the critic step was applied, the actor step skipped.")
            self._step(a_loss, self.actor_optimizer, "actor")
            al_loss = self.alpha_loss(logp)
            self._step(al_loss, self.alpha_optimizer, "temperature")
            metrics.update(actor_loss=float(a_loss.detach()), alpha_loss=float(al_loss.detach()),
                           entropy=float(-logp.detach().mean()))
        if u % cfg.target_update_every_updates == 0:
            soft_update_(self.critic_target, self.critic, cfg.critic_tau)
            soft_update_(self.encoder_target, self.encoder, cfg.encoder_tau)
        metrics["alpha"] = self.alpha
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as flat CPU tensors (safetensors-ready).

        Keys: ``online.<encoder|actor|critic>.<name>``, ``target.<encoder|critic>.<name>``,
        ``log_alpha`` ``[1]``, ``optimizer.<critic|actor|alpha>.<param name>.<field>``,
        ``num_updates`` ``int64[1]``.
        """
        out = component_tensors(self.named_components(), "online.", ".")
        out.update(component_tensors(self.target_components(), "target.", "."))
        out["log_alpha"] = self.log_alpha.detach().cpu().reshape(1).clone()
        names = self._param_names()
        for oname, opt in self._optimizers().items():
            out.update(optimizer_tensors(opt, names, f"optimizer.{oname}."))
        out["num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able description of the state: counters, shapes, frozen flags."""
        return {
            "num_updates": self.num_updates,
            "obs_shape": list(self.obs_shape),
            "action_dim": self.action_dim,
            "encoder_frozen": self.encoder_frozen,
            "encoder_head_frozen": self._frozen_head,
            "frozen": sorted(self.frozen),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any] | None = None) -> None:
        """Restore :meth:`state_tensors` output (and check :meth:`state_meta` if given).

        The encoder-freeze flags in ``meta`` are applied first (they decide which Adam
        moments the state must hold).

        Raises:
            ValueError: another agent's state (shapes, keys, spaces); checked before any
                tensor is changed.
        """
        if meta is not None:
            for key in ("obs_shape", "action_dim"):
                mine = self.state_meta()[key]
                if key in meta and meta[key] != mine:
                    raise ValueError(
                        f"SAC state was saved with {key}={meta[key]}, this agent has {mine}; "
                        "build the agent with the saved spaces"
                    )
        problems: list[str] = []
        for prefix, net in (("online.", self.online), ("target.", self.target)):
            given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            problems += tensor_problems(given, net.state_dict(), prefix)
        for key in ("log_alpha", "num_updates"):
            if key not in tensors:
                problems.append(f"missing {key}")
        if meta is not None and meta.get("encoder_frozen"):
            self.set_encoder_frozen(True, bool(meta.get("encoder_head_frozen", False)))
        if meta is not None and meta.get("frozen"):
            self.set_frozen(meta["frozen"])
        names = self._param_names()
        by_name: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        valid = {
            oname: {names[id(p)] for g in opt.param_groups for p in g["params"]}
            for oname, opt in self._optimizers().items()
        }
        for key, value in tensors.items():
            if key.startswith(("online.", "target.")):
                continue  # checked above
            if key.startswith("optimizer."):
                _, oname, rest = key.split(".", 2)
                pname, _, field = rest.rpartition(".")
                if oname not in valid or pname not in valid[oname]:
                    problems.append(f"unexpected {key}")
                else:
                    by_name.setdefault(oname, {}).setdefault(pname, {})[field] = value
            elif key not in ("log_alpha", "num_updates"):
                problems.append(f"unexpected {key}")
        if problems:
            raise ValueError("SAC state does not fit this agent: "
                             + summarise_problems(problems, 8))
        with torch.no_grad():
            for prefix, net in (("online", self.online), ("target", self.target)):
                net.load_state_dict(
                    {k: tensors[f"{prefix}.{k}"].to(self.device) for k in net.state_dict()}
                )
            self.log_alpha.copy_(tensors["log_alpha"].reshape(()).to(self.device))
        for oname, opt in self._optimizers().items():
            load_optimizer_state(opt, names, by_name.get(oname, {}), self.device)
        self.num_updates = int(tensors["num_updates"].reshape(-1)[0])
