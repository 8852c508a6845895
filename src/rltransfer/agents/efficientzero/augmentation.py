"""EfficientZero's data augmentation: random shift and intensity (the public EfficientZero
default ``["shift", "intensity"]``; random shift after Kostrikov et al. 2021 / Schwarzer et al.
2021).

Used by :class:`~rltransfer.agents.efficientzero.learner.EfficientZeroLearner` only while
``consistency_loss_coef > 0`` (``augmentation="shift_intensity"``), as in EZ: observations are
scaled to floats, then each sample is shifted (replicate-pad by ``augmentation_shift_pad`` = 4
pixels, crop back at a uniformly random integer offset in ``[0, 2 * pad]`` per axis) and
multiplied by ``1 + 0.05 * clip(N(0, 1), -2, 2)`` (one scalar per sample). As in the public
code, the stacked observation ``o_t`` gets one draw and the ``K`` consistency targets of a
sample get another draw shared by all ``K`` of them (EZ augments the frame sequence
``o_{t+1..t+K}`` as one image), so a frame shared by two target stacks is augmented
identically, while ``o_t`` and the targets are augmented independently. The draws come from
the learner's own generator (saved in checkpoints, so resuming is exact).
"""

from __future__ import annotations

import torch

from rltransfer.core.images import crop_windows

__all__ = ["augment_observations", "scale_intensity", "shift_and_crop"]


def shift_and_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Random-shift augmentation with given offsets (EfficientZero's ``shift``: replicate pad,
    then crop back to the input size; Kostrikov et al. 2021 / Schwarzer et al. 2021). The
    windows are :func:`rltransfer.core.images.crop_windows` (clamped indices, no padded copy):
    pure indexing, so bit-identical to padding and cropping.

    Args:
        x: float ``[N, C, H, W]``.
        offsets: integer ``[N, 2]``, (row, column) of each crop's top-left corner in the
            padded image, each in ``[0, 2 * pad]``; ``(pad, pad)`` returns ``x`` unchanged.
        pad: pixels of replicate padding on each side (>= 0).

    Returns:
        float ``[N, C, H, W]``: ``out[n, c, i, j] = x[n, c, clip(i + dy - pad, 0, H - 1),
        clip(j + dx - pad, 0, W - 1)]`` with ``(dy, dx) = offsets[n]``.

    Raises:
        ValueError: wrong shapes, ``pad < 0`` or offsets outside ``[0, 2 * pad]``.
    """
    if x.ndim != 4 or offsets.shape != (x.shape[0], 2) or offsets.dtype.is_floating_point:
        raise ValueError(f"need x [N, C, H, W] and integer offsets [N, 2], got "
                         f"{list(x.shape)} and {offsets.dtype} {list(offsets.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if offsets.numel() and (int(offsets.min()) < 0 or int(offsets.max()) > 2 * pad):
        raise ValueError(f"offsets must lie in [0, {2 * pad}]")
    if pad == 0:
        return x
    _, _, h, w = x.shape
    offsets = offsets.to(x.device, torch.int64)
    return crop_windows(x, offsets[:, 0] - pad, offsets[:, 1] - pad, h, w)


def scale_intensity(x: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """Intensity augmentation (EfficientZero's ``Intensity``): ``x * (1 + scale *
    clip(noise, -2, 2))`` with one noise value per sample.

    Args:
        x: float ``[N, ...]``. noise: ``[N]`` (standard normal draws). scale: 0.05 in EZ.

    Returns:
        float ``[N, ...]``.
    """
    factor = 1.0 + scale * noise.to(x.device, x.dtype).clamp(-2.0, 2.0)
    return x * factor.view(-1, *([1] * (x.ndim - 1)))


def augment_observations(x: torch.Tensor, pad: int, intensity_scale: float,
                         generator: torch.Generator) -> torch.Tensor:
    """EfficientZero's ``["shift", "intensity"]`` augmentation of a batch of stacked
    observations: :func:`shift_and_crop` at offsets uniform in ``[0, 2 * pad]``, then
    :func:`scale_intensity` with ``N(0, 1)`` noise; one draw per sample, shared by all of its
    channels (every frame of a stack moves and brightens alike).

    Args:
        x: float ``[N, C, H, W]`` (already scaled; pixels in [0, 1]).
        pad / intensity_scale: 4 / 0.05 in the public EfficientZero code.
        generator: CPU generator of the draws (``2N`` integers, then ``N`` normals).

    Returns:
        float ``[N, C, H, W]`` on ``x``'s device.
    """
    n = int(x.shape[0])
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    noise = torch.randn(n, generator=generator)
    return scale_intensity(shift_and_crop(x, offsets, pad), noise, intensity_scale)
