from __future__ import annotations

import pytest
import torch

from rltransfer.nets import (
    ENCODER_KINDS,
    DuelingHead,
    FeedforwardCore,
    QHead,
    UnknownEncoderKindError,
    encoder_body,
    make_torso,
    nature_cnn,
    resolve_encoder_kind,
    small_cnn,
)


@pytest.mark.parametrize(
    "shape, kind",
    [((4, 84, 84), "nature"), ((7, 10, 10), "small"), ((3, 5, 5), "small"),
     ((3, 19, 19), "small"), ((1, 1, 9), "small")],
)
def test_make_torso_picks_encoder_and_outputs_features(shape, kind) -> None:
    torso = make_torso(shape, obs_scale=255.0, feature_dim=24)
    first_conv = torso.encoder[0]
    assert first_conv.kernel_size == ((8, 8) if kind == "nature" else (3, 3))
    x = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    out = torso(x)
    assert out.shape == (2, 24) and out.dtype == torch.float32
    assert torch.all(out >= 0)  # ReLU output


def test_torso_scales_uint8_inside() -> None:
    torch.manual_seed(0)
    torso = make_torso((2, 6, 6), obs_scale=10.0, feature_dim=8)
    x = torch.randint(0, 11, (3, 2, 6, 6), dtype=torch.uint8)
    torch.testing.assert_close(torso(x), torso(x.float() / 10.0))
    assert not torch.allclose(torso(x), torso(x.float()))


def test_torso_rejects_wrong_shape() -> None:
    torso = make_torso((2, 6, 6), 1.0, 8)
    with pytest.raises(ValueError, match="FrameStacker"):
        torso(torch.zeros(1, 1, 6, 6, dtype=torch.uint8))
    with pytest.raises(ValueError):
        make_torso((2, 6), 1.0, 8)  # type: ignore[arg-type]


def test_mlp_torso_shapes_and_hand_values() -> None:
    torso = make_torso((3, 5, 5), obs_scale=10.0, feature_dim=6, kind="mlp")
    enc = torso.encoder
    assert [type(m) for m in enc] == [torch.nn.Flatten, torch.nn.Linear, torch.nn.ReLU]
    assert enc[1].in_features == 75 and enc[1].out_features == 6
    with torch.no_grad():
        enc[1].weight.zero_()
        enc[1].weight[0, 0] = 1.0  # feature 0 = obs[0, 0, 0] / 10
        enc[1].weight[1, 74] = -2.0  # feature 1 = relu(-2 * obs[2, 4, 4] / 10)
        enc[1].bias.zero_()
        enc[1].bias[2] = 0.5
    x = torch.zeros(2, 3, 5, 5, dtype=torch.uint8)
    x[0, 0, 0, 0] = 7
    x[1, 2, 4, 4] = 3
    expected = torch.zeros(2, 6)
    expected[0, 0] = 0.7
    expected[:, 2] = 0.5
    torch.testing.assert_close(torso(x), expected)


@pytest.mark.parametrize(
    "kind, shape, first, num_features",
    [("mlp", (3, 5, 5), torch.nn.Flatten, 75), ("small_cnn", (3, 5, 5), torch.nn.Conv2d, 800),
     ("small_cnn", (4, 84, 84), torch.nn.Conv2d, 32 * 84 * 84),
     ("auto", (2, 36, 44), torch.nn.Conv2d, 64 * 1 * 2),  # 36 -> 8 -> 3 -> 1; 44 -> 10 -> 4 -> 2
     ("nature_cnn", (4, 84, 84), torch.nn.Conv2d, 64 * 7 * 7)],
)
def test_encoder_body_kinds(kind, shape, first, num_features) -> None:
    body, n = encoder_body(kind, shape, activation=torch.nn.LeakyReLU)
    assert isinstance(body[0], first) and n == num_features
    assert body(torch.zeros(2, *shape)).shape == (2, num_features)
    if kind != "mlp":
        assert isinstance(body[1], torch.nn.LeakyReLU)


def test_encoder_kind_resolution_and_validation() -> None:
    assert set(ENCODER_KINDS) == {"auto", "mlp", "small_cnn", "nature_cnn"}
    assert resolve_encoder_kind("auto", 36, 36) == "nature_cnn"
    assert resolve_encoder_kind("auto", 35, 84) == "small_cnn"
    assert resolve_encoder_kind("mlp", 84, 84) == "mlp"
    with pytest.raises(UnknownEncoderKindError, match="mlp"):
        make_torso((3, 5, 5), 1.0, 8, kind="conv")
    with pytest.raises(ValueError, match="small_cnn or mlp"):
        make_torso((3, 5, 5), 1.0, 8, kind="nature_cnn")
    assert isinstance(UnknownEncoderKindError("x"), ValueError)


def test_nature_cnn_shapes() -> None:
    net = nature_cnn(4, feature_dim=16)
    assert net[7].in_features == 64 * 7 * 7  # 84 -> 20 -> 9 -> 7
    assert net(torch.zeros(1, 4, 84, 84)).shape == (1, 16)
    assert small_cnn(3, 7, feature_dim=5)(torch.zeros(2, 3, 7, 7)).shape == (2, 5)


def test_dueling_head_hand_values() -> None:
    head = DuelingHead(in_dim=2, hidden=3, num_actions=3)
    with torch.no_grad():
        for stream in (head.value, head.advantage):
            stream[0].weight.copy_(torch.eye(3, 2))  # hidden = [x0, x1, 0] after ReLU
            stream[0].bias.zero_()
        head.value[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.0]]))  # V = x0 + x1
        head.value[2].bias.fill_(0.5)
        head.advantage[2].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
        head.advantage[2].bias.copy_(torch.tensor([0.0, 0.0, 3.0]))  # A = [x0, x1, 3]
    x = torch.tensor([[1.0, 2.0]])
    # V = 3.5, A = [1, 2, 3], mean 2 -> Q = [2.5, 3.5, 4.5]
    torch.testing.assert_close(head(x), torch.tensor([[2.5, 3.5, 4.5]]))
    assert QHead(2, 3, 4)(x).shape == (1, 4)


def test_feedforward_core_interface() -> None:
    core = FeedforwardCore(6, 4)
    out, state = core(torch.randn(5, 6), core.initial_state(5))
    assert out.shape == (5, 4) and state is None and core.out_dim == 4
    assert not core.is_recurrent
    ident = FeedforwardCore(6, None)
    x = torch.randn(2, 6)
    assert torch.equal(ident(x, None)[0], x) and ident.out_dim == 6
    with pytest.raises(ValueError, match="features"):
        core(torch.randn(2, 5), None)
