"""R2D2's recurrent path: LSTM core, acting with state, sequence updates, priorities, transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rltransfer.agents.agent_policy import (
    AgentPolicy,
    RecurrentPolicyState,
    load_policy,
    policy_tensors,
)
from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.agents.r2d2.losses import sequence_priority
from rltransfer.agents.r2d2.transfer import initialise_from
from rltransfer.core.checkpoint import save_checkpoint
from rltransfer.core.config import to_dict
from rltransfer.nets.cores import LSTMCore
from rltransfer.replay import SequenceReplay

CFG = dict(core="lstm", torso="mlp", feature_dim=8, hidden=8, lstm_hidden=6, n_step=2,
           sequence_length=5, burn_in=2, sequence_overlap=2, gamma=0.9, batch_size=4)
OBS = (2, 2, 2)



def _agent(num_actions: int = 3, num_env_actions: int | None = None, seed: int = 0,
           **kw) -> R2D2Agent:
    torch.manual_seed(seed)
    return R2D2Agent(R2D2Config(**{**CFG, **kw}), OBS, 1.0, num_actions,
                     num_env_actions=num_env_actions)


def _filled_replay(agent: R2D2Agent, steps: int = 40, seed: int = 0,
                   extra_prob: float = 0.0) -> SequenceReplay:
    cfg = agent.config
    r = SequenceReplay(2, 60, (2, 2, 2), agent.state_dim, sequence_length=cfg.sequence_length,
                       burn_in=cfg.burn_in, sequence_overlap=cfg.sequence_overlap,
                       n_step=cfg.n_step, gamma=cfg.gamma)
    rng = np.random.default_rng(seed)
    state = agent.initial_state(2)
    for _ in range(steps):
        a = rng.integers(0, agent.num_env_actions, 2)
        extra = rng.random(2) < extra_prob
        r.add(rng.integers(0, 2, (2, 2, 2, 2), dtype=np.uint8), a,
              np.where(extra, agent.num_actions - 1, a), extra, rng.normal(size=2),
              rng.random(2) < 0.1, np.zeros(2, bool), core_state=state,
              intrinsic_reward=rng.random(2))
        state = rng.normal(size=state.shape).astype(np.float32)
    return r


# ---------------------------------------------------------------------- core
def test_lstm_core_shapes_inputs_and_reset_on_first() -> None:
    torch.manual_seed(0)
    core = LSTMCore(4, num_actions=3, hidden=5)
    assert core.input_dim == 4 + 3 + 2 and core.state_dim == 10
    x = core.core_inputs(torch.zeros(2, 4), torch.tensor([-1, 2]), torch.tensor([1.5, 0.0]),
                         torch.tensor([0.0, 0.25]))
    np.testing.assert_array_equal(x[:, 4:].numpy(), [[0, 0, 0, 1.5, 0], [0, 0, 1, 0, 0.25]])
    feats = torch.randn(6, 2, 4)
    prev = torch.randint(0, 3, (6, 2))
    out, state = core(feats, None, prev)
    assert out.shape == (6, 2, 5) and state.shape == (2, 10)
    # The sequence call equals stepping one at a time.
    s = core.initial_state(2)
    for t in range(6):
        o, s = core(feats[t], s, prev[t])
    torch.testing.assert_close(o, out[-1])
    torch.testing.assert_close(s, state)
    # first resets the state: same output as from zeros.
    garbage = torch.randn(2, 10)
    o1, _ = core(feats[0], garbage, prev[0], first=torch.tensor([True, False]))
    o0, _ = core(feats[0], None, prev[0])
    torch.testing.assert_close(o1[0], o0[0])
    assert not torch.allclose(o1[1], o0[1])
    # Resets inside a sequence (step-by-step path) match separate unrolls.
    first = torch.zeros(6, 2, dtype=torch.bool)
    first[3] = True
    out_r, _ = core(feats, garbage, prev, first=first)
    tail, _ = core(feats[3:], None, prev[3:])
    torch.testing.assert_close(out_r[3:], tail)
    with pytest.raises(ValueError, match="prev_action"):
        core(feats[0], None, torch.tensor([3, 0]))


def test_act_q_carries_and_resets_state() -> None:
    agent = _agent()
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 2, (2, *OBS), dtype=np.uint8)
    s0 = agent.initial_state(2)
    q1, s1 = agent.act_q(obs, s0, np.ones(2, bool))
    assert q1.shape == (2, 3) and s1.shape == (2, 12) and np.abs(s1).sum() > 0
    q2, _ = agent.act_q(obs, s1, np.array([True, False]), np.array([2, 1]),
                        np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(q2[0], q1[0], rtol=1e-6)  # reset: prev inputs ignored too
    assert not np.allclose(q2[1], q1[1])
    with pytest.raises(ValueError, match="act_q"):
        agent.q_values(obs)


# ---------------------------------------------------------------------- learning
def test_priority_mix_by_hand() -> None:
    d = torch.tensor([[1.0, 2.0, 3.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, True, False], [False, False, False, False]])
    # 0.9 * 3 + 0.1 * mean(1, 2, 3) = 2.7 + 0.2; a row without steps gives 0.
    torch.testing.assert_close(sequence_priority(d, m, 0.9), torch.tensor([2.9, 0.0]))


@pytest.mark.parametrize("double_q", [True, False])
def test_sequence_update_matches_hand_targets_with_a_plus(double_q: bool) -> None:
    agent = _agent(num_actions=4, num_env_actions=3, value_rescaling=False, double_q=double_q)
    with torch.no_grad():  # a target network that differs from the online one
        for p in agent.target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    replay = _filled_replay(agent, extra_prob=0.4)
    batch = replay.sample(4, np.random.default_rng(2))
    assert batch["extra"].any() and batch["loss_mask"].any()
    bi = agent.config.burn_in
    with torch.no_grad():
        q = agent.unroll(agent.online, batch, grad=False).numpy()
        qt = agent.unroll(agent.target, batch, grad=False).numpy()
    mask = batch["loss_mask"][:, bi:]
    loss_rows, prios = [], []
    for i in range(4):
        per_step, d_abs = [], []
        for k in np.flatnonzero(mask[i]):
            b = batch["bootstrap_index"][i, bi + k] - bi
            a_star = q[i, b].argmax() if double_q else qt[i, b].argmax()
            y = batch["n_step_return"][i, bi + k] + batch["bootstrap_discount"][i, bi + k] * qt[
                i, b, a_star]
            delta = q[i, k, batch["action"][i, bi + k]] - y
            dplus = q[i, k, batch["agent_action"][i, bi + k]] - y if batch["extra"][
                i, bi + k] else 0.0
            per_step.append(0.5 * (delta**2 + dplus**2))
            d_abs.append(max(abs(delta), abs(dplus)))
        loss_rows.append(batch["weights"][i] * np.sum(per_step) / max(1, len(per_step)))
        prios.append(0.9 * max(d_abs) + 0.1 * np.mean(d_abs) if d_abs else 0.0)
    result = agent.update(batch)
    np.testing.assert_allclose(result.metrics["loss"], np.mean(loss_rows), rtol=1e-5)
    np.testing.assert_allclose(result.priorities, prios, rtol=1e-5, atol=1e-6)
    assert agent.num_updates == 1


def test_front_padded_burn_in_leaves_the_stored_state_alone() -> None:
    agent = _agent()
    batch = _filled_replay(agent).sample(4, np.random.default_rng(0))
    changed = {k: v.copy() for k, v in batch.items()}
    bi = agent.config.burn_in
    out = ~batch["in_episode"][:, :bi]
    changed["obs"][:, :bi][out] = 1
    changed["prev_action"][:, :bi][out] = 2
    with torch.no_grad():
        a = agent.unroll(agent.online, batch, grad=False)
        b = agent.unroll(agent.online, changed, grad=False)
    torch.testing.assert_close(a, b)
    # ...while in-episode burn-in steps do change the result.
    if batch["in_episode"][:, :bi].any():
        changed["obs"][:, :bi] = 1 - batch["obs"][:, :bi]
        with torch.no_grad():
            c = agent.unroll(agent.online, changed, grad=False)
        assert not torch.allclose(a, c)


def test_recurrent_agent_learns_and_roundtrips_state() -> None:
    agent = _agent()
    replay = _filled_replay(agent)
    rng = np.random.default_rng(0)
    first = None
    for _ in range(30):
        batch = replay.sample(4, rng)
        result = agent.update(batch)
        replay.update_priorities(batch["indices"], result.priorities)
        m = result.metrics
        first = first if first is not None else m["loss"]
    assert np.isfinite(m["loss"])
    other = _agent(seed=5)
    other.load_state_tensors(st_load(st_save(agent.state_tensors())), agent.state_meta())
    obs = np.zeros((2, *OBS), np.uint8)
    np.testing.assert_allclose(other.act_q(obs, None, np.ones(2, bool))[0],
                               agent.act_q(obs, None, np.ones(2, bool))[0])
    with pytest.raises(ValueError, match="core"):
        _agent(core="feedforward").load_state_tensors(agent.state_tensors(), agent.state_meta())


# ---------------------------------------------------------------------- transfer
def _save_pretrained(tmp_path, agent: R2D2Agent):
    arch = {"kind": "r2d2", "env_id": "test", "task": None, "obs_shape": list(OBS),
            "frame_shape": [2, 2, 2], "frame_stack": 1, "obs_scale": 1.0,
            "num_actions": agent.num_actions, "num_env_actions": agent.num_env_actions,
            "agent_config": to_dict(agent.config)}
    return save_checkpoint(tmp_path / "final", dict(policy_tensors(agent)),
                           {"architecture": arch})


def test_recurrent_prior_and_partial_full_init(tmp_path) -> None:
    pre = _agent(seed=1)
    path = _save_pretrained(tmp_path, pre)
    # A recurrent pretrained policy as a Policy (BT prior): state carried, reset on first.
    policy = load_policy(path)
    state = policy.reset(2)
    assert isinstance(state, RecurrentPolicyState)
    obs = np.random.default_rng(0).integers(0, 2, (2, *OBS), dtype=np.uint8)
    a1, state = policy.act(obs, state, np.ones(2, bool))
    np.testing.assert_array_equal(state.prev_action, a1)
    assert np.abs(state.core).sum() > 0
    # Partial init into a BT agent with a+ (4 Q outputs, 3 env actions): torso + LSTM.
    new = _agent(num_actions=4, num_env_actions=3, seed=2)
    initialise_from(new, path, "partial", 3)
    for name in ("torso", "core"):
        for k, v in pre.online[name].state_dict().items():
            torch.testing.assert_close(new.online[name].state_dict()[k], v)
            torch.testing.assert_close(new.target[name].state_dict()[k], v)
    head_pre, head_new = pre.online["head"].state_dict(), new.online["head"].state_dict()
    assert any(head_pre[k].shape != v.shape or not torch.equal(head_pre[k], v)
               for k, v in head_new.items())  # head stays random
    full = _agent(seed=3)
    initialise_from(full, path, "full", 3)
    q_pre, _ = pre.act_q(obs, None, np.ones(2, bool))
    q_full, _ = full.act_q(obs, None, np.ones(2, bool))
    np.testing.assert_allclose(q_full, q_pre, rtol=1e-6)
    # The greedy policy over the BT agent resolves a+ with the recurrent prior.
    bt = AgentPolicy(new, 3, prior=policy)
    st = bt.reset(2)
    acts, st = bt.act(obs, st, np.ones(2, bool))
    assert acts.shape == (2,) and acts.max() < 3 and isinstance(st.prior, RecurrentPolicyState)
