from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.agents.r2d2.losses import n_step_double_q_target
from rltransfer.errors import NonFiniteLossError
from rltransfer.nets.value_transforms import inverse_value_rescale, value_rescale
from rltransfer.replay import FrameStacker, TransitionReplay

SMALL = dict(feature_dim=16, hidden=16)



def _agent(obs_shape=(2, 5, 5), num_actions=3, seed=0, **overrides) -> R2D2Agent:
    torch.manual_seed(seed)
    return R2D2Agent(R2D2Config(**{**SMALL, **overrides}), obs_shape, 1.0, num_actions)


def _batch(rng: np.random.Generator, b: int = 8, obs_shape=(2, 5, 5), num_actions=3):
    return {
        "obs": rng.integers(0, 2, (b, *obs_shape), dtype=np.uint8),
        "next_obs": rng.integers(0, 2, (b, *obs_shape), dtype=np.uint8),
        "action": rng.integers(0, num_actions, b),
        "agent_action": rng.integers(0, num_actions, b),
        "extra": rng.random(b) < 0.3,
        "n_step_return": rng.normal(size=b).astype(np.float32),
        "bootstrap_discount": np.full(b, 0.9, np.float32),
        "weights": rng.uniform(0.5, 1.0, b).astype(np.float32),
    }


