from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.mcts import ModelOutput
from rltransfer.agents.efficientzero.networks import (
    EfficientZeroNet,
    ResidualBlock,
    WorldModelConfig,
    WorldModelInputError,
    normalize_latent,
    world_model_preset,
)
from rltransfer.core.config import ConfigError, from_dict, to_dict
from rltransfer.nets.value_transforms import support_to_scalar

torch.set_num_threads(1)


def _small_net(channels: int = 4, actions: int = 3, seed: int = 0) -> EfficientZeroNet:
    torch.manual_seed(seed)
    return EfficientZeroNet(world_model_preset("small"), (channels, 10, 10), actions).eval()


def _randomise_heads(net: EfficientZeroNet) -> None:
    """The final head layers start at zero (uniform outputs); give them weights for tests."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for lin in (net.dynamics.reward_mlp[-1], net.prediction.value_mlp[-1],
                    net.prediction.policy_mlp[-1]):
            assert isinstance(lin, torch.nn.Linear)
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g))


def test_atari_preset_shapes_on_96x96_rgb_stack() -> None:
    cfg = world_model_preset("atari")
    assert (cfg.num_channels, cfg.lstm_hidden_size, cfg.value_support_size) == (64, 512, 300)
    torch.manual_seed(0)
    net = EfficientZeroNet(cfg, (12, 96, 96), 18).eval()
    assert net.latent_shape == (64, 6, 6)
    obs = torch.randint(0, 256, (2, 12, 96, 96), dtype=torch.uint8)
    out = net.initial_inference(obs)
    assert isinstance(out, ModelOutput)
    assert out.latent.shape == (2, 64, 6, 6)
    assert out.policy_logits.shape == (2, 18) and out.policy_logits.dtype == np.float32
    assert out.value.shape == (2,) and out.value.dtype == np.float32
    assert out.value_prefix.tolist() == [0.0, 0.0]
    for t in out.reward_hidden:
        assert t.shape == (1, 2, 512) and not t.any()
    _, value_logits = net.predict(out.latent)
    assert value_logits.shape == (2, 601)
    step = net.recurrent_inference(out.latent, out.reward_hidden, torch.tensor([0, 17]))
    assert step.latent.shape == (2, 64, 6, 6) and step.value_prefix.shape == (2,)
    _, prefix_logits, _ = net.dynamics_step(out.latent, out.reward_hidden, torch.tensor([0, 1]))
    assert prefix_logits.shape == (2, 601)
    # projection 2304 -> 1024 -> 1024 -> 1024, predictor 1024 -> 512 -> 1024
    assert net.projection.project(out.latent).shape == (2, 1024)
    assert net.projection.predictor[0].out_features == 512
    assert net.projection(out.latent).shape == (2, 1024)


def test_atari_l_preset_has_three_more_representation_blocks() -> None:
    def blocks(name: str) -> int:
        net = EfficientZeroNet(world_model_preset(name), (12, 96, 96), 4)
        return sum(isinstance(m, ResidualBlock) for m in net.representation.modules())

    # downsampling part: 4 blocks (32, down 32->64, 64, 64), then 1 (EZ) or 4 (XTRA) blocks
    assert blocks("atari") == 5
    assert blocks("atari-l") == 8


def test_small_preset_shapes_on_minatar() -> None:
    net = _small_net(channels=7, actions=5)
    assert net.latent_shape == (16, 10, 10)
    out = net.initial_inference(torch.randint(0, 2, (3, 7, 10, 10), dtype=torch.uint8))
    assert out.latent.shape == (3, 16, 10, 10) and out.policy_logits.shape == (3, 5)
    assert out.reward_hidden[0].shape == (1, 3, 64)
    _, value_logits = net.predict(out.latent)
    assert value_logits.shape == (3, 41)


def test_component_names_cover_all_parameters() -> None:
    net = _small_net()
    assert [n for n, _ in net.named_children()] == list(EfficientZeroNet.COMPONENTS)
    assert EfficientZeroNet.COMPONENTS == ("representation", "dynamics", "prediction",
                                           "projection")
    total = sum(p.numel() for p in net.parameters())
    by_comp = sum(p.numel() for c in EfficientZeroNet.COMPONENTS
                  for p in getattr(net, c).parameters())
    assert total == by_comp
    assert hasattr(net.projection, "predictor") and hasattr(net.projection, "projector")


def test_latent_is_min_max_normalised_per_sample() -> None:
    x = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    out = normalize_latent(x)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(out[1], torch.zeros(1, 2, 2))  # constant: range floored at 1e-5
    net = _small_net()
    latent = net.represent(torch.randint(0, 2, (4, 4, 10, 10), dtype=torch.uint8))
    flat = latent.flatten(1)
    torch.testing.assert_close(flat.min(1).values, torch.zeros(4))
    torch.testing.assert_close(flat.max(1).values, torch.ones(4))


def test_latent_min_max_is_a_flag_off_in_the_public_atari_config() -> None:
    # public EfficientZero / XTRA Atari configs: state_norm=False; MinAtar preset keeps it on
    assert WorldModelConfig().latent_min_max is False
    assert world_model_preset("atari").latent_min_max is False
    assert world_model_preset("atari-l").latent_min_max is False
    assert world_model_preset("small").latent_min_max is True
    obs = torch.randint(0, 2, (3, 4, 10, 10), dtype=torch.uint8)
    actions = torch.tensor([0, 1, 2])
    on = _small_net()
    torch.manual_seed(0)
    off = EfficientZeroNet(dataclasses.replace(world_model_preset("small"),
                                               latent_min_max=False), (4, 10, 10), 3).eval()
    off.load_state_dict(on.state_dict())
    raw = off.represent(obs).detach()
    torch.testing.assert_close(raw, off.representation(obs.float()))  # h's output as is
    assert not torch.allclose(raw, normalize_latent(raw))  # i.e. not already in [0, 1]
    torch.testing.assert_close(on.represent(obs), normalize_latent(raw))
    hidden = on.initial_reward_hidden(3)
    raw_next, prefix_off, _ = off.dynamics_step(raw, hidden, actions)
    torch.testing.assert_close(raw_next, off.dynamics(raw, actions, hidden)[0])
    norm_next, prefix_on, _ = on.dynamics_step(raw, hidden, actions)
    torch.testing.assert_close(norm_next, normalize_latent(raw_next))
    torch.testing.assert_close(prefix_on, prefix_off)
    hand = torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]]]])  # min -2, range 8
    torch.testing.assert_close(normalize_latent(hand),
                               torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))


def test_uint8_scaled_once_by_obs_scale() -> None:
    cfg = WorldModelConfig(downsample=False, num_channels=8, lstm_hidden_size=8,
                           value_support_size=5, value_prefix_support_size=5,
                           projection_hidden=16, projection_out=16, predictor_hidden=8)
    torch.manual_seed(0)
    net = EfficientZeroNet(cfg, (2, 5, 5), 2).eval()
    obs = torch.randint(0, 256, (3, 2, 5, 5), dtype=torch.uint8)
    torch.testing.assert_close(net.represent(obs), net.represent(obs.float() / 255.0))
    assert not torch.allclose(net.represent(obs), net.represent(obs.float()))


def test_inference_scalars_come_from_the_support() -> None:
    net = _small_net()
    _randomise_heads(net)
    obs = torch.randint(0, 2, (2, 4, 10, 10), dtype=torch.uint8)
    root = net.initial_inference(obs)
    policy_logits, value_logits = net.predict(net.represent(obs))
    np.testing.assert_allclose(root.value, support_to_scalar(value_logits, 20).detach().numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(root.policy_logits, policy_logits.detach().numpy(), rtol=1e-6)
    assert np.abs(root.value).max() > 0.01  # not trivially zero


def test_recurrent_inference_carries_the_reward_hidden() -> None:
    net = _small_net()
    _randomise_heads(net)
    root = net.initial_inference(torch.randint(0, 2, (2, 4, 10, 10), dtype=torch.uint8))
    a = torch.tensor([1, 2])
    first = net.recurrent_inference(root.latent, root.reward_hidden, a)
    assert all(t.abs().sum() > 0 for t in first.reward_hidden)  # LSTM state moved
    second = net.recurrent_inference(first.latent, first.reward_hidden, a)
    reset = net.recurrent_inference(first.latent, net.initial_reward_hidden(2), a)
    # same latent and action; only the hidden differs -> different value prefix, same value
    assert not np.allclose(second.value_prefix, reset.value_prefix)
    np.testing.assert_allclose(second.value, reset.value, rtol=1e-6)
    torch.testing.assert_close(second.latent, reset.latent)
    # the returned hidden is the LSTM's own next state
    _, _, (h, c) = net.dynamics_step(first.latent, first.reward_hidden, a)
    torch.testing.assert_close(second.reward_hidden[0], h)
    torch.testing.assert_close(second.reward_hidden[1], c)


def test_action_plane_changes_the_next_latent() -> None:
    net = _small_net()
    root = net.initial_inference(torch.randint(0, 2, (1, 4, 10, 10), dtype=torch.uint8))
    s0 = net.recurrent_inference(root.latent, root.reward_hidden, torch.tensor([0])).latent
    s2 = net.recurrent_inference(root.latent, root.reward_hidden, torch.tensor([2])).latent
    assert not torch.allclose(s0, s2)


def test_bad_inputs_raise_clear_errors() -> None:
    net = _small_net()
    with pytest.raises(WorldModelInputError, match=r"obs must be \[B, 4, 10, 10\]"):
        net.initial_inference(torch.zeros(2, 10, 10, 4, dtype=torch.uint8))
    root = net.initial_inference(torch.zeros(2, 4, 10, 10, dtype=torch.uint8))
    with pytest.raises(WorldModelInputError, match=r"actions must be in \[0, 3\)"):
        net.recurrent_inference(root.latent, root.reward_hidden, torch.tensor([0, 3]))
    with pytest.raises(WorldModelInputError, match="integer tensor"):
        net.recurrent_inference(root.latent, root.reward_hidden, torch.tensor([0.0, 1.0]))
    with pytest.raises(WorldModelInputError, match="reward_hidden"):
        net.recurrent_inference(root.latent, net.initial_reward_hidden(3), torch.tensor([0, 1]))
    with pytest.raises(WorldModelInputError, match="num_actions"):
        EfficientZeroNet(world_model_preset("small"), (4, 10, 10), 0)


def test_config_validation_and_presets() -> None:
    with pytest.raises(ConfigError, match=r"unknown world-model preset 'big'.*atari"):
        world_model_preset("big")
    with pytest.raises(ConfigError, match=r"num_channels must be >= 1.*obs_scale must be > 0"):
        WorldModelConfig(num_channels=0, obs_scale=0.0)
    with pytest.raises(ConfigError, match="value_hidden entries"):
        WorldModelConfig(value_hidden=(0,))
    small = world_model_preset("small")
    small.num_channels = 99  # a copy: the preset itself is unchanged
    assert world_model_preset("small").num_channels == 16
    cfg = world_model_preset("atari-l")
    assert from_dict(WorldModelConfig, to_dict(cfg)) == cfg
