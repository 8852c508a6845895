from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.core.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.methods.encoder_pretraining.transfer import (
    EncoderMismatchError,
    load_pretrained_encoder,
    save_encoder,
)
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig

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


# --- building the RL agent from a checkpoint's metadata (train-sac --init-encoder-from) ------


def _ik_like_checkpoint(tmp_path: Path) -> Path:
    """A convs-only pad11 checkpoint of 3 stacked 84x84 centre crops of 100x100 renders."""
    enc = PixelEncoder(PixelEncoderConfig(kind="pad11", num_filters=8, feature_dim=100),
                       (9, 84, 84))
    return save_encoder(enc, tmp_path / "ik" / "encoder", (9, 84, 84), "inverse_dynamics",
                        include_head=False,
                        geometry={"frame_stack": 3, "render_size": 100, "crop_size": 84})


def test_read_pretrained_architecture(tmp_path: Path) -> None:
    from rltransfer.methods.encoder_pretraining.transfer import read_pretrained_architecture

    path = _ik_like_checkpoint(tmp_path)
    arch = read_pretrained_architecture(tmp_path / "ik")  # the run dir works too
    assert arch.path == path and arch.source == "inverse_dynamics" and not arch.has_head
    assert arch.encoder_config == PixelEncoderConfig(kind="pad11", num_filters=8,
                                                     feature_dim=100)
    assert (arch.obs_shape, arch.frame_stack, arch.render_size, arch.crop_size) == (
        (9, 84, 84), 3, 100, 84)
    with pytest.raises(ValueError, match="frame_stack 2 does not divide"):
        save_encoder(PixelEncoder(PAD, SHAPE), tmp_path / "x", SHAPE, "inverse_dynamics",
                     geometry={"frame_stack": 2})
    with pytest.raises(ValueError, match="unknown geometry"):
        save_encoder(PixelEncoder(PAD, SHAPE), tmp_path / "x", SHAPE, "inverse_dynamics",
                     geometry={"stack": 3})


def test_sac_config_defaults_come_from_the_checkpoint(tmp_path: Path) -> None:
    from rltransfer.agents.sac.config import SACTrainConfig, config_from_pretrained_encoder

    path = _ik_like_checkpoint(tmp_path)
    plain = SACTrainConfig()
    assert config_from_pretrained_encoder(plain) is plain  # nothing to take without one
    cfg = config_from_pretrained_encoder(SACTrainConfig(init_encoder_from=str(path)))
    assert cfg.encoder == PixelEncoderConfig(kind="pad11", num_filters=8, feature_dim=100)
    assert (cfg.frame_stack, cfg.render_size) == (3, 100)
    assert (cfg.agent.augmentation, cfg.agent.crop_size) == ("crop", 84)
    # settings that agree with the checkpoint are kept; resolving twice changes nothing
    assert config_from_pretrained_encoder(cfg) == cfg
    assert config_from_pretrained_encoder(cfg, strict=True) == cfg
    # the feature size (head) is free unless the head is loaded
    free = config_from_pretrained_encoder(SACTrainConfig(
        init_encoder_from=str(path), encoder=PixelEncoderConfig(kind="pad11", feature_dim=64)))
    assert free.encoder.feature_dim == 64 and free.encoder.num_filters == 8


def test_sac_config_conflicts_are_one_error(tmp_path: Path) -> None:
    from rltransfer.agents.sac.config import (
        SACConfig,
        SACTrainConfig,
        config_from_pretrained_encoder,
    )

    path = str(_ik_like_checkpoint(tmp_path))
    cfg = SACTrainConfig(init_encoder_from=path, render_size=64, frame_stack=2,
                         encoder=PixelEncoderConfig(num_filters=16),
                         agent=SACConfig(augmentation="none"))
    with pytest.raises(EncoderMismatchError) as info:
        config_from_pretrained_encoder(cfg)
    message = str(info.value)
    for part in ("encoder.num_filters 16 (set here) vs 8 (checkpoint)",
                 "frame_stack 2 (set here) vs 3 (checkpoint)",
                 "render_size 64 (set here) vs 100 (checkpoint)",
                 "agent.augmentation 'none' (set here) vs 'crop' (checkpoint)"):
        assert part in message
    assert "encoder.kind" not in message  # drq4 is the default: taken from the checkpoint
    # strict (the CLI, whose defaults are the checkpoint's): any difference is a set value
    with pytest.raises(EncoderMismatchError, match=r"encoder.kind 'drq4' \(set here\)"):
        config_from_pretrained_encoder(SACTrainConfig(init_encoder_from=path), strict=True)
    with pytest.raises(EncoderMismatchError, match="feature_dim 64"):
        config_from_pretrained_encoder(SACTrainConfig(
            init_encoder_from=path, init_encoder_head=True,
            encoder=PixelEncoderConfig(kind="pad11", num_filters=8, feature_dim=64)))


