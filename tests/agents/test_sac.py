from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rltransfer.agents.sac import losses
from rltransfer.agents.sac.augmentation import center_crop, random_crop, random_shift
from rltransfer.agents.sac.config import SACConfig
from rltransfer.agents.sac.learner import SACAgent
from rltransfer.agents.sac.networks import Actor, DoubleQCritic, soft_update_
from rltransfer.core.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.core.types import UpdateResult
from rltransfer.errors import NonFiniteLossError
from rltransfer.nets.pixel_encoders import PixelEncoderConfig

torch.set_num_threads(1)


def _state_agent(**kw: Any) -> SACAgent:
    cfg = SACConfig(hidden_dim=16, batch_size=8, augmentation="none", **kw)
    return SACAgent(cfg, (2,), 1, seed=0)


def _pixel_agent(kind: str = "drq4", size: int = 16, aug: str = "shift", **kw: Any
                 ) -> SACAgent:
    cfg = SACConfig(hidden_dim=16, batch_size=8, augmentation=aug, **kw)
    enc = PixelEncoderConfig(kind=kind, num_filters=8, feature_dim=10)
    return SACAgent(cfg, (6, size, size), 2, enc, seed=0)


def _pixel_batch(agent: SACAgent, b: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (b, *agent.obs_shape)
    return {
        "obs": rng.integers(0, 256, shape, dtype=np.uint8),
        "next_obs": rng.integers(0, 256, shape, dtype=np.uint8),
        "action": rng.uniform(-1, 1, (b, agent.action_dim)).astype(np.float32),
        "n_step_return": rng.normal(size=b).astype(np.float32),
        "bootstrap_discount": np.full(b, 0.99, np.float32),
    }


def _constant_q(critic: DoubleQCritic, q1: float, q2: float) -> None:
    """Make both Q nets output constants (zero last-layer weights, bias = value)."""
    with torch.no_grad():
        for net, value in ((critic.q1, q1), (critic.q2, q2)):
            last = net[-1]
            assert isinstance(last, nn.Linear)
            last.weight.zero_()
            last.bias.fill_(value)


def _fixed_policy(monkeypatch: pytest.MonkeyPatch, agent: SACAgent, log_prob: torch.Tensor
                  ) -> None:
    """Make the actor sample action 0 with ``log pi = log_prob`` for every state."""
    def fake_sample(feats: torch.Tensor, generator: object = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = log_prob.shape[0]
        return torch.zeros(b, agent.action_dim), log_prob, torch.zeros(b, agent.action_dim)

    monkeypatch.setattr(agent.actor, "sample", fake_sample)


# ---------------------------------------------------------------------- math
def test_target_hand_values(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = _state_agent(init_temperature=0.1)
    _constant_q(agent.critic_target, 3.0, 5.0)
    _fixed_policy(monkeypatch, agent, torch.tensor([-0.5, -0.5]))
    y = agent.critic_target_values(torch.zeros(2, 2), torch.tensor([1.0, 2.0]),
                                   torch.tensor([0.99, 0.0]))
    # y = r + d (min(3, 5) - 0.1 * (-0.5)) = 1 + 0.99 * 3.05 = 4.0195 ; terminal: y = r = 2
    torch.testing.assert_close(y, torch.tensor([4.0195, 2.0]))


def test_actor_and_alpha_loss_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = _state_agent(init_temperature=0.1)
    _constant_q(agent.critic, 3.0, 4.0)
    _fixed_policy(monkeypatch, agent, torch.tensor([-0.5, -0.5], requires_grad=True))
    loss, _ = agent.actor_loss(torch.zeros(2, 2))
    # alpha * log pi - min Q = 0.1 * -0.5 - 3 = -3.05
    assert float(loss.detach()) == pytest.approx(-3.05, abs=1e-6)
    # Entropy -log pi = 3 above the target -|A| = -1: alpha loss = 0.1 * (3 + 1) = 0.4 and
    # d/d log_alpha = +0.4, so gradient descent lowers alpha.
    a_loss = agent.alpha_loss(torch.tensor([-3.0, -3.0]))
    assert float(a_loss.detach()) == pytest.approx(0.4, rel=1e-5)
    a_loss.backward()
    assert agent.log_alpha.grad is not None and float(agent.log_alpha.grad) == pytest.approx(
        0.4, rel=1e-5
    )
    # Entropy below the target: alpha must grow.
    agent.log_alpha.grad = None
    agent.alpha_loss(torch.tensor([3.0, 3.0])).backward()  # -log pi = -3 < -1
    assert agent.log_alpha.grad is not None and float(agent.log_alpha.grad) < 0


def test_update_losses_hand_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """One full update on a hand-set network: constant critics (Q1 = 1, Q2 = 2; targets 3
    and 5), a policy with log pi = -0.5, alpha = 0.1; every reported value by hand."""
    agent = _state_agent(init_temperature=0.1)
    _constant_q(agent.critic, 1.0, 2.0)
    _constant_q(agent.critic_target, 3.0, 5.0)
    _fixed_policy(monkeypatch, agent, torch.tensor([-0.5, -0.5], requires_grad=True))
    batch = {"obs": np.zeros((2, 2), np.float32), "next_obs": np.ones((2, 2), np.float32),
             "action": np.zeros((2, 1), np.float32),
             "n_step_return": np.array([1.0, 2.0], np.float32),
             "bootstrap_discount": np.array([0.99, 0.0], np.float32)}
    result = agent.update(batch)
    assert isinstance(result, UpdateResult) and result.priorities is None  # uniform replay
    metrics = result.metrics
    # y = R + d (min(3, 5) - 0.1 * (-0.5)) = [1 + 0.99 * 3.05, 2] = [4.0195, 2]
    assert metrics["target_mean"] == pytest.approx((4.0195 + 2.0) / 2, rel=1e-6)
    # critic loss = mean((1 - y)^2) + mean((2 - y)^2)
    #             = (3.0195^2 + 1^2) / 2 + (2.0195^2 + 0^2) / 2 = 5.058690 + 2.039190
    assert metrics["critic_loss"] == pytest.approx(7.097880, rel=1e-5)
    assert metrics["q_mean"] == pytest.approx(1.0, rel=1e-6)
    # Update 0 also trains the actor and the temperature: entropy -log pi = 0.5; alpha loss
    # = 0.1 * (0.5 - (-|A|)) = 0.1 * 1.5 = 0.15 (alpha is stepped after its loss).
    assert metrics["entropy"] == pytest.approx(0.5, rel=1e-6)
    assert metrics["alpha_loss"] == pytest.approx(0.15, rel=1e-5)
    # Adam's first step moves log alpha by -lr * sign(grad) (grad 0.15 > 0): alpha shrinks.
    lr = agent.config.alpha_lr
    assert metrics["alpha"] == pytest.approx(0.1 * math.exp(-lr), rel=1e-4)


def test_losses_hand_values() -> None:
    """The pure losses on hand-set tensors (Haarnoja et al. 2018, Eq. 2-3, 5, 7, 18)."""
    alpha = torch.tensor(0.1)
    y = losses.soft_bellman_target(torch.tensor([3.0, 3.0]), torch.tensor([5.0, 1.0]),
                                   torch.tensor([-0.5, -0.5]), alpha,
                                   torch.tensor([1.0, 2.0]), torch.tensor([0.99, 0.5]))
    # min(3, 5) = 3 and min(3, 1) = 1: y = [1 + 0.99 * 3.05, 2 + 0.5 * 1.05]
    torch.testing.assert_close(y, torch.tensor([4.0195, 2.525]))
    q1, q2 = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0])
    target = torch.tensor([2.0, 4.0])
    # mean((1-2)^2, (2-4)^2) + mean((2-2)^2, (2-4)^2) = 2.5 + 2 = 4.5
    assert float(losses.critic_loss(q1, q2, target)) == pytest.approx(4.5)
    logp = torch.tensor([-1.0, 1.0], requires_grad=True)
    # mean(0.1 * [-1, 1] - [1, 2]) = mean([-1.1, -1.9]) = -1.5
    a_loss = losses.actor_loss(logp, q1, q2, alpha.requires_grad_())
    assert float(a_loss.detach()) == pytest.approx(-1.5)
    a_loss.backward()
    assert alpha.grad is None  # alpha is a constant of the actor loss
    assert logp.grad is not None
    torch.testing.assert_close(logp.grad, torch.tensor([0.05, 0.05]))
    log_alpha = torch.tensor(math.log(0.1), requires_grad=True)
    # mean(0.1 * (-[-1, 1] - (-2))) = 0.1 * mean([3, 1]) = 0.2; no gradient into log pi
    t_loss = losses.temperature_loss(log_alpha, logp, -2.0)
    assert float(t_loss.detach()) == pytest.approx(0.2)
    logp.grad = None
    t_loss.backward()
    assert logp.grad is None and float(log_alpha.grad) == pytest.approx(0.2)


def test_losses_reject_mismatched_shapes() -> None:
    b2, b3 = torch.zeros(2), torch.zeros(3)
    with pytest.raises(ValueError, match="one batch size"):
        losses.critic_loss(b2, b2, b3)
    with pytest.raises(ValueError, match=r"\[B\]"):
        losses.critic_loss(b2, b2, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="alpha must be a 0-d"):
        losses.actor_loss(b2, b2, b2, torch.ones(1))
    with pytest.raises(ValueError, match="one batch size"):
        losses.soft_bellman_target(b2, b2, b2, torch.tensor(0.1), b2, b3)
    with pytest.raises(ValueError, match="log_alpha must be a 0-d"):
        losses.temperature_loss(torch.zeros(2), b2, -1.0)


def test_squashed_gaussian_log_prob_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    actor = Actor(4, 4, 3, 16, -10.0, 2.0, pixels=False)
    feats = torch.randn(5, 4)
    gen = torch.Generator().manual_seed(3)
    action, logp, mean = actor.sample(feats, gen)
    mu, log_std = actor(feats)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    u = mu + log_std.exp() * eps
    torch.testing.assert_close(action, torch.tanh(u))
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, log_std.exp()),
        [torch.distributions.TanhTransform()],
    )
    expected = dist.log_prob(torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    torch.testing.assert_close(logp, expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(mean, torch.tanh(mu))
    assert (log_std >= -10).all() and (log_std <= 2).all()


def test_soft_update_formula() -> None:
    target, source = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(1.0)
        for p in source.parameters():
            p.fill_(3.0)
    soft_update_(target, source, 0.01)
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.01 * 3.0 + 0.99 * 1.0))


