from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from rltransfer.runtime.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.transfer.encoder import (
    EncoderMismatchError,
    load_pretrained_encoder,
    save_encoder,
)

torch.set_num_threads(1)

PAD = PixelEncoderConfig(kind="pad11", num_filters=8, feature_dim=10)
SHAPE = (9, 48, 48)


def _trained_encoder(seed: int = 0) -> PixelEncoder:
    """A pad11 encoder whose weights and BatchNorm statistics are not at their init."""
    torch.manual_seed(seed)
    enc = PixelEncoder(PAD, SHAPE)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.1 * torch.randn_like(p))
    enc.train()
    enc(torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8))  # updates running stats
    return enc


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_save_format(tmp_path: Path) -> None:
    enc = _trained_encoder()
    path = save_encoder(enc, tmp_path / "enc", SHAPE, "inverse_dynamics", {"note": 1})
    tensors, meta = load_checkpoint(path)
    arch = meta["architecture"]
    assert arch["kind"] == "pixel_encoder" and arch["source"] == "inverse_dynamics"
    assert arch["obs_shape"] == [9, 48, 48] and arch["encoder_config"]["kind"] == "pad11"
    assert meta["note"] == 1
    conv_names = {f"encoder/convs/{k}" for k in enc.convs.state_dict()}
    head_names = {f"encoder/head/{k}" for k in enc.head.state_dict()}
    assert set(tensors) == conv_names | head_names
    assert "encoder/convs/1.running_mean" in tensors  # BatchNorm buffers travel too
    with pytest.raises(ValueError, match="obs_shape"):
        save_encoder(enc, tmp_path / "x", (3, 48, 48), "inverse_dynamics")
    with pytest.raises(ValueError, match="unknown source"):
        save_encoder(enc, tmp_path / "x", SHAPE, "imagenet")


def test_loads_exactly_the_conv_weights(tmp_path: Path) -> None:
    source = _trained_encoder(0)
    path = save_encoder(source, tmp_path / "enc", SHAPE, "inverse_dynamics")
    target = _trained_encoder(1)
    head_before = _clone_state(target.head)
    key = "0.weight"
    assert not torch.equal(target.convs.state_dict()[key], source.convs.state_dict()[key])
    loaded = load_pretrained_encoder(target, path)
    assert loaded == sorted(f"encoder/convs/{k}" for k in source.convs.state_dict())
    for name, value in source.convs.state_dict().items():
        assert torch.equal(target.convs.state_dict()[name], value), name
    for name, value in head_before.items():  # head untouched unless asked
        assert torch.equal(target.head.state_dict()[name], value), name
    loaded = load_pretrained_encoder(target, path, include_head=True)
    assert any(n.startswith("encoder/head/") for n in loaded)
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name
    # same outputs in eval mode once everything is loaded
    x = torch.randint(0, 256, (2, *SHAPE), dtype=torch.uint8)
    source.eval()
    target.eval()
    torch.testing.assert_close(source(x), target(x))


def test_freeze_stops_conv_learning_and_batchnorm_stats(tmp_path: Path) -> None:
    path = save_encoder(_trained_encoder(0), tmp_path / "enc", SHAPE, "inverse_dynamics")
    target = _trained_encoder(1)
    load_pretrained_encoder(target, path, freeze=True)
    assert all(not p.requires_grad for p in target.convs.parameters())
    assert all(p.requires_grad for p in target.head.parameters())
    convs_before = _clone_state(target.convs)
    head_before = _clone_state(target.head)
    optimizer = torch.optim.Adam([p for p in target.parameters() if p.requires_grad], lr=1e-2)
    target.train()  # a later .train() must not unfreeze BatchNorm
    x = torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8)
    out = target(x)
    out.pow(2).sum().backward()
    optimizer.step()
    for name, value in convs_before.items():  # weights and running stats unchanged
        assert torch.equal(target.convs.state_dict()[name], value), name
    assert any(not torch.equal(target.head.state_dict()[k], v) for k, v in head_before.items())
    # frozen BatchNorm normalises with its running statistics even in train mode
    target.eval()
    with torch.no_grad():
        eval_out = target.conv_features(x)
    target.train()
    with torch.no_grad():
        torch.testing.assert_close(target.conv_features(x), eval_out)


