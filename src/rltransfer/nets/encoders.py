"""Encoders ("torsos") that map image observations to a feature vector.

Every torso is a *body* (convs + ``Flatten``, or just ``Flatten``) followed by
``Linear(num_features -> feature_dim) + ReLU``; :func:`encoder_body` is the one place the
bodies are built (the R2D2 torso and the RND target / predictor share it). Kinds
(:data:`EncoderKind`):

* ``"nature_cnn"``: the DQN / R2D2 Atari body (Mnih et al. 2015, "Human-level control
  through deep reinforcement learning", Methods: 32 8x8/4, 64 4x4/2, 64 3x3/1; R2D2,
  Kapturowski et al. 2019, uses the same torso with a 512-unit linear layer). Needs
  H, W >= :data:`NATURE_MIN_SIZE`.
* ``"small_cnn"``: for small grids (MinAtar 10x10, MiniGrid 5x5..19x19), two 3x3 convs with
  padding 1 (16, 32 channels) that keep the spatial size (the MinAtar baseline, Young & Tian
  2019, uses one 3x3 conv of 16 channels; a second layer is added here).
* ``"mlp"``: no convs, the flattened observation goes straight into the linear layer. For
  tiny inputs (e.g. MiniGrid's 3x5x5 or 3x7x7 views) it is several times cheaper on CPU.
* ``"auto"``: ``nature_cnn`` when H, W >= 36, else ``small_cnn``. ``mlp`` is never chosen
  automatically; configs ask for it by name.

:func:`make_torso` builds the body + linear layer and scales ``uint8`` input inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast, get_args

import torch
from torch import nn

from rltransfer.errors import UserError

NATURE_MIN_SIZE = 36
"""Smallest height/width the Nature CNN accepts (8x8/4 -> 4x4/2 -> 3x3/1 leaves 1x1 at 36)."""

EncoderKind = Literal["auto", "mlp", "small_cnn", "nature_cnn"]
"""Encoder kinds accepted by :func:`make_torso`, :func:`encoder_body` and RND."""

ENCODER_KINDS: tuple[str, ...] = get_args(EncoderKind)
"""The names in :data:`EncoderKind`, for validation and CLI choices."""


class UnknownEncoderKindError(UserError):
    """An encoder kind that is not one of :data:`ENCODER_KINDS`."""


def check_encoder_kind(kind: str) -> EncoderKind:
    """Return ``kind`` typed as :data:`EncoderKind`.

    Raises:
        UnknownEncoderKindError: ``kind`` is not one of :data:`ENCODER_KINDS`.
    """
    if kind not in ENCODER_KINDS:
        raise UnknownEncoderKindError(
            f"unknown encoder kind {kind!r}; choose one of {', '.join(ENCODER_KINDS)}"
        )
    return cast(EncoderKind, kind)


def resolve_encoder_kind(kind: str, height: int, width: int) -> EncoderKind:
    """The concrete kind ``"auto"`` stands for at ``height`` x ``width`` (others unchanged).

    ``"auto"`` -> ``"nature_cnn"`` if ``min(height, width) >= NATURE_MIN_SIZE`` (36), else
    ``"small_cnn"``.

    Raises:
        UnknownEncoderKindError: unknown ``kind``.
    """
    kind = check_encoder_kind(kind)
    if kind != "auto":
        return kind
    return "nature_cnn" if min(height, width) >= NATURE_MIN_SIZE else "small_cnn"


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def encoder_body(
    kind: str,
    obs_shape: tuple[int, int, int],
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> tuple[nn.Sequential, int]:
    """The body of an encoder: everything before its final linear layer.

    * ``nature_cnn``: ``Conv(C, 32, 8, 4), act, Conv(32, 64, 4, 2), act, Conv(64, 64, 3, 1),
      act, Flatten`` -> ``64 * H' * W'`` features (``H' = 7`` at 84);
    * ``small_cnn``: ``Conv(C, 16, 3, 1, pad 1), act, Conv(16, 32, 3, 1, pad 1), act,
      Flatten`` -> ``32 * H * W`` features;
    * ``mlp``: ``Flatten`` -> ``C * H * W`` features;
    * ``auto``: see :func:`resolve_encoder_kind`.

    Args:
        kind: an :data:`EncoderKind` name.
        obs_shape: ``(C, H, W)`` of the (already scaled, floating) input.
        activation: zero-argument factory of the nonlinearity after each conv
            (``nn.ReLU`` for Q-networks; RND uses ``nn.LeakyReLU``, Burda et al. 2019 App. A).

    Returns:
        ``(body, num_features)``: ``body`` maps ``float32[B, C, H, W]`` to
        ``float32[B, num_features]``.

    Raises:
        UnknownEncoderKindError: unknown ``kind``.
        ValueError: ``obs_shape`` not ``(C, H, W)`` with positive entries, or ``nature_cnn``
            asked for H or W below :data:`NATURE_MIN_SIZE`.
    """
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape}")
    c, h, w = (int(s) for s in obs_shape)
    for name, v in (("channels", c), ("height", h), ("width", w)):
        _check_positive(name, v)
    concrete = resolve_encoder_kind(kind, h, w)
    if concrete == "mlp":
        return nn.Sequential(nn.Flatten()), c * h * w
    if concrete == "small_cnn":
        body = nn.Sequential(
            nn.Conv2d(c, 16, kernel_size=3, stride=1, padding=1),
            activation(),
            nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1),
            activation(),
            nn.Flatten(),
        )
        return body, 32 * h * w
    if min(h, w) < NATURE_MIN_SIZE:
        raise ValueError(
            f"nature_cnn needs height and width >= {NATURE_MIN_SIZE}, got {h}x{w}; "
            "use small_cnn or mlp for small grids"
        )
    for k, s in ((8, 4), (4, 2), (3, 1)):
        h, w = _conv_out(h, k, s), _conv_out(w, k, s)
    body = nn.Sequential(
        nn.Conv2d(c, 32, kernel_size=8, stride=4),
        activation(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        activation(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),
        activation(),
        nn.Flatten(),
    )
    return body, 64 * h * w


def build_encoder(
    kind: str, obs_shape: tuple[int, int, int], feature_dim: int
) -> nn.Sequential:
    """:func:`encoder_body` followed by ``Linear(num_features -> feature_dim) + ReLU``.

    One flat ``nn.Sequential`` (body layers, then the linear layer and its ReLU), so module
    indices (and checkpoint keys) are ``0..`` in forward order.

    Raises:
        ValueError: as :func:`encoder_body`, or ``feature_dim < 1``.
    """
    _check_positive("feature_dim", feature_dim)
    body, num_features = encoder_body(kind, obs_shape)
    return nn.Sequential(*body, nn.Linear(num_features, int(feature_dim)), nn.ReLU())


def nature_cnn(in_channels: int, feature_dim: int = 512) -> nn.Sequential:
    """The Nature-DQN torso for 84x84 input: conv body + ``Linear(3136 -> feature_dim) + ReLU``.

    :func:`make_torso` sizes the linear layer for other inputs >= 36x36.

    Args:
        in_channels: stacked channels ``C*S``.
        feature_dim: output width.

    Returns:
        ``nn.Sequential`` mapping ``float32[B, in_channels, 84, 84]`` -> ``[B, feature_dim]``.

    Raises:
        ValueError: non-positive sizes.
    """
    return build_encoder("nature_cnn", (in_channels, 84, 84), feature_dim)


def small_cnn(
    in_channels: int, hw: int | tuple[int, int], feature_dim: int = 512
) -> nn.Sequential:
    """Two 3x3 convs (16, 32 channels, stride 1, padding 1) + ``Linear(-> feature_dim) + ReLU``.

    Args:
        in_channels: stacked channels ``C*S``.
        hw: input height and width (an int for square grids), e.g. 10 for MinAtar.
        feature_dim: output width.

    Returns:
        ``nn.Sequential`` mapping ``float32[B, in_channels, H, W]`` -> ``[B, feature_dim]``.

    Raises:
        ValueError: non-positive sizes.
    """
    h, w = (hw, hw) if isinstance(hw, int) else (int(hw[0]), int(hw[1]))
    return build_encoder("small_cnn", (in_channels, h, w), feature_dim)


class Torso(nn.Module):
    """An encoder plus input scaling: ``uint8`` pixels are divided by ``obs_scale``.

    Args:
        encoder: maps ``float32[B, C, H, W]`` to ``[B, feature_dim]``.
        obs_shape: ``(C, H, W)`` the torso accepts (``C`` includes the frame stack).
        obs_scale: divisor that maps ``uint8`` observations to ``[0, 1]`` (255 for pixels,
            1 for MinAtar's 0/1 planes, the largest id for MiniGrid encodings).
        feature_dim: output width of ``encoder``.

    Forward:
        ``obs`` ``uint8`` or floating ``[B, C, H, W]``; ``uint8`` input is converted to
        ``float32`` and divided by ``obs_scale``; floating input is taken as already scaled.
        Returns ``float32[B, feature_dim]``.

    Raises:
        ValueError: (forward) the input's trailing shape differs from ``obs_shape``.
    """

    def __init__(
        self, encoder: nn.Module, obs_shape: tuple[int, int, int], obs_scale: float,
        feature_dim: int,
    ) -> None:
        super().__init__()
        if not obs_scale > 0:
            raise ValueError(f"obs_scale must be > 0, got {obs_scale}")
        self.encoder = encoder
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_scale = float(obs_scale)
        self.out_dim = int(feature_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"torso expects observations [B, {', '.join(map(str, self.obs_shape))}], got "
                f"{list(obs.shape)}; stack frames with replay.FrameStacker"
            )
        x = obs.float() / self.obs_scale if obs.dtype == torch.uint8 else obs.float()
        return self.encoder(x)


def make_torso(
    obs_shape: tuple[int, int, int], obs_scale: float, feature_dim: int, kind: str = "auto"
) -> Torso:
    """Build the torso of ``kind`` for an observation shape (see :data:`EncoderKind`).

    Args:
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` input to ``[0, 1]``.
        feature_dim: output width (R2D2: 512).
        kind: ``"auto"`` (Nature CNN if H, W >= 36, else small CNN), ``"mlp"``,
            ``"small_cnn"`` or ``"nature_cnn"``.

    Returns:
        A :class:`Torso` mapping ``uint8[B, C*S, H, W]`` to ``float32[B, feature_dim]``; its
        ``encoder`` is :func:`build_encoder`'s flat ``nn.Sequential``.

    Raises:
        UnknownEncoderKindError: unknown ``kind``.
        ValueError: ``obs_shape`` is not 3-dimensional or has non-positive entries, or
            ``nature_cnn`` on input smaller than 36x36.
    """
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape}")
    shape = (int(obs_shape[0]), int(obs_shape[1]), int(obs_shape[2]))
    encoder = build_encoder(kind, shape, feature_dim)
    return Torso(encoder, shape, obs_scale, feature_dim)
