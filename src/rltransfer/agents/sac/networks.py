"""Pixel SAC's networks and its named components ``encoder``, ``actor``, ``critic``.

Wired as in SAC-AE (Yarats et al. 2019) and the code of PAD (Hansen et al. 2021) that
Kadavath et al. 2021 build on:

* ``encoder`` (a :class:`~rltransfer.nets.pixel_encoders.PixelEncoder`: ``convs`` then
  ``head`` = Linear -> LayerNorm -> tanh) belongs to the critic; only the critic loss trains
  it. The actor uses the *same* conv layers (``encoder.convs``) on **detached** conv
  features, followed by its own head and MLP trunk (:class:`Actor`), so actor gradients
  never reach the shared convs (SAC-AE's ``detach_encoder``, tied conv weights).
* ``critic``: two Q MLPs ``[features, action] -> hidden -> hidden -> 1`` on the encoder's
  features (:class:`DoubleQCritic`; clipped double Q, Fujimoto et al. 2018).
* ``actor``: tanh-squashed diagonal Gaussian; ``log_std`` squashed into ``[log_std_min,
  log_std_max]`` (SAC-AE: -10, 2); ``log pi(a|s) = log N(u; mu, std) - sum log(1 -
  tanh(u)^2)`` (Haarnoja et al. 2018, Appendix C).

Flat state observations (``obs_shape = (D,)``) use :class:`FlatStateEncoder` (no convs,
identity features), making this plain state-based SAC.

Target copies (``encoder_target``, ``critic_target``) follow their online networks by
:func:`soft_update_` (Polyak averaging, Haarnoja et al. 2018, Alg. 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rltransfer.agents.sac.config import SACConfig
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig, init_weights

COMPONENTS: tuple[str, ...] = ("encoder", "actor", "critic")
"""The SAC agent's named components (what weight transfer loads or freezes)."""

__all__ = [
    "COMPONENTS",
    "Actor",
    "DoubleQCritic",
    "FlatStateEncoder",
    "SACNetworks",
    "build_networks",
    "no_param_grads",
    "soft_update_",
]


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
    """``in_dim -> hidden -> hidden -> out_dim`` with ReLUs (SAC-AE's actor and Q MLPs)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy on (detached) conv features.

    ``head`` (Linear -> LayerNorm -> tanh, its own copy, as the actor's encoder head in
    SAC-AE; identity for states) maps flattened conv features ``[B, *conv_shape]`` to
    ``[B, feature_dim]``; ``trunk`` maps those to ``(mu, log_std)`` of ``A`` dims.
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
        """Reparameterised sample (Haarnoja et al. 2018's reparameterisation trick; the noise
        is drawn from ``generator`` on the CPU).

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
    """Two Q MLPs ``Q_j([features, action]) -> scalar`` (clipped double Q, Fujimoto et al.
    2018)."""

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


@dataclass
class SACNetworks:
    """The online networks of one SAC agent (built by :func:`build_networks`).

    Attributes:
        encoder: the critic's encoder (its ``convs`` are shared with the actor).
        actor: :class:`Actor` (head + trunk; no convs of its own).
        critic: :class:`DoubleQCritic` on the encoder's features.
        encoder_input_shape: what the encoder sees: ``(C*S, crop, crop)`` with ``"crop"``
            augmentation, else the observation shape.
    """

    encoder: PixelEncoder | FlatStateEncoder
    actor: Actor
    critic: DoubleQCritic
    encoder_input_shape: tuple[int, ...]

    def components(self) -> dict[str, nn.Module]:
        """``{"encoder", "actor", "critic"}`` in :data:`COMPONENTS` order."""
        return {"encoder": self.encoder, "actor": self.actor, "critic": self.critic}


def build_networks(config: SACConfig, obs_shape: tuple[int, ...], action_dim: int,
                   encoder_config: PixelEncoderConfig) -> SACNetworks:
    """The encoder, actor and critic for ``obs_shape`` (built in that order, initialised
    from torch's global RNG).

    Args:
        config: widths, log-std bounds and the augmentation (which decides the encoder's
            input size: ``crop_size`` with ``"crop"``).
        obs_shape: ``(C*S, H, W)`` pixels (the *rendered* size) or ``(D,)`` states.
        action_dim: ``A``.
        encoder_config: the pixel encoder (ignored for states).

    Raises:
        ValueError: another ``obs_shape`` rank, a crop larger than the images, or
            augmentation on flat states.
    """
    pixels = len(obs_shape) == 3
    if not pixels and len(obs_shape) != 1:
        raise ValueError(f"obs_shape must be (C, H, W) pixels or (D,) states, got {obs_shape}")
    encoder: PixelEncoder | FlatStateEncoder
    if pixels:
        c, h, w = obs_shape
        if config.augmentation == "crop":
            if config.crop_size > min(h, w):
                raise ValueError(
                    f"augmentation='crop' with crop_size={config.crop_size} needs larger "
                    f"images than {h}x{w}; render at 100 (render_size=100)"
                )
            h = w = config.crop_size
        input_shape: tuple[int, ...] = (c, h, w)
        encoder = PixelEncoder(encoder_config, (c, h, w))
        conv_dim = int(np.prod(encoder.conv_output_shape))
    else:
        if config.augmentation != "none":
            raise ValueError(
                "flat state observations cannot be augmented; set augmentation='none'"
            )
        input_shape = tuple(obs_shape)
        encoder = FlatStateEncoder(obs_shape[0])
        conv_dim = obs_shape[0]
    feature_dim = encoder.feature_dim
    actor = Actor(conv_dim, feature_dim, action_dim, config.hidden_dim,
                  config.log_std_min, config.log_std_max, pixels)
    critic = DoubleQCritic(feature_dim, action_dim, config.hidden_dim)
    return SACNetworks(encoder, actor, critic, input_shape)


def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging of parameters: ``theta' <- tau * theta + (1 - tau) * theta'``
    (Haarnoja et al. 2018, Alg. 1).

    Buffers (e.g. BatchNorm running statistics) are left alone.

    Raises:
        ValueError: ``target`` and ``source`` have different numbers of parameters.
    """
    with torch.no_grad():
        t_params: list[torch.Tensor] = list(target.parameters())
        s_params: list[torch.Tensor] = list(source.parameters())
        if len(t_params) != len(s_params):
            raise ValueError("soft_update_: target and source have different parameter lists")
        if t_params:
            torch._foreach_lerp_(t_params, s_params, tau)


@contextmanager
def no_param_grads(*modules: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into the modules' parameters (restoring the flags): the
    actor loss evaluates the critic without training it."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