# ---------------------------------------------------------------------- value rescaling
def test_value_rescale_hand_values() -> None:
    x = torch.tensor([0.0, 3.0, -3.0, 8.0, 0.44], dtype=torch.float64)
    expected = [0.0, 1.0 + 0.003, -1.003, 2.0 + 0.008, 0.2 + 0.00044]  # sqrt(1.44) = 1.2
    torch.testing.assert_close(value_rescale(x), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(
        inverse_value_rescale(torch.tensor([1.003, -2.008, 0.0], dtype=torch.float64)),
        torch.tensor([3.0, -8.0, 0.0], dtype=torch.float64),
    )


def test_value_rescale_round_trip() -> None:
    x = torch.tensor([-1e4, -50.0, -1.0, -1e-3, 0.0, 1e-3, 0.7, 12.0, 1e5], dtype=torch.float64)
    for eps in (1e-3, 1e-2, 0.0):
        torch.testing.assert_close(inverse_value_rescale(value_rescale(x, eps), eps), x)
        torch.testing.assert_close(value_rescale(inverse_value_rescale(x, eps), eps), x)


def test_n_step_double_q_target_hand_example() -> None:
    ret = torch.tensor([1.0, 2.0])
    disc = torch.tensor([0.5, 0.25])
    q_online = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # argmax: 1, 0
    q_target = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    y = n_step_double_q_target(ret, disc, q_online, q_target, value_rescaling=False)
    torch.testing.assert_close(y, torch.tensor([1 + 0.5 * 20, 2 + 0.25 * 30]))
    y = n_step_double_q_target(ret, disc, None, q_target, double_q=False, value_rescaling=False)
    torch.testing.assert_close(y, torch.tensor([1 + 0.5 * 20, 2 + 0.25 * 40]))
    # Rescaled: Q_target entries are h(3) = 1.003 and h(8) = 2.008; online picks index 0.
    f64 = dict(dtype=torch.float64)
    y = n_step_double_q_target(
        torch.tensor([1.0], **f64), torch.tensor([0.5], **f64),
        torch.tensor([[5.0, 1.0]], **f64), torch.tensor([[1.003, 2.008]], **f64),
    )
    # y = h(1 + 0.5 * 3) = h(2.5) = sqrt(3.5) - 1 + 0.0025
    assert y.item() == pytest.approx(math.sqrt(3.5) - 1 + 0.0025, rel=1e-5)
    # Termination: discount 0 gives h(R).
    y = n_step_double_q_target(torch.tensor([3.0]), torch.tensor([0.0]),
                               torch.tensor([[1e3, 0.0]]), torch.tensor([[1e3, 0.0]]))
    assert y.item() == pytest.approx(1.003, rel=1e-6)


# ---------------------------------------------------------------------- loss, a+
def _constant_q_agent(b_v: float, b_a: list[float]) -> R2D2Agent:
    """Agent whose Q is V + A - mean(A) with V = b_v, A = b_a for every observation."""
    agent = _agent(obs_shape=(1, 1, 3), num_actions=len(b_a))
    head = agent.head
    with torch.no_grad():
        head.value[2].weight.zero_()
        head.value[2].bias.fill_(b_v)
        head.advantage[2].weight.zero_()
        head.advantage[2].bias.copy_(torch.tensor(b_a))
    agent.sync_target()
    return agent


def test_extra_action_target_sharing_hand_computed() -> None:
    # |A| = 3 plus a+ as index 3. Q = [-0.5, 0.5, 1.5, -1.5] everywhere.
    agent = _constant_q_agent(0.0, [1.0, 2.0, 3.0, 0.0])
    captured: list[torch.Tensor] = []

    def hook(module, inputs, out):
        if out.requires_grad:
            out.retain_grad()
            captured.append(out)

    agent.head.register_forward_hook(hook)
    batch = {
        "obs": np.zeros((3, 1, 1, 3), np.uint8),
        "next_obs": np.zeros((3, 1, 1, 3), np.uint8),
        "action": np.array([1, 2, 0]),  # executed env actions (a' for row 1)
        "agent_action": np.array([1, 3, 0]),  # row 1 chose a+
        "extra": np.array([False, True, False]),
        "n_step_return": np.array([3.0, 3.0, 0.0], np.float32),
        "bootstrap_discount": np.zeros(3, np.float32),  # y = h(R): 1.003, 1.003, 0
        "weights": np.array([1.0, 0.5, 0.25], np.float32),
    }
    result = agent.update(batch)
    metrics = result.metrics
    d0 = 0.5 - 1.003
    d1_env, d1_plus = 1.5 - 1.003, -1.5 - 1.003
    d2 = -0.5
    loss = (0.5 * d0**2 + 0.5 * 0.5 * (d1_env**2 + d1_plus**2) + 0.5 * 0.25 * d2**2) / 3
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(result.priorities, [0.503, 2.503, 0.5], rtol=1e-5)
    assert metrics["td_abs_mean"] == pytest.approx((0.503 + 0.497 + 0.5) / 3, rel=1e-5)
    grad = captured[-1].grad
    expected = torch.zeros(3, 4)
    expected[0, 1] = d0 / 3
    expected[1, 2] = 0.5 * d1_env / 3  # Q(s, a') regresses the shared target ...
    expected[1, 3] = 0.5 * d1_plus / 3  # ... and so does Q(s, a+)
    expected[2, 0] = 0.25 * d2 / 3
    torch.testing.assert_close(grad, expected)


def test_update_learns_towards_target_and_counts() -> None:
    agent = _agent(lr=1e-2)
    rng = np.random.default_rng(0)
    batch = _batch(rng)
    batch["bootstrap_discount"][:] = 0.0
    results = [agent.update(batch) for _ in range(30)]
    losses = [r.metrics["loss"] for r in results]
    assert losses[-1] < 0.5 * losses[0]
    assert agent.num_updates == 30
    prio = results[-1].priorities
    assert prio is not None and prio.shape == (8,) and prio.dtype == np.float32
    assert not hasattr(agent, "last_priorities")  # returned, not stashed (UpdateResult)


def test_target_network_copied_every_period() -> None:
    agent = _agent(target_update_period_updates=3, lr=1e-2)
    rng = np.random.default_rng(1)
    target_before = [p.clone() for p in agent.target.parameters()]
    for _ in range(2):
        agent.update(_batch(rng))
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.target.parameters(),
                                                 strict=True))
    agent.update(_batch(rng))
    for a, b in zip(agent.online.parameters(), agent.target.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(target_before, agent.target.parameters(),
                                                     strict=True))


def test_nan_loss_raises_and_leaves_parameters_unchanged() -> None:
    agent = _agent()
    rng = np.random.default_rng(2)
    agent.update(_batch(rng))
    before = {k: v.clone() for k, v in agent.state_tensors().items()}
    batch = _batch(rng)
    batch["n_step_return"][3] = np.nan
    with pytest.raises(NonFiniteLossError, match="update 2"):
        agent.update(batch)
    after = agent.state_tensors()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert agent.num_updates == 1


def test_bad_batches_raise_clear_errors() -> None:
    agent = _agent()
    batch = _batch(np.random.default_rng(3))
    batch["agent_action"][0] = 3
    with pytest.raises(ValueError, match="num_actions"):
        agent.update(batch)
    with pytest.raises(KeyError, match="next_obs"):
        agent.update({k: v for k, v in batch.items() if k != "next_obs"})
    with pytest.raises(ValueError, match="stacked"):
        agent.q_values(np.zeros((1, 1, 5, 5), np.uint8))
    with pytest.raises(ValueError, match="R2D2Config"):
        R2D2Config(gamma=1.5)


