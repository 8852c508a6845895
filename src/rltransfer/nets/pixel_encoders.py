"""Pixel encoders for SAC on DeepMind Control (and the encoders pretraining transfers).

A :class:`PixelEncoder` is ``convs`` (an ``nn.Sequential`` of conv (+BatchNorm) + ReLU layers,
the part encoder pretraining learns and transfers) followed by ``head``
(``Linear -> LayerNorm -> tanh``, as in SAC-AE / DrQ / PAD). Kinds:

* ``"drq4"``: 4 conv layers of ``num_filters`` (32) 3x3 kernels, the first with stride 2, the
  rest stride 1, no padding, ReLU after each (DrQ, Kostrikov et al. 2021; DrQ-v2, Yarats et al.
  2022). At 84x84 the conv output is 32 x 35 x 35.
* ``"pad11"``: 11 conv 3x3 layers (first stride 2, the rest stride 1, no padding), each followed
  by BatchNorm and ReLU: the encoder of Kadavath et al. 2021 ("Pretraining Representations for
  Data-Efficient RL ... Sharpening the Axe"), whose code builds on PAD (Hansen et al. 2021) and
  adds BatchNorm. At 84x84 the conv output is 32 x 21 x 21. The paper's head outputs 100.

``groups = F`` makes every conv a grouped conv (``nn.Conv2d(groups=F)``): channel block ``g`` of
every layer only sees image ``g`` of the ``F`` stacked input images (Kadavath et al. 2021's
grouped-conv image-classification pretraining). BatchNorm is per channel, so it never mixes
blocks either. The head mixes all blocks.

Pixel scaling (``obs / 255 - 0.5``, DrQ-v2) happens in :meth:`PixelEncoder.conv_features`,
its one home; inputs are raw pixels in ``[0, 255]`` (uint8 or float).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rltransfer.errors import UserError

PIXEL_ENCODER_KINDS: tuple[str, ...] = ("drq4", "pad11")
"""Encoder kinds accepted by :class:`PixelEncoderConfig`."""

_NUM_LAYERS = {"drq4": 4, "pad11": 11}
_BATCH_NORM = {"drq4": False, "pad11": True}


class PixelEncoderConfigError(UserError):
    """A :class:`PixelEncoderConfig` that cannot be built for the given observation shape."""


@dataclass
class PixelEncoderConfig:
    """Configuration of a :class:`PixelEncoder`.

    Attributes:
        kind: ``"drq4"`` (4 conv layers, DrQ-v2) or ``"pad11"`` (11 conv layers with BatchNorm,
            Kadavath et al. 2021 / PAD).
        num_filters: channels of every conv layer (32 in both papers).
        feature_dim: output size of the head (``Linear -> LayerNorm -> tanh``); DrQ uses 50,
            Kadavath et al. 100.
        groups: number of conv groups ``F`` (images kept separate); the observation's channels
            and ``num_filters`` must both divide by it.
    """

    kind: str = "drq4"
    num_filters: int = 32
    feature_dim: int = 50
    groups: int = 1


def _check_config(config: PixelEncoderConfig, obs_shape: tuple[int, ...]) -> None:
    if config.kind not in PIXEL_ENCODER_KINDS:
        raise PixelEncoderConfigError(
            f"unknown pixel encoder kind {config.kind!r}; choose one of "
            f"{', '.join(PIXEL_ENCODER_KINDS)}"
        )
    for name in ("num_filters", "feature_dim", "groups"):
        if int(getattr(config, name)) < 1:
            raise PixelEncoderConfigError(
                f"PixelEncoderConfig.{name} must be a positive integer, got "
                f"{getattr(config, name)}"
            )
    if len(obs_shape) != 3:
        raise PixelEncoderConfigError(
            f"obs_shape must be (C, H, W), got {tuple(obs_shape)}"
        )
    channels = int(obs_shape[0])
    if channels % config.groups:
        raise PixelEncoderConfigError(
            f"observation channels {channels} do not divide by groups={config.groups}; use a "
            "groups value that divides the number of stacked images' channels"
        )
    if config.num_filters % config.groups:
        raise PixelEncoderConfigError(
            f"num_filters={config.num_filters} does not divide by groups={config.groups}; pick "
            "num_filters as a multiple of groups"
        )


def _delta_orthogonal_(weight: torch.Tensor, gain: float) -> None:
    """Delta-orthogonal init (Xiao et al. 2018) as used by SAC-AE / DrQ: an orthogonal matrix
    at the kernel centre, zeros elsewhere. ``weight`` is ``[out, in/groups, k, k]``."""
    with torch.no_grad():
        weight.zero_()
        mid = weight.shape[2] // 2
        nn.init.orthogonal_(weight[:, :, mid, mid], gain)


def init_weights(module: nn.Module) -> None:
    """SAC-AE / DrQ initialisation: orthogonal ``Linear`` weights, delta-orthogonal conv
    weights (ReLU gain), zero biases. Apply with ``net.apply(init_weights)``."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        _delta_orthogonal_(module.weight, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class PixelEncoder(nn.Module):
    """Conv encoder ``[B, C, H, W]`` pixels -> ``[B, feature_dim]`` features in ``(-1, 1)``.

    Attributes:
        convs: ``nn.Sequential`` of every conv (+BatchNorm) + ReLU layer (what pretraining
            transfers; tensor names ``convs.<i>.weight`` ...).
        head: ``Linear(out_channels * H' * W' -> feature_dim) -> LayerNorm -> tanh``.
        out_channels: channels ``C'`` of the conv output (``num_filters``).
        conv_output_shape: ``(C', H', W')`` of :meth:`conv_features` for ``obs_shape``.
        obs_shape: the ``(C, H, W)`` the encoder was built for.
        config: the :class:`PixelEncoderConfig`.

    Raises:
        PixelEncoderConfigError: unknown kind, non-positive sizes, channels or ``num_filters``
            not divisible by ``groups``, or an image too small for the conv stack.
    """

    def __init__(self, config: PixelEncoderConfig, obs_shape: tuple[int, int, int]) -> None:
        super().__init__()
        obs_shape = tuple(int(s) for s in obs_shape)  # type: ignore[assignment]
        _check_config(config, obs_shape)
        self.config = config
        self.obs_shape: tuple[int, int, int] = obs_shape
        channels, height, width = obs_shape
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(_NUM_LAYERS[config.kind]):
            stride = 2 if i == 0 else 1
            layers.append(
                nn.Conv2d(in_ch, config.num_filters, 3, stride=stride, groups=config.groups)
            )
            if _BATCH_NORM[config.kind]:
                layers.append(nn.BatchNorm2d(config.num_filters))
            layers.append(nn.ReLU(inplace=True))
            in_ch = config.num_filters
            height = (height - 3) // stride + 1
            width = (width - 3) // stride + 1
            if height < 1 or width < 1:
                raise PixelEncoderConfigError(
                    f"observation {obs_shape[1]}x{obs_shape[2]} is too small for the "
                    f"{config.kind!r} encoder ({_NUM_LAYERS[config.kind]} 3x3 convs); render "
                    "larger images or use kind='drq4'"
                )
        self.convs = nn.Sequential(*layers)
        self.out_channels: int = config.num_filters
        self.conv_output_shape: tuple[int, int, int] = (config.num_filters, height, width)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.num_filters * height * width, config.feature_dim),
            nn.LayerNorm(config.feature_dim),
            nn.Tanh(),
        )
        self.feature_dim: int = config.feature_dim
        self.apply(init_weights)

    def _check_obs(self, obs: torch.Tensor) -> None:
        if obs.dim() != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"PixelEncoder expects observations [B, {', '.join(map(str, self.obs_shape))}], "
                f"got {tuple(obs.shape)}; check frame_stack / render_size against the encoder"
            )

    def conv_features(self, obs: torch.Tensor) -> torch.Tensor:
        """Conv feature maps of raw pixels.

        Args:
            obs: ``[B, C, H, W]`` uint8 or float pixels in ``[0, 255]``.

        Returns:
            float32 ``[B, C', H', W']`` (``conv_output_shape``), computed on ``obs / 255 - 0.5``.

        Raises:
            ValueError: ``obs`` does not have shape ``[B, *obs_shape]``.
        """
        self._check_obs(obs)
        # channels-last input lets oneDNN pick its fast conv kernels (about 1.5x on CPU);
        # the values and the logical NCHW layout of the result are unchanged.
        x = obs.to(torch.float32, memory_format=torch.channels_last)
        return self.convs(x.div_(255.0).sub_(0.5))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Features ``[B, feature_dim]`` (float32, in ``(-1, 1)``) of ``[B, C, H, W]`` pixels."""
        return self.head(self.conv_features(obs))


__all__ = [
    "PIXEL_ENCODER_KINDS",
    "PixelEncoder",
    "PixelEncoderConfig",
    "PixelEncoderConfigError",
    "init_weights",
]