@pytest.mark.parametrize(
    "config,shape,match",
    [
        (PixelEncoderConfig("drq4", 8, 10), SHAPE, r"kind 'pad11' \(pretrained\) vs 'drq4'"),
        (PixelEncoderConfig("pad11", 16, 10), SHAPE, r"num_filters 8 \(pretrained\) vs 16"),
        (PAD, (3, 48, 48), r"\(9, 48, 48\) \(pretrained\) vs \(3, 48, 48\).*channels differ"),
        (PAD, (9, 64, 64), r"\(9, 48, 48\) \(pretrained\) vs \(9, 64, 64\).*image size"),
        (
            PixelEncoderConfig("pad11", 9, 10, groups=3),
            SHAPE,
            r"num_filters 8 .* vs 9 .*; groups 1 \(pretrained\) vs 3",
        ),
    ],
)
def test_mismatch_errors_name_both_sides(
    tmp_path: Path, config: PixelEncoderConfig, shape: tuple[int, int, int], match: str
) -> None:
    path = save_encoder(_trained_encoder(), tmp_path / "enc", SHAPE, "inverse_dynamics")
    target = PixelEncoder(config, shape)
    before = _clone_state(target)
    with pytest.raises(EncoderMismatchError, match=match):
        load_pretrained_encoder(target, path)
    for name, value in before.items():  # nothing half-loaded
        assert torch.equal(target.state_dict()[name], value)


def test_feature_dim_matters_only_for_the_head(tmp_path: Path) -> None:
    path = save_encoder(_trained_encoder(), tmp_path / "enc", SHAPE, "inverse_dynamics")
    other = PixelEncoder(PixelEncoderConfig("pad11", 8, 32), SHAPE)
    assert load_pretrained_encoder(other, path)  # convs fit
    with pytest.raises(EncoderMismatchError, match=r"feature_dim 10 \(pretrained\) vs 32"):
        load_pretrained_encoder(other, path, include_head=True)


def test_bad_checkpoints(tmp_path: Path) -> None:
    enc = PixelEncoder(PAD, SHAPE)
    with pytest.raises(EncoderMismatchError, match="no pretrained encoder checkpoint"):
        load_pretrained_encoder(enc, tmp_path / "nothing")
    save_checkpoint(tmp_path / "agent", {"torso/w": torch.zeros(2)}, {"architecture": {}})
    with pytest.raises(EncoderMismatchError, match="not a pretrained pixel encoder"):
        load_pretrained_encoder(enc, tmp_path / "agent")
    # a run directory holding encoder/ is accepted
    save_encoder(_trained_encoder(), tmp_path / "run" / "encoder", SHAPE, "inverse_dynamics")
    assert load_pretrained_encoder(enc, tmp_path / "run")
    # convs-only checkpoint: asking for the head is an error
    save_encoder(enc, tmp_path / "convs", SHAPE, "image_classification", include_head=False)
    with pytest.raises(EncoderMismatchError, match="include_head=False"):
        load_pretrained_encoder(enc, tmp_path / "convs", include_head=True)
    # tampered tensor shapes are caught with names
    tensors, meta = load_checkpoint(tmp_path / "convs")
    tampered: dict[str, torch.Tensor | np.ndarray] = dict(tensors)
    tampered["encoder/convs/0.weight"] = torch.zeros(8, 9, 5, 5)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "sha256")}
    save_checkpoint(tmp_path / "bad", tampered, meta)
    with pytest.raises(EncoderMismatchError, match=r"0.weight: \(8, 9, 5, 5\)"):
        load_pretrained_encoder(enc, tmp_path / "bad")
