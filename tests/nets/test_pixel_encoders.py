from __future__ import annotations

import pytest
import torch
from torch import nn

from rltransfer.nets.pixel_encoders import (
    PixelEncoder,
    PixelEncoderConfig,
    PixelEncoderConfigError,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("kind", "conv_shape", "num_convs", "num_bn"),
    [("drq4", (32, 35, 35), 4, 0), ("pad11", (32, 21, 21), 11, 11)],
)
def test_shapes_and_layers(kind: str, conv_shape: tuple[int, int, int], num_convs: int,
                           num_bn: int) -> None:
    enc = PixelEncoder(PixelEncoderConfig(kind=kind, feature_dim=100), (9, 84, 84))
    convs = [m for m in enc.convs if isinstance(m, nn.Conv2d)]
    assert len(convs) == num_convs
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.convs) == num_bn
    assert convs[0].stride == (2, 2) and all(c.stride == (1, 1) for c in convs[1:])
    assert all(c.kernel_size == (3, 3) for c in convs)
    # 84 -> (84-3)//2+1 = 41, then -2 per stride-1 layer.
    assert enc.conv_output_shape == conv_shape
    assert enc.out_channels == 32
    obs = torch.randint(0, 256, (2, 9, 84, 84), dtype=torch.uint8)
    assert enc.conv_features(obs).shape == (2, *conv_shape)
    out = enc(obs)
    assert out.shape == (2, 100) and out.dtype == torch.float32
    assert out.abs().max() < 1.0  # tanh head


def test_scaling_uint8_equals_float() -> None:
    enc = PixelEncoder(PixelEncoderConfig(), (3, 20, 20))
    obs = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    torch.testing.assert_close(enc(obs), enc(obs.float()))
    # obs/255 - 0.5 happens inside: a mid-grey image 127.5 is the zero input.
    mid = torch.full((1, 3, 20, 20), 127.5)
    first = enc.convs[0]
    assert isinstance(first, nn.Conv2d)
    expected = first.bias.detach().clamp_min(0)  # ReLU(W*0 + b)
    torch.testing.assert_close(
        enc.convs[:2](torch.zeros(1, 3, 20, 20))[0, :, 0, 0], expected
    )
    torch.testing.assert_close(
        enc.conv_features(mid), enc.convs(torch.zeros(1, 3, 20, 20))
    )


@pytest.mark.parametrize("kind", ["drq4", "pad11"])
def test_grouped_convs_keep_images_separate(kind: str) -> None:
    cfg = PixelEncoderConfig(kind=kind, num_filters=12, groups=3)
    enc = PixelEncoder(cfg, (9, 48, 48))
    enc.train()  # BatchNorm on batch statistics: per channel, so it never mixes blocks
    assert all(m.groups == 3 for m in enc.convs if isinstance(m, nn.Conv2d))
    obs = torch.randint(0, 256, (2, 9, 48, 48), dtype=torch.uint8)
    changed = obs.clone()
    changed[:, 3:6] = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)  # image 2
    a, b = enc.conv_features(obs), enc.conv_features(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])  # block 1 sees image 1 only
    torch.testing.assert_close(a[:, 8:], b[:, 8:])  # block 3 sees image 3 only
    assert not torch.allclose(a[:, 4:8], b[:, 4:8])  # block 2 does change


def test_ungrouped_convs_mix_images() -> None:
    enc = PixelEncoder(PixelEncoderConfig(num_filters=12), (9, 30, 30))
    obs = torch.randint(0, 256, (2, 9, 30, 30), dtype=torch.uint8)
    changed = obs.clone()
    changed[:, 3:6] = 255 - changed[:, 3:6]
    assert not torch.allclose(enc.conv_features(obs)[:, :4], enc.conv_features(changed)[:, :4])


def test_bad_configs() -> None:
    with pytest.raises(PixelEncoderConfigError, match="groups"):
        PixelEncoder(PixelEncoderConfig(groups=3), (9, 84, 84))  # 32 % 3 != 0
    with pytest.raises(PixelEncoderConfigError, match="channels"):
        PixelEncoder(PixelEncoderConfig(groups=2), (9, 84, 84))
    with pytest.raises(PixelEncoderConfigError, match="unknown"):
        PixelEncoder(PixelEncoderConfig(kind="resnet"), (9, 84, 84))
    with pytest.raises(PixelEncoderConfigError, match="too small"):
        PixelEncoder(PixelEncoderConfig(kind="pad11"), (3, 20, 20))
    enc = PixelEncoder(PixelEncoderConfig(), (9, 84, 84))
    with pytest.raises(ValueError, match="expects observations"):
        enc(torch.zeros(1, 3, 84, 84))
