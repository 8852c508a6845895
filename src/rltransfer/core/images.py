"""Pixel windows shared by the agents and the encoder pretraining: per-sample crops with
replicate edges (the random shift of DrQ, Kostrikov et al. 2021, and of EfficientZero, Ye
et al. 2021; the random crop of PAD / Kadavath et al. 2021) and the centre crop.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["center_crop", "crop_windows"]

_Frames = TypeVar("_Frames", torch.Tensor, np.ndarray)


def crop_windows(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int,
                 width: int) -> torch.Tensor:
    """Per-sample windows ``images[i, :, top_i:top_i+height, left_i:left_i+width]``, where
    rows / columns outside the image repeat the edge (replicate padding = clamped indices).

    A random shift by ``pad`` pixels is ``crop_windows(x, dy - pad, dx - pad, H, W)`` with
    ``dy, dx`` uniform in ``[0, 2 * pad]``: the same pixels as replicate-padding by ``pad``
    and cropping at ``(dy, dx)``, without the padded copy. One ``gather`` over the flattened
    pixels (4x faster on CPU than advanced indexing); pure indexing, so the values are
    bit-identical to any padded-copy implementation.

    Args:
        images: ``[B, C, H, W]`` (any dtype; uint8 stays uint8).
        top / left: integer ``[B]``, row / column of each window's top-left corner in image
            coordinates (may be negative or run past the edge).
        height / width: window size in pixels.

    Returns:
        ``[B, C, height, width]``, same dtype and device as ``images``.
    """
    b, c, h, w = images.shape
    top = top.to(images.device, torch.int64)
    left = left.to(images.device, torch.int64)
    rows = (top[:, None] + torch.arange(height, device=images.device)[None, :]).clamp_(0, h - 1)
    cols = (left[:, None] + torch.arange(width, device=images.device)[None, :]).clamp_(0, w - 1)
    flat = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, height * width)
    out = images.reshape(b, c, h * w).gather(2, flat.expand(b, c, height * width))
    return out.reshape(b, c, height, width)


def center_crop(images: _Frames, size: int) -> _Frames:
    """Centre ``size x size`` window of ``[..., H, W]`` images, torch or numpy (top row
    ``(H - size) // 2``, left column ``(W - size) // 2``: the public PAD code's 8:-8 crop of
    100 -> 84). Returns a view ``[..., size, size]`` of the same type.

    Raises:
        ValueError: ``size`` exceeds ``H`` or ``W``.
    """
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop_size {size} exceeds the {h}x{w} images; render larger images "
                         f"or lower crop_size")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]
