"""Image augmentation of pixel SAC, applied to ``obs`` and ``next_obs`` independently at
update time only (:data:`~rltransfer.agents.sac.config.AUGMENTATIONS`):

* ``"shift"``: DrQ's random shift (Kostrikov et al. 2021): replicate-pad 4 pixels, random
  crop back to ``H x W``;
* ``"crop"``: PAD / Kadavath et al. 2021: the env renders ``H x W`` (100 x 100), a random
  ``crop_size`` crop (84) for training, the centre crop for acting;
* ``"none"``.

Every function takes ``[B, C, H, W]`` images of any dtype (uint8 stays uint8) and draws its
offsets from the given torch generator on the CPU (the same draws on every device); the
windows are :func:`rltransfer.core.images.crop_windows`, the centre crop
:func:`rltransfer.core.images.center_crop` (re-exported here).
"""

from __future__ import annotations

import torch

from rltransfer.core.images import center_crop, crop_windows

__all__ = ["augment", "center_crop", "eval_view", "random_crop", "random_shift"]


def _offsets(b: int, high: int, generator: torch.Generator | None, device: torch.device
             ) -> torch.Tensor:
    """``int64[B]`` uniform in ``[0, high)``, drawn on the CPU and moved to ``device``."""
    return torch.randint(0, high, (b,), generator=generator, device="cpu").to(device)


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
    top = _offsets(b, 2 * pad + 1, generator, images.device)
    left = _offsets(b, 2 * pad + 1, generator, images.device)
    return crop_windows(images, top - pad, left - pad, h, w)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Random ``size x size`` crop per sample (PAD / CURL / Kadavath et al.: 100 -> 84).

    Args:
        images: ``[B, C, H, W]`` (any dtype).
        size: side of the crop in pixels.
        generator: torch RNG for the offsets.

    Returns:
        ``[B, C, size, size]``, same dtype.

    Raises:
        ValueError: ``size`` larger than the images.
    """
    b, _, h, w = images.shape
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds the {h}x{w} images; render larger images")
    top = _offsets(b, h - size + 1, generator, images.device)
    left = _offsets(b, w - size + 1, generator, images.device)
    return crop_windows(images, top, left, size, size)


def augment(images: torch.Tensor, augmentation: str, shift_pad: int, crop_size: int,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The training view of ``images`` ``[B, C, H, W]``: :func:`random_shift` by
    ``shift_pad`` (``"shift"``), :func:`random_crop` to ``crop_size`` (``"crop"``), or
    ``images`` itself (``"none"`` or any other value)."""
    if augmentation == "shift":
        return random_shift(images, shift_pad, generator)
    if augmentation == "crop":
        return random_crop(images, crop_size, generator)
    return images


def eval_view(images: torch.Tensor, augmentation: str, crop_size: int) -> torch.Tensor:
    """The acting view of ``images``: the centre ``crop_size`` crop with ``"crop"``
    augmentation (the encoder's input size), else ``images`` unchanged."""
    if augmentation == "crop":
        return center_crop(images, crop_size)
    return images