def test_image_classification_checkpoint_keeps_the_run_geometry(tmp_path: Path) -> None:
    """A checkpoint without render / crop sizes (image classification: 3 images of 84x84)
    gives its encoder and frame stack; the run renders at the encoder's input size."""
    from rltransfer.agents.sac.config import (
        SACConfig,
        SACTrainConfig,
        config_from_pretrained_encoder,
    )

    grouped = PixelEncoderConfig(kind="drq4", num_filters=12, feature_dim=50, groups=3)
    path = save_encoder(PixelEncoder(grouped, (9, 84, 84)), tmp_path / "ic", (9, 84, 84),
                        "image_classification", include_head=False,
                        geometry={"frame_stack": 3})
    cfg = config_from_pretrained_encoder(SACTrainConfig(init_encoder_from=str(path)))
    assert cfg.encoder == grouped and cfg.frame_stack == 3 and cfg.render_size == 84
    crop = config_from_pretrained_encoder(SACTrainConfig(
        init_encoder_from=str(path), agent=SACConfig(augmentation="crop")))
    assert crop.render_size is None and crop.agent.crop_size == 84  # renders 100, crops 84


@pytest.mark.slow
def test_cli_pretrain_encoder_then_train_sac_with_default_flags(tmp_path: Path) -> None:
    """``pretrain-encoder`` then ``train-sac --init-encoder-from`` with default architecture
    flags trains (tiny budgets); a contradicting flag, or a broken checkpoint found after the
    envs exist, ends with one error line and no traceback (renderers closed before exit)."""
    pytest.importorskip("dm_control")
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rltransfer.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)

    done = cli("pretrain-encoder", "--env-id", "DMC/walker-walk", "--num-transitions", "40",
               "--epochs", "1", "--out-dir", "ik", "--no-progress", "--torch-threads", "1")
    assert done.returncode == 0, done.stderr
    sac = ("train-sac", "--env-id", "DMC/walker-walk", "--init-encoder-from", "ik/encoder",
           "--no-progress", "--no-tensorboard")
    done = cli(*sac, "--total-env-steps", "8", "--learning-starts-env-steps", "4",
               "--eval-every-env-steps", "8", "--eval-episodes", "1", "--run-dir", "sac")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    cfg = json.loads((tmp_path / "sac" / "config.json").read_text())
    assert cfg["encoder"] == {"kind": "pad11", "num_filters": 32, "feature_dim": 100,
                              "groups": 1}
    assert (cfg["frame_stack"], cfg["render_size"]) == (3, 100)
    assert (cfg["agent"]["augmentation"], cfg["agent"]["crop_size"]) == ("crop", 84)

    def one_error_line(result: subprocess.CompletedProcess[str], pattern: str) -> None:
        assert result.returncode == 2
        lines = [x for x in result.stderr.splitlines() if x.strip()
                 and not x.startswith("WARNING:absl")]
        assert len(lines) == 1 and lines[0].startswith("rltransfer: error:"), result.stderr
        assert re.search(pattern, lines[0]), lines[0]

    # an explicit flag that contradicts the checkpoint (even drq4, the verb's own default)
    one_error_line(cli(*sac, "--encoder.kind", "drq4", "--run-dir", "bad"),
                   r"encoder.kind 'drq4' \(set here\) vs 'pad11' \(checkpoint\)")
    assert not (tmp_path / "bad").exists()
    # a checkpoint that breaks only when loaded, after the envs (and renderers) exist
    for tensors in (tmp_path / "ik" / "encoder").glob("tensors*"):
        tensors.unlink()
    one_error_line(cli(*sac, "--run-dir", "broken"), "tensors")