def test_torso_kind_validated_and_mlp_torso_used() -> None:
    with pytest.raises(ValueError, match="torso must be one of auto, mlp, small_cnn"):
        R2D2Config(torso="resnet")
    # configs saved before the field existed (no "torso" key) still build, as "auto"
    old = {k: v for k, v in dataclasses.asdict(R2D2Config()).items() if k != "torso"}
    assert R2D2Config(**old).torso == "auto"
    assert isinstance(_agent().torso.encoder[0], torch.nn.Conv2d)  # auto on 5x5: small CNN
    agent = _agent(torso="mlp")
    encoder = agent.torso.encoder
    assert not any(isinstance(m, torch.nn.Conv2d) for m in encoder.modules())
    assert encoder[1].in_features == 2 * 5 * 5 and encoder[1].out_features == 16
    assert agent.q_values(np.zeros((3, 2, 5, 5), np.uint8)).shape == (3, 3)


def test_sequence_overlap_must_cover_n_step() -> None:
    """R2D2Config refuses an LSTM config whose overlap is below n_step, and the sequence
    replay shows why: steps whose bootstrap falls past a sequence's end are masked out, so
    with overlap < n_step some steps are in no sequence's loss."""
    from rltransfer.core.config import ConfigError
    from rltransfer.replay import SequenceReplay

    with pytest.raises(ConfigError, match=r"sequence_overlap \(1\) must be >= n_step \(2\)"):
        R2D2Config(core="lstm", sequence_length=4, burn_in=0, sequence_overlap=1, n_step=2)
    assert R2D2Config(core="lstm", sequence_length=4, burn_in=0, sequence_overlap=2,
                      n_step=2).sequence_overlap == 2
    # The feedforward agent replays transitions: the sequence fields are unused there.
    assert R2D2Config(core="feedforward", sequence_overlap=1, n_step=2).n_step == 2

    def trained_steps(overlap: int) -> set[int]:
        replay = SequenceReplay(num_envs=1, capacity_per_env=64, frame_shape=(1, 1, 1),
                                state_dim=0, sequence_length=4, burn_in=0,
                                sequence_overlap=overlap, n_step=2, gamma=0.5)
        for _ in range(20):  # one episode, never ends
            replay.add(np.zeros((1, 1, 1, 1), np.uint8), np.zeros(1, int), None, None,
                       np.ones(1), np.zeros(1, bool), np.zeros(1, bool))
        ids = replay.eligible_indices()
        batch = replay.gather(ids)
        steps: set[int] = set()
        for start, mask in zip(replay.step_of_index(ids), batch["loss_mask"], strict=True):
            steps.update(int(start) + int(i) for i in np.flatnonzero(mask))
        return steps

    # Window of 4 steps, n = 2: only window steps 0 and 1 bootstrap inside it.
    # overlap 1: sequences start at 0, 3, 6, ...: steps 2, 5, 8, ... are never trained.
    assert trained_steps(1) == {0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16}
    # overlap 2 = n: starts 0, 2, ..., 16 (the last complete window, 16..19): steps 0..17.
    assert trained_steps(2) == set(range(18))


def test_set_frozen_excludes_modules_from_training() -> None:
    agent = _agent(lr=1e-2)
    rng = np.random.default_rng(4)
    agent.update(_batch(rng))
    agent.set_frozen({"torso"})
    assert agent.frozen == {"torso"}
    assert all(not p.requires_grad for p in agent.torso.parameters())
    core_param = next(agent.core.parameters())
    assert core_param in agent.optimizer.state  # moments of still-trainable params kept
    torso_before = [p.clone() for p in agent.torso.parameters()]
    head_before = [p.clone() for p in agent.head.parameters()]
    agent.update(_batch(rng))
    assert all(torch.equal(a, b) for a, b in zip(torso_before, agent.torso.parameters(),
                                                 strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, agent.head.parameters(),
                                                     strict=True))
    with pytest.raises(ValueError, match="modules are"):
        agent.set_frozen({"lstm"})
    with pytest.raises(ValueError, match="every module"):
        agent.set_frozen({"torso", "core", "head"})
    agent.set_frozen(set())
    assert all(p.requires_grad for p in agent.torso.parameters())
    assert set(agent.named_modules_for_transfer()) == {"torso", "core", "head"}


