"""Tests of the batched EfficientZero MCTS against hand-built models with known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.mcts import (
    BatchedMCTS,
    MCTSConfig,
    ModelOutput,
    SearchInputError,
    select_action,
)
from rltransfer.core.config import ConfigError

torch.set_num_threads(1)


class TableModel:
    """A deterministic MDP as a SearchModel: the latent [B, 1] holds the integer state.

    next_state [S, A] int, reward [S, A], value [S], logits [S, A]. The reward "LSTM" is exact:
    h holds the running value prefix (value_prefix = h_in + reward, h_out = value_prefix) and
    c counts the steps since the last reset, so a search that forgets to zero the hidden or to
    difference prefixes gets wrong rewards.
    """

    def __init__(self, next_state, reward, value, logits):
        self.next_state = torch.as_tensor(np.asarray(next_state), dtype=torch.int64)
        self.reward = np.asarray(reward, dtype=np.float64)
        self.value = np.asarray(value, dtype=np.float64)
        self.logits = np.asarray(logits, dtype=np.float64)
        self.calls: list[dict] = []

    def initial(self, states) -> ModelOutput:
        s = np.asarray(states, dtype=np.int64)
        b = len(s)
        return ModelOutput(
            latent=torch.as_tensor(s, dtype=torch.float32)[:, None],
            reward_hidden=(torch.zeros(1, b, 1), torch.zeros(1, b, 1)),
            value_prefix=np.zeros(b, dtype=np.float32),
            value=self.value[s].astype(np.float32),
            policy_logits=self.logits[s].astype(np.float32),
        )

    def recurrent_inference(self, latent, reward_hidden, actions) -> ModelOutput:
        s = latent[:, 0].long()
        h, c = reward_hidden
        self.calls.append({"states": s.numpy().copy(), "actions": actions.numpy().copy(),
                           "h": h.clone(), "c": c.clone()})
        assert actions.dtype == torch.int64
        nxt = self.next_state[s, actions]
        r = torch.as_tensor(self.reward[s.numpy(), actions.numpy()], dtype=torch.float32)
        prefix = h[0, :, 0] + r
        n = nxt.numpy()
        return ModelOutput(
            latent=nxt.to(torch.float32)[:, None],
            reward_hidden=(prefix[None, :, None].clone(), c + 1),
            value_prefix=prefix.numpy().astype(np.float32),
            value=self.value[n].astype(np.float32),
            policy_logits=self.logits[n].astype(np.float32),
        )


def two_path_mdp(values) -> TableModel:
    """Root 0: action 0 -> reward 1, absorbing state 1; action 1 -> reward 0, state 2, from which
    any action gives reward 3 -> absorbing state 3. The prior favours action 0 (p = 0.88)."""
    next_state = [[1, 2], [1, 1], [3, 3], [3, 3]]
    reward = [[1.0, 0.0], [0.0, 0.0], [3.0, 3.0], [0.0, 0.0]]
    logits = [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    return TableModel(next_state, reward, values, logits)


def random_mdp(seed: int, num_states: int = 40, num_actions: int = 5) -> TableModel:
    g = np.random.default_rng(seed)
    return TableModel(
        g.integers(0, num_states, size=(num_states, num_actions)),
        g.normal(size=(num_states, num_actions)),
        g.normal(size=num_states),
        2.0 * g.normal(size=(num_states, num_actions)),
    )


def node_states(tree, root_states, next_state) -> np.ndarray:
    """State of every expanded node, following the children arrays from the roots."""
    b, n, a = tree.children.shape
    states = np.full((b, n), -1)
    states[:, 0] = root_states
    for i in range(b):
        for node in range(n):  # parents always have smaller indices than their children
            for act in range(a):
                c = tree.children[i, node, act]
                if c >= 0:
                    states[i, c] = next_state[states[i, node], act]
    return states


def test_search_finds_delayed_reward_that_prior_and_greedy_miss():
    # uninformative values (0): only a 2-step lookahead reveals that action 1 is better
    model = two_path_mdp(values=[0.0, 0.0, 0.0, 0.0])
    model.logits[0] = [0.3, 0.0]  # prior 0.57 on the wrong action
    mcts = BatchedMCTS(MCTSConfig(num_simulations=100), num_actions=2)
    res = mcts.search(model, model.initial([0]), np.random.default_rng(0),
                      add_exploration_noise=False)
    # prior argmax and one-step reward both say action 0; the 2-step return says action 1
    assert np.argmax(model.logits[0]) == 0 and np.argmax(model.reward[0]) == 0
    assert res.visit_counts[0, 1] > 2 * res.visit_counts[0, 0]
    best = select_action(res.visit_counts, 1.0, np.random.default_rng(0), deterministic=True)
    assert best[0] == 1
    assert res.visit_counts.dtype == np.int64 and res.visit_counts.sum() == 100
    np.testing.assert_allclose(res.policy.sum(axis=1), 1.0, rtol=1e-6)


def test_search_overrules_a_strongly_wrong_prior_with_model_values():
    model = two_path_mdp(values=[0.0, 0.0, 3.0, 0.0])  # prior 0.88 on action 0
    res = BatchedMCTS(MCTSConfig(num_simulations=50), num_actions=2).search(
        model, model.initial([0]), np.random.default_rng(0), add_exploration_noise=False)
    assert res.visit_counts[0, 1] > 3 * res.visit_counts[0, 0]


def test_root_value_is_mean_of_backups_and_converges_to_optimal_value():
    gamma = 0.997
    v_star = [gamma * 3.0, 0.0, 3.0, 0.0]  # V*(0) = max(1 + 0, 0 + gamma * 3)
    model = two_path_mdp(values=v_star)
    errors = []
    for sims in (10, 50, 400):
        mcts = BatchedMCTS(MCTSConfig(num_simulations=sims, discount=gamma), num_actions=2)
        res = mcts.search(model, model.initial([0]), np.random.default_rng(0),
                          add_exploration_noise=False)
        n0, n1 = res.visit_counts[0]
        # every backup through action 1 returns V*(0) exactly, through action 0 returns 1
        expected = (v_star[0] * (1 + n1) + 1.0 * n0) / (sims + 1)
        np.testing.assert_allclose(res.root_values[0], expected, rtol=1e-5)
        errors.append(abs(float(res.root_values[0]) - v_star[0]))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.2  # ~8% of 400 visits still go to the suboptimal action


@pytest.mark.parametrize("horizon", [2, 5])
def test_value_prefix_differencing_and_hidden_reset(horizon):
    # one-action chain 0 -> 1 -> 2 -> 3 with rewards 1, 2, 4 and values 0.5, 10, 20, 30
    model = TableModel(next_state=[[1], [2], [3], [3]], reward=[[1.0], [2.0], [4.0], [0.0]],
                       value=[0.5, 10.0, 20.0, 30.0], logits=[[0.0]] * 4)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=3, discount=0.9, value_prefix_horizon=horizon),
                       num_actions=1)
    res = mcts.search(model, model.initial([0]), np.random.default_rng(0),
                      add_exploration_noise=False)
    tree = mcts.tree
    assert tree is not None
    # Hand computation. Backups: sim0 root += 1 + .9*10 = 10; sim1 root += 1 + .9*(2 + .9*20) = 19;
    # sim2 node2 += 4 + .9*30 = 31, node1 += 2 + .9*31 = 29.9, root += 1 + .9*29.9 = 27.91.
    np.testing.assert_allclose(res.root_values[0], (0.5 + 10 + 19 + 27.91) / 4, rtol=1e-6)
    np.testing.assert_allclose(tree.value_sum[0], [57.41, 10 + 20 + 29.9, 20 + 31, 30], rtol=1e-6)
    if horizon == 2:
        # depth 2 is a reset node: its hidden is zeroed, so depth 3's prefix is its own reward
        np.testing.assert_allclose(tree.value_prefix[0], [0.0, 1.0, 3.0, 4.0])
        np.testing.assert_array_equal(tree.is_reset[0], [True, False, True, False])
        assert float(model.calls[2]["h"].abs().sum()) == 0.0
        assert float(model.calls[2]["c"].abs().sum()) == 0.0
    else:
        np.testing.assert_allclose(tree.value_prefix[0], [0.0, 1.0, 3.0, 7.0])
        np.testing.assert_array_equal(tree.is_reset[0], [True, False, False, False])
        assert float(model.calls[2]["h"][0, 0, 0]) == 3.0
    # the root (depth 0) always starts from a zero hidden
    assert float(model.calls[0]["h"].abs().sum()) == 0.0
    np.testing.assert_array_equal(tree.depth[0], [0, 1, 2, 3])


def test_root_hidden_is_zeroed_even_if_given_nonzero():
    model = TableModel([[1], [1]], [[1.0], [0.0]], [0.0, 0.0], [[0.0]] * 2)
    root = model.initial([0])
    root.reward_hidden = (torch.full((1, 1, 1), 5.0), torch.full((1, 1, 1), 5.0))
    mcts = BatchedMCTS(MCTSConfig(num_simulations=1), num_actions=1)
    mcts.search(model, root, np.random.default_rng(0), add_exploration_noise=False)
    assert mcts.tree is not None and mcts.tree.value_prefix[0, 1] == 1.0


def test_dirichlet_noise_changes_only_root_priors():
    model = random_mdp(seed=3, num_actions=6)
    roots = np.array([0, 5, 9])
    legal = np.ones((3, 6), dtype=bool)
    legal[1, [0, 4]] = False
    cfg = MCTSConfig(num_simulations=30)
    trees = {}
    for noise in (False, True):
        mcts = BatchedMCTS(cfg, num_actions=6)
        mcts.search(model, model.initial(roots), np.random.default_rng(7),
                    add_exploration_noise=noise, legal_actions=legal)
        trees[noise] = mcts.tree
    clean, noisy = trees[False], trees[True]
    p0 = clean.priors[:, 0]
    np.testing.assert_allclose(noisy.root_prior_without_noise, p0)
    np.testing.assert_allclose(noisy.priors[:, 0].sum(axis=1), 1.0)
    assert not np.allclose(noisy.priors[:, 0], p0)
    noise = (noisy.priors[:, 0] - 0.75 * p0) / 0.25
    assert (noise >= -1e-12).all()
    np.testing.assert_allclose(noise.sum(axis=1), 1.0)
    assert (noisy.priors[:, 0][~legal] == 0).all()
    # every non-root node's prior is exactly the softmax of the model's logits for its state
    for tree in (clean, noisy):
        states = node_states(tree, roots, model.next_state.numpy())
        logits = model.logits[states[:, 1:]]
        expect = np.exp(logits - logits.max(-1, keepdims=True))
        expect /= expect.sum(-1, keepdims=True)
        np.testing.assert_allclose(tree.priors[:, 1:], expect, rtol=1e-5)


def test_legal_action_masking_never_selects_illegal_actions():
    num_a = 6
    g = np.random.default_rng(11)
    model = random_mdp(seed=5, num_actions=num_a)
    # make illegal actions tempting: huge prior and reward at the roots' illegal actions
    roots = np.arange(8)
    legal = g.random((8, num_a)) < 0.5
    legal[np.arange(8), g.integers(0, num_a, 8)] = True
    model.logits[roots] = np.where(legal, 0.0, 10.0)
    model.reward[roots] = np.where(legal, 0.0, 100.0)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=60), num_actions=num_a)
    res = mcts.search(model, model.initial(roots), np.random.default_rng(0),
                      add_exploration_noise=True, legal_actions=legal)
    assert (res.visit_counts[~legal] == 0).all()
    assert mcts.tree is not None and (mcts.tree.children[:, 0][~legal] == -1).all()
    assert (res.visit_counts.sum(axis=1) == 60).all()
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = select_action(res.visit_counts, 1.0, rng)
        assert legal[np.arange(8), a].all()
    assert legal[np.arange(8), select_action(res.visit_counts, 1.0, rng, deterministic=True)].all()
    # the root calls to the model only use legal actions
    first = model.calls[0]
    assert legal[np.arange(8), first["actions"]].all()


@pytest.mark.parametrize("noise", [False, True])
def test_batch_equals_each_root_searched_alone(noise):
    model = random_mdp(seed=2)
    roots = np.array([0, 3, 3, 17, 29])
    legal = np.ones((5, 5), dtype=bool)
    legal[2, 1] = legal[4, [0, 2]] = False
    cfg = MCTSConfig(num_simulations=40, value_prefix_horizon=3)
    batched = BatchedMCTS(cfg, 5).search(model, model.initial(roots), np.random.default_rng(4),
                                         add_exploration_noise=noise, legal_actions=legal)
    rng = np.random.default_rng(4)  # rows consume the rng in order, like the batch
    for i, s in enumerate(roots):
        alone = BatchedMCTS(cfg, 5).search(model, model.initial([s]), rng,
                                           add_exploration_noise=noise,
                                           legal_actions=legal[i:i + 1])
        np.testing.assert_array_equal(batched.visit_counts[i], alone.visit_counts[0])
        np.testing.assert_allclose(batched.root_values[i], alone.root_values[0], rtol=1e-6)
        np.testing.assert_allclose(batched.policy[i], alone.policy[0], rtol=1e-6)
    # rows 1 and 2 share a root state but differ in legality: different searches
    assert not np.array_equal(batched.visit_counts[1], batched.visit_counts[2])


def test_one_model_call_per_simulation_for_the_whole_batch():
    model = random_mdp(seed=8)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=25), num_actions=5)
    mcts.search(model, model.initial(np.arange(7)), np.random.default_rng(0))
    assert len(model.calls) == 25
    assert all(len(c["actions"]) == 7 and c["h"].shape == (1, 7, 1) for c in model.calls)


def test_select_action_temperature():
    counts = np.array([[0, 10, 30]] * 4000)
    rng = np.random.default_rng(0)
    freq = np.bincount(select_action(counts, 1.0, rng), minlength=3) / 4000
    np.testing.assert_allclose(freq, [0.0, 0.25, 0.75], atol=0.03)
    freq = np.bincount(select_action(counts, 0.5, rng), minlength=3) / 4000  # p ~ N^2
    np.testing.assert_allclose(freq, [0.0, 0.1, 0.9], atol=0.02)
    assert (select_action(counts[:5], 1e-4, rng) == 2).all()  # tiny T: argmax, no overflow
    out = select_action(np.array([[3, 1, 0], [0, 0, 2]]), 1.0, rng, deterministic=True)
    np.testing.assert_array_equal(out, [0, 2])
    assert out.dtype == np.int64
    with pytest.raises(ValueError, match="temperature"):
        select_action(counts, 0.0, rng)
    with pytest.raises(ValueError, match="at least one visit"):
        select_action(np.zeros((1, 3)), 1.0, rng)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="num_simulations"):
        MCTSConfig(num_simulations=0)
    with pytest.raises(ConfigError, match="value_prefix_horizon"):
        MCTSConfig(value_prefix_horizon=0)
    model = random_mdp(seed=1)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=2), num_actions=5)
    legal = np.ones((2, 5), dtype=bool)
    legal[1] = False
    with pytest.raises(SearchInputError, match="no legal action"):
        mcts.search(model, model.initial([0, 1]), np.random.default_rng(0), legal_actions=legal)
    with pytest.raises(SearchInputError, match="policy_logits"):
        BatchedMCTS(MCTSConfig(), num_actions=4).search(model, model.initial([0]),
                                                         np.random.default_rng(0))
