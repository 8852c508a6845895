"""Convolutional encoders ("torsos") that map image observations to a feature vector.

* :func:`nature_cnn`: the DQN / R2D2 Atari torso (Mnih et al. 2015, "Human-level control
  through deep reinforcement learning", Methods: 32 8x8/4, 64 4x4/2, 64 3x3/1, then a linear
  layer; R2D2, Kapturowski et al. 2019, uses the same torso with a 512-unit linear layer).
* :func:`small_cnn`: for small grids (MinAtar 10x10, MiniGrid 5x5..19x19), two 3x3 convs with
  padding 1 (16, 32 channels) that keep the spatial size, then a linear layer (the MinAtar
  baseline, Young & Tian 2019, uses one 3x3 conv of 16 channels; a second layer is added here).
* :func:`make_torso`: picks one by the observation size and scales ``uint8`` pixels inside.
"""

from __future__ import annotations

import torch
from torch import nn

NATURE_MIN_SIZE = 36
"""Smallest height/width the Nature CNN accepts (8x8/4 -> 4x4/2 -> 3x3/1 leaves 1x1 at 36)."""


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def nature_cnn(in_channels: int, feature_dim: int = 512) -> nn.Sequential:
    """The Nature-DQN conv stack followed by ``Linear(-> feature_dim) + ReLU``.

    Input ``float32[B, in_channels, 84, 84]``; the linear layer is sized for 84x84
    (64 x 7 x 7 = 3136 inputs). :func:`make_torso` sizes it for other inputs >= 36x36.

    Args:
        in_channels: stacked channels ``C*S``.
        feature_dim: output width.

    Returns:
        ``nn.Sequential`` mapping ``[B, in_channels, 84, 84]`` -> ``[B, feature_dim]``.

    Raises:
        ValueError: non-positive sizes.
    """
    return _nature_cnn(in_channels, (84, 84), feature_dim)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _nature_cnn(in_channels: int, hw: tuple[int, int], feature_dim: int) -> nn.Sequential:
    _check_positive("in_channels", in_channels)
    _check_positive("feature_dim", feature_dim)
    h, w = hw
    if min(h, w) < NATURE_MIN_SIZE:
        raise ValueError(
            f"nature_cnn needs height and width >= {NATURE_MIN_SIZE}, got {h}x{w}; "
            "use small_cnn for small grids"
        )
    for k, s in ((8, 4), (4, 2), (3, 1)):
        h, w = _conv_out(h, k, s), _conv_out(w, k, s)
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * h * w, feature_dim),
        nn.ReLU(),
    )


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
    for name, v in (("in_channels", in_channels), ("height", h), ("width", w),
                    ("feature_dim", feature_dim)):
        _check_positive(name, v)
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * h * w, feature_dim),
        nn.ReLU(),
    )


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


def make_torso(obs_shape: tuple[int, int, int], obs_scale: float, feature_dim: int) -> Torso:
    """Build the torso for an observation shape: Nature CNN if H, W >= 36, else small CNN.

    Args:
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` input to ``[0, 1]``.
        feature_dim: output width (R2D2: 512).

    Returns:
        A :class:`Torso` mapping ``uint8[B, C*S, H, W]`` to ``float32[B, feature_dim]``.

    Raises:
        ValueError: ``obs_shape`` is not 3-dimensional or has non-positive entries.
    """
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape}")
    c, h, w = (int(s) for s in obs_shape)
    for name, v in (("channels", c), ("height", h), ("width", w)):
        _check_positive(name, v)
    if min(h, w) >= NATURE_MIN_SIZE:
        encoder = _nature_cnn(c, (h, w), feature_dim)
    else:
        encoder = small_cnn(c, (h, w), feature_dim)
    return Torso(encoder, (c, h, w), obs_scale, feature_dim)