def test_checkpoint_round_trip_gives_identical_q_and_next_update() -> None:
    rng = np.random.default_rng(5)
    a = _agent(seed=0, target_update_period_updates=4)
    a.set_frozen({"core"})
    for _ in range(3):
        a.update(_batch(rng))
    blob = st_save(a.state_tensors())  # must be safetensors-compatible
    meta = a.state_meta()
    assert any(k.startswith("optimizer.") and k.endswith(".exp_avg_sq") for k in st_load(blob))
    b = _agent(seed=1, target_update_period_updates=4)
    b.load_state_tensors(st_load(blob), meta)
    assert b.num_updates == 3 and b.frozen == {"core"}
    obs = rng.integers(0, 2, (4, 2, 5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(a.q_values(obs), b.q_values(obs))
    batch = _batch(rng)
    ra, rb = a.update(batch), b.update(batch)  # update 4 also syncs the target
    assert ra.metrics == rb.metrics
    np.testing.assert_array_equal(ra.priorities, rb.priorities)
    sa, sb = a.state_tensors(), b.state_tensors()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    other = _agent(obs_shape=(2, 6, 6))
    with pytest.raises(ValueError, match="does not fit"):
        other.load_state_tensors(sa)
    with pytest.raises(ValueError, match="num_actions"):
        _agent(num_actions=4).load_state_tensors(sa, a.state_meta())


# ---------------------------------------------------------------------- behaviour
class Corridor:
    """Vector corridor of ``length`` cells with gymnasium NEXT_STEP autoreset.

    Start at cell 0; action 1 moves right, 0 left; reaching the last cell gives reward 1 and
    terminates; episodes are truncated after ``max_steps``. Observation: one-hot uint8
    [B, 1, 1, length].
    """

    def __init__(self, num_envs: int, length: int, max_steps: int) -> None:
        self.n, self.length, self.max_steps = num_envs, length, max_steps
        self.pos = np.zeros(num_envs, np.int64)
        self.t = np.zeros(num_envs, np.int64)
        self.needs_reset = np.zeros(num_envs, bool)

    def obs(self) -> np.ndarray:
        o = np.zeros((self.n, 1, 1, self.length), np.uint8)
        o[np.arange(self.n), 0, 0, self.pos] = 1
        return o

    def step(self, actions: np.ndarray):
        reset = self.needs_reset.copy()
        self.pos = np.where(reset, 0, np.clip(self.pos + 2 * actions - 1, 0, self.length - 1))
        self.t = np.where(reset, 0, self.t + 1)
        term = ~reset & (self.pos == self.length - 1)
        trunc = ~reset & ~term & (self.t >= self.max_steps)
        self.needs_reset = term | trunc
        return self.obs(), term.astype(np.float32), term, trunc


@pytest.mark.slow
def test_agent_learns_sparse_reward_corridor() -> None:
    torch.manual_seed(0)
    length, num_envs = 7, 8
    cfg = R2D2Config(feature_dim=32, hidden=32, lr=1e-3, gamma=0.9, n_step=3,
                     target_update_period_updates=50, batch_size=32)
    agent = R2D2Agent(cfg, (1, 1, length), 1.0, num_actions=2)
    replay = TransitionReplay(num_envs, 1000, (1, 1, length), frame_stack=1, n_step=cfg.n_step,
                              gamma=cfg.gamma, priority_exponent=cfg.priority_exponent,
                              importance_exponent=cfg.importance_exponent)
    stacker = FrameStacker(num_envs, (1, 1, length), 1)
    env = Corridor(num_envs, length, max_steps=3 * length)
    rng = np.random.default_rng(0)
    obs = env.obs()
    first = np.ones(num_envs, bool)
    autoreset = np.zeros(num_envs, bool)
    goals = 0
    for step in range(700):
        stacked = stacker.push(obs, first)
        greedy = agent.q_values(stacked).argmax(axis=1)
        explore = rng.random(num_envs) < 0.3
        actions = np.where(explore, rng.integers(0, 2, num_envs), greedy)
        next_obs, reward, term, trunc = env.step(actions)
        goals += int(term.sum())
        replay.add(obs, actions, None, None, reward, term, trunc)
        first, autoreset, obs = autoreset, term | trunc, next_obs
        if step >= 50 and replay.can_sample():
            batch = replay.sample(cfg.batch_size, rng)
            result = agent.update(batch)
            replay.update_priorities(batch["indices"], result.priorities)
    assert goals > 0
    # Greedy rollout from the start reaches the goal in the minimum number of steps.
    probe = Corridor(1, length, max_steps=3 * length)
    o = probe.obs()
    for _ in range(length - 1):
        o, _, term, _ = probe.step(agent.q_values(o).argmax(axis=1))
    assert term[0], "greedy policy did not reach the goal in length-1 steps"
    q = agent.q_values(np.eye(length, dtype=np.uint8)[:-1].reshape(-1, 1, 1, length))
    assert np.all(q[:, 1] > q[:, 0])


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_grad_norm_matches_torch_bit_for_bit(max_norm: float) -> None:
    # Clipped (max_norm below the norm) and not (above it: the scaling by 1 is skipped).
    from rltransfer.agents.r2d2.optim import clip_grad_norm

    torch.manual_seed(0)
    grads = [torch.randn(7, 5), torch.randn(5), torch.randn(3, 7) * 1e-3]
    mine = [torch.zeros_like(g, requires_grad=True) for g in grads]
    theirs = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for a, b, g in zip(mine, theirs, grads, strict=True):
        a.grad, b.grad = g.clone(), g.clone()
    norm = clip_grad_norm(mine, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert norm == float(expected)
    for a, b in zip(mine, theirs, strict=True):
        assert a.grad is not None and b.grad is not None
        assert torch.equal(a.grad, b.grad)
    assert (norm > max_norm) == (max_norm == 1e-3)


@pytest.mark.parametrize("eps", [1e-3, 1e-5, 1e-30, 0.0])
def test_adam_step_matches_torch_adam_bit_for_bit(eps: float) -> None:
    # Zero gradients on part of a tensor (v = 0, the clamped sqrt), tiny ones (v denormal or
    # near the clamp's floor), a parameter without a gradient, a second group; eps 1e-30 and
    # 0 take the unclamped path.
    from rltransfer.agents.r2d2.optim import adam_step

    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 7), (4,)]
    init = [torch.randn(s) for s in shapes]
    mine = [torch.nn.Parameter(x.clone()) for x in init]
    theirs = [torch.nn.Parameter(x.clone()) for x in init]

    def make(ps: list[torch.nn.Parameter]) -> torch.optim.Adam:
        return torch.optim.Adam([{"params": ps[:3]}, {"params": ps[3:], "lr": 3e-3}],
                                lr=1e-4, eps=eps, foreach=True)

    opt_mine, opt_theirs = make(mine), make(theirs)
    for k in range(40):
        scale = (1.0, 1e-21, 1e-14, 1e-13, 1e-16)[k % 5]
        grads = [torch.randn(s) * scale for s in shapes]
        grads[0][:, :3] = 0.0
        for ps in (mine, theirs):
            for i, (p, g) in enumerate(zip(ps, grads, strict=True)):
                p.grad = None if (i == 1 and k % 4 == 1) else g.clone()
        adam_step(opt_mine)
        opt_theirs.step()
        for a, b in zip(mine, theirs, strict=True):  # eps 0: 0 / 0 = NaN in both
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(mine, theirs, strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt_mine.state[a][key], opt_theirs.state[b][key],
                                       rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("torso", ["mlp", "small_cnn"])
@pytest.mark.parametrize("dueling", [True, False])
def test_feedforward_q_equals_module_calls_and_runs_hooks(torso: str, dueling: bool) -> None:
    from rltransfer.agents.r2d2.networks import feedforward_q

    agent = _agent(obs_shape=(2, 6, 6), torso=torso, dueling=dueling)
    net = agent.online
    obs = torch.from_numpy(np.random.default_rng(0).integers(0, 3, (5, 2, 6, 6), dtype=np.uint8))
    by_modules = net["head"](net["core"](net["torso"](obs), None)[0])
    assert torch.equal(feedforward_q(net, obs), by_modules)
    seen: list[str] = []
    handle = net["core"].register_forward_hook(lambda *_: seen.append("core"))
    assert torch.equal(feedforward_q(net, obs), by_modules) and seen == ["core"]
    handle.remove()
    with pytest.raises(ValueError, match="torso expects"):
        feedforward_q(net, obs[:, :1])
