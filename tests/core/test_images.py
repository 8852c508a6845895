"""core/images.py: replicate-edge windows equal pad-and-slice; centre crop on torch and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rltransfer.core.images import center_crop, crop_windows


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_crop_windows_equal_replicate_pad_then_slice(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 3, 9, 11, generator=gen) * 255).to(dtype)
    pad = 4
    offsets = torch.randint(0, 2 * pad + 1, (6, 2), generator=gen)
    out = crop_windows(images, offsets[:, 0] - pad, offsets[:, 1] - pad, 9, 11)
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate").to(dtype)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, dy:dy + 9, dx:dx + 11])
    assert out.dtype == dtype


def test_crop_windows_inside_the_image_is_a_plain_slice() -> None:
    images = torch.arange(2 * 1 * 6 * 6).reshape(2, 1, 6, 6)
    out = crop_windows(images, torch.tensor([0, 2]), torch.tensor([1, 0]), 4, 3)
    assert torch.equal(out[0], images[0, :, 0:4, 1:4])
    assert torch.equal(out[1], images[1, :, 2:6, 0:3])


def test_center_crop_torch_and_numpy_same_window() -> None:
    frames = np.arange(3 * 100 * 100, dtype=np.int64).reshape(3, 100, 100)
    np.testing.assert_array_equal(center_crop(frames, 84), frames[:, 8:92, 8:92])
    assert torch.equal(center_crop(torch.from_numpy(frames), 84),
                       torch.from_numpy(frames[:, 8:92, 8:92]))
    with pytest.raises(ValueError, match="crop_size 120 exceeds"):
        center_crop(frames, 120)