def test_update_soft_updates_targets_with_both_taus() -> None:
    agent = _pixel_agent()
    enc_t0 = {k: v.clone() for k, v in agent.encoder_target.named_parameters()}
    q_t0 = {k: v.clone() for k, v in agent.critic_target.named_parameters()}
    agent.update(_pixel_batch(agent))  # update 0: actor + target update
    for k, v in agent.encoder.named_parameters():
        expected = 0.95 * enc_t0[k] + 0.05 * v.detach()
        torch.testing.assert_close(dict(agent.encoder_target.named_parameters())[k], expected)
    for k, v in agent.critic.named_parameters():
        expected = 0.99 * q_t0[k] + 0.01 * v.detach()
        torch.testing.assert_close(dict(agent.critic_target.named_parameters())[k], expected)
    # update 1: no target update (every 2 updates), no actor update
    before = [p.clone() for p in agent.critic_target.parameters()]
    actor_before = [p.clone() for p in agent.actor.parameters()]
    metrics = agent.update(_pixel_batch(agent, seed=1)).metrics
    assert "actor_loss" not in metrics
    for a, b in zip(before, agent.critic_target.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(actor_before, agent.actor.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert agent.num_updates == 2


# ---------------------------------------------------------------------- structure
def test_actor_gradients_do_not_reach_shared_convs() -> None:
    agent = _pixel_agent()
    obs = torch.as_tensor(_pixel_batch(agent)["obs"])
    conv = agent.encoder.conv_features(obs)
    loss, _ = agent.actor_loss(conv)
    loss.backward()
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(p.grad is None for p in agent.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    # The actor owns its head; the convs are the critic encoder's (shared, not copied).
    actor_ids = {id(p) for p in agent.actor.parameters()}
    assert not actor_ids & {id(p) for p in agent.encoder.parameters()}
    # The critic loss does train the convs.
    agent.critic_optimizer.zero_grad()
    conv = agent.encoder.conv_features(obs)
    q1, _ = agent.critic(agent.encoder.head(conv), torch.zeros(8, 2))
    q1.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.encoder.convs
               .parameters())


def test_frozen_encoder_unchanged_after_updates() -> None:
    agent = _pixel_agent(kind="pad11", size=48)
    agent.set_encoder_frozen(True)
    convs0 = {k: v.clone() for k, v in agent.encoder.convs.state_dict().items()}
    target0 = {k: v.clone() for k, v in agent.encoder_target.convs.state_dict().items()}
    head0 = [p.clone() for p in agent.encoder.head.parameters()]
    for i in range(3):
        agent.update(_pixel_batch(agent, seed=i))
    for k, v in agent.encoder.convs.state_dict().items():  # weights and BN running stats
        torch.testing.assert_close(v, convs0[k])
    for k, v in agent.encoder_target.convs.state_dict().items():
        torch.testing.assert_close(v, target0[k])
    assert any(not torch.equal(a, b) for a, b in zip(head0, agent.encoder.head.parameters(),
                                                       strict=True))
    # Unfrozen, the BN running statistics and conv weights move.
    agent2 = _pixel_agent(kind="pad11", size=48)
    c0 = {k: v.clone() for k, v in agent2.encoder.convs.state_dict().items()}
    agent2.update(_pixel_batch(agent2))
    assert any(not torch.equal(v, c0[k]) for k, v in agent2.encoder.convs.state_dict().items())


def test_act_shapes_and_crop_mode() -> None:
    agent = _pixel_agent(size=20, aug="crop", crop_size=16)
    assert agent.encoder.obs_shape == (6, 16, 16)
    obs = np.random.default_rng(0).integers(0, 256, (3, 6, 20, 20), dtype=np.uint8)
    a = agent.act(obs)
    assert a.shape == (3, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    d1, d2 = agent.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(d1, d2)
    agent.update(_pixel_batch(agent))
    with pytest.raises(ValueError, match="obs must be"):
        agent.act(obs[:, :3])
    with pytest.raises(ValueError, match="render"):
        _pixel_agent(size=16, aug="crop", crop_size=84)
    with pytest.raises(ValueError, match="augmentation='none'"):
        SACAgent(SACConfig(), (3,), 1)


def _coord_images(b: int, h: int, w: int) -> torch.Tensor:
    img = (torch.arange(h)[:, None] * 1000 + torch.arange(w)[None, :]).float()
    return img.expand(b, 2, h, w).clone()


def test_random_crop_and_shift_are_windows() -> None:
    imgs = _coord_images(16, 12, 12)
    gen = torch.Generator().manual_seed(0)
    crops = random_crop(imgs, 8, gen)
    assert crops.shape == (16, 2, 8, 8)
    tops, lefts = set(), set()
    for i in range(16):
        top, left = int(crops[i, 0, 0, 0]) // 1000, int(crops[i, 0, 0, 0]) % 1000
        tops.add(top)
        lefts.add(left)
        torch.testing.assert_close(crops[i], imgs[i, :, top:top + 8, left:left + 8])
    assert len(tops) > 1 and len(lefts) > 1 and max(tops) <= 4
    torch.testing.assert_close(center_crop(imgs, 8), imgs[:, :, 2:10, 2:10])
    shifted = random_shift(imgs, 2, gen)
    assert shifted.shape == imgs.shape
    padded = torch.nn.functional.pad(imgs, (2, 2, 2, 2), mode="replicate")
    for i in range(16):
        found = any(torch.equal(shifted[i], padded[i, :, t:t + 12, s:s + 12])
                    for t in range(5) for s in range(5))
        assert found
    u8 = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    assert random_shift(u8, 4, gen).dtype == torch.uint8
    torch.testing.assert_close(random_shift(u8, 0, gen), u8)


# ---------------------------------------------------------------------- robustness
def test_nan_reward_raises_and_leaves_parameters() -> None:
    agent = _pixel_agent()
    before = {k: v.clone() for k, v in agent.state_tensors().items() if k.startswith("online")}
    batch = _pixel_batch(agent)
    batch["n_step_return"][0] = np.nan
    with pytest.raises(NonFiniteLossError, match="critic loss"):
        agent.update(batch)
    after = agent.state_tensors()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)
    assert agent.num_updates == 0


def test_bad_batches() -> None:
    agent = _pixel_agent()
    batch = _pixel_batch(agent)
    with pytest.raises(ValueError, match="action_shape"):
        agent.update({**batch, "action": np.zeros(8, np.int64)})
    with pytest.raises(KeyError, match="next_obs"):
        agent.update({k: v for k, v in batch.items() if k != "next_obs"})
    with pytest.raises(ValueError, match="invalid SACConfig"):
        SACConfig(augmentation="flip")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    agent = _pixel_agent(kind="pad11", size=48)
    for i in range(3):
        agent.update(_pixel_batch(agent, seed=i))
    state: dict[str, Any] = dict(agent.state_tensors())
    save_checkpoint(tmp_path / "c", state, {"agent_state": agent.state_meta()})
    tensors, meta = load_checkpoint(tmp_path / "c")
    clone = _pixel_agent(kind="pad11", size=48)
    clone.load_state_tensors(tensors, meta["agent_state"])
    assert clone.num_updates == 3 and clone.alpha == pytest.approx(agent.alpha)
    cloned = clone.state_tensors()
    for k, v in agent.state_tensors().items():
        torch.testing.assert_close(cloned[k], v, msg=k)
    agent.generator.manual_seed(5)
    clone.generator.manual_seed(5)
    m1 = agent.update(_pixel_batch(agent, seed=9)).metrics
    m2 = clone.update(_pixel_batch(agent, seed=9)).metrics
    assert m1 == pytest.approx(m2)
    cloned = clone.state_tensors()
    for k, v in agent.state_tensors().items():
        torch.testing.assert_close(cloned[k], v, msg=k)
    other = SACAgent(SACConfig(hidden_dim=16, batch_size=8), (6, 48, 48), 3,
                     PixelEncoderConfig(kind="pad11", num_filters=8, feature_dim=10))
    with pytest.raises(ValueError, match="action_dim"):
        other.load_state_tensors(tensors, meta["agent_state"])
    with pytest.raises(ValueError, match="does not fit"):
        other.load_state_tensors(tensors)


def test_frozen_state_round_trip(tmp_path: Path) -> None:
    agent = _pixel_agent()
    agent.set_encoder_frozen(True)
    agent.update(_pixel_batch(agent))
    clone = _pixel_agent()
    clone.load_state_tensors(agent.state_tensors(), agent.state_meta())
    assert clone.encoder_frozen
    assert not any(p.requires_grad for p in clone.encoder.convs.parameters())


# ---------------------------------------------------------------------- learning
@pytest.mark.slow
def test_learns_pendulum_from_states() -> None:
    """State SAC on Pendulum-v1: random policy scores about -1200; after 3k steps SAC's
    deterministic policy should be far better (the swing-up is learned around 2-5k steps)."""
    env = gym.make("Pendulum-v1")
    lr = 1e-3
    cfg = SACConfig(actor_lr=lr, critic_lr=lr, encoder_lr=lr, alpha_lr=lr, hidden_dim=128,
                    batch_size=128, augmentation="none")
    agent = SACAgent(cfg, (3,), 1, seed=0)
    steps, warmup = 3500, 500
    obs_buf = np.zeros((steps, 3), np.float32)
    next_buf = np.zeros((steps, 3), np.float32)
    act_buf = np.zeros((steps, 1), np.float32)
    rew_buf = np.zeros(steps, np.float32)
    disc_buf = np.zeros(steps, np.float32)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for t in range(steps):
        a = rng.uniform(-1, 1, (1,)).astype(np.float32) if t < warmup else agent.act(obs[None])[0]
        nxt, r, term, trunc, _ = env.step(2.0 * a)
        obs_buf[t], act_buf[t], rew_buf[t], next_buf[t] = obs, a, r, nxt
        disc_buf[t] = 0.0 if term else cfg.gamma
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
        if t >= warmup:
            i = rng.integers(0, t + 1, cfg.batch_size)
            agent.update({"obs": obs_buf[i], "action": act_buf[i], "next_obs": next_buf[i],
                          "n_step_return": rew_buf[i], "bootstrap_discount": disc_buf[i]})
    returns = []
    for e in range(5):
        obs, _ = env.reset(seed=1000 + e)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(2.0 * agent.act(obs[None], deterministic=True)[0])
            total += float(r)
            done = term or trunc
        returns.append(total)
    assert np.mean(returns) > -700, returns  # random actions: about -1200
