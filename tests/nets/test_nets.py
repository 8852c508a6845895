from __future__ import annotations

import pytest
import torch

from rltransfer.nets import DuelingHead, FeedforwardCore, QHead, make_torso, nature_cnn, small_cnn


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
