from __future__ import annotations

import numpy as np
import pytest

from rltransfer.explore import (
    BehaviorTransferExplorer,
    EpsilonGreedy,
    Explorer,
    EZGreedy,
    UnknownExplorerError,
    actor_epsilons,
    make_explorer,
)
from rltransfer.explore.base import check_probability


class FixedLengths:
    """Length sampler returning a fixed duration and counting its draws."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.draws = 0

    def __call__(self, rng: np.random.Generator, count: int) -> np.ndarray:
        self.draws += count
        return np.full(count, self.length, dtype=np.int64)


def q_with_argmax(argmax: np.ndarray, num_columns: int) -> np.ndarray:
    q = np.zeros((argmax.shape[0], num_columns), dtype=np.float32)
    q[np.arange(argmax.shape[0]), argmax] = 1.0
    return q


def no_first(num_envs: int) -> np.ndarray:
    return np.zeros(num_envs, dtype=bool)


# ------------------------------------------------------------------------------- actor eps


def test_actor_epsilons_hand_values() -> None:
    np.testing.assert_allclose(actor_epsilons(1), [0.4])
    np.testing.assert_allclose(actor_epsilons(2), [0.4, 0.4**8])
    np.testing.assert_allclose(actor_epsilons(2), [0.4, 0.00065536])
    # N = 8: exponent 1 + 7 i / 7 = 1 + i.
    np.testing.assert_allclose(actor_epsilons(8), 0.4 ** (1.0 + np.arange(8)))
    np.testing.assert_allclose(actor_epsilons(8)[:3], [0.4, 0.16, 0.064])
    with pytest.raises(ValueError):
        actor_epsilons(0)


# ------------------------------------------------------------------------------ eps-greedy


def test_epsilon_zero_is_argmax() -> None:
    rng = np.random.default_rng(0)
    explorer = EpsilonGreedy(0.0, 5, rng)
    explorer.reset(4)
    q = np.array([[0, 1, 2, 3, 4], [9, 0, 0, 0, 0], [0, 0, 7, 0, 0], [1, 5, 5, 0, 0]], np.float32)
    for _ in range(20):
        sel = explorer.select(q, np.zeros((4, 1)), no_first(4), None)
        np.testing.assert_array_equal(sel.env_actions, [4, 0, 2, 1])
        np.testing.assert_array_equal(sel.agent_actions, [4, 0, 2, 1])
        assert sel.env_actions.dtype == np.int64
        assert not sel.extra.any() and not sel.in_flight.any()


def test_epsilon_one_is_uniform_and_per_env_epsilon() -> None:
    rng = np.random.default_rng(1)
    explorer = EpsilonGreedy(np.array([1.0, 0.0]), 4, rng)
    explorer.reset(2)
    q = q_with_argmax(np.array([3, 3]), 4)
    actions = np.stack(
        [explorer.select(q, np.zeros((2, 1)), no_first(2), None).env_actions for _ in range(4000)]
    )
    counts = np.bincount(actions[:, 0], minlength=4) / 4000
    np.testing.assert_allclose(counts, 0.25, atol=0.03)
    assert np.all(actions[:, 1] == 3)
    with pytest.raises(ValueError):
        explorer.reset(3)


def test_epsilon_greedy_extra_action_resolves_to_prior() -> None:
    rng = np.random.default_rng(0)
    explorer = EpsilonGreedy(0.0, 4, rng, extra_action=True)  # A = 3, a+ = 3
    explorer.reset(3)
    q = q_with_argmax(np.array([3, 1, 3]), 4)
    prior = np.array([2, 0, 1], dtype=np.int64)
    sel = explorer.select(q, np.zeros((3, 1)), no_first(3), prior)
    np.testing.assert_array_equal(sel.agent_actions, [3, 1, 3])
    np.testing.assert_array_equal(sel.env_actions, [2, 1, 1])
    np.testing.assert_array_equal(sel.extra, [True, False, True])
    with pytest.raises(ValueError, match="prior_actions"):
        explorer.select(q, np.zeros((3, 1)), no_first(3), None)
    with pytest.raises(ValueError, match="columns"):
        explorer.select(q[:, :3], np.zeros((3, 1)), no_first(3), prior)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        explorer.select(q, np.zeros((3, 1)), no_first(3), np.array([0, 3, 0]))


def test_epsilon_greedy_extra_action_uniform_over_a_plus() -> None:
    rng = np.random.default_rng(2)
    explorer = EpsilonGreedy(1.0, 4, rng, extra_action=True)
    num_envs = 20_000
    explorer.reset(num_envs)
    prior = np.full(num_envs, 2, dtype=np.int64)
    q = np.zeros((num_envs, 4))
    sel = explorer.select(q, q, no_first(num_envs), prior)
    assert abs(sel.extra.mean() - 0.25) < 0.015
    assert np.all(sel.env_actions[sel.extra] == 2)
    assert sel.env_actions.max() <= 2


def test_bad_epsilon() -> None:
    with pytest.raises(ValueError):
        EpsilonGreedy(1.5, 3, np.random.default_rng(0))
    with pytest.raises(ValueError):
        BehaviorTransferExplorer(0.1, -0.1, 3, np.random.default_rng(0))


# ------------------------------------------------------------------------------- ez-greedy


def test_ez_greedy_repeats_for_exactly_the_sampled_length() -> None:
    num_envs = 64
    sampler = FixedLengths(3)
    explorer = EZGreedy(1.0, 6, np.random.default_rng(3), length_sampler=sampler)
    explorer.reset(num_envs)
    greedy = np.full(num_envs, 5)
    q = q_with_argmax(greedy, 6)
    obs = np.zeros((num_envs, 1))
    first = no_first(num_envs)
    sel0 = explorer.select(q, obs, first, None)
    repeat = sel0.env_actions
    assert sel0.in_flight.all() and sampler.draws == num_envs
    assert (repeat != 5).any()  # some repeats differ from the greedy action
    explorer.epsilon = check_probability("epsilon", 0.0)
    for _ in range(2):
        sel = explorer.select(q, obs, first, None)
        np.testing.assert_array_equal(sel.env_actions, repeat)
        np.testing.assert_array_equal(sel.agent_actions, repeat)
        assert sel.in_flight.all() and not sel.extra.any()
    sel = explorer.select(q, obs, first, None)
    np.testing.assert_array_equal(sel.env_actions, greedy)
    assert not sel.in_flight.any()
    assert sampler.draws == num_envs


def test_ez_greedy_chained_repeats_sample_every_length_steps() -> None:
    sampler = FixedLengths(4)
    explorer = EZGreedy(1.0, 3, np.random.default_rng(0), length_sampler=sampler)
    explorer.reset(2)
    q = np.zeros((2, 3))
    draws = []
    for _ in range(12):
        explorer.select(q, np.zeros((2, 1)), no_first(2), None)
        draws.append(sampler.draws)
    # a new repeat starts at steps 0, 4, 8 for both envs
    assert draws == [2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6]


def test_ez_greedy_stops_at_episode_start() -> None:
    explorer = EZGreedy(1.0, 4, np.random.default_rng(0), length_sampler=FixedLengths(10))
    explorer.reset(2)
    q = q_with_argmax(np.array([0, 0]), 4)
    explorer.select(q, np.zeros((2, 1)), no_first(2), None)
    explorer.epsilon = check_probability("epsilon", 0.0)
    sel = explorer.select(q, np.zeros((2, 1)), np.array([True, False]), None)
    np.testing.assert_array_equal(sel.in_flight, [False, True])
    assert sel.env_actions[0] == 0


def test_ez_greedy_epsilon_zero_never_repeats() -> None:
    explorer = EZGreedy(0.0, 4, np.random.default_rng(0))
    q = q_with_argmax(np.array([1, 2, 3]), 4)
    for _ in range(50):
        sel = explorer.select(q, np.zeros((3, 1)), no_first(3), None)
        np.testing.assert_array_equal(sel.env_actions, [1, 2, 3])
        assert not sel.in_flight.any()


def test_ez_greedy_start_rate() -> None:
    # length-1 repeats: every step is an independent start with probability epsilon
    explorer = EZGreedy(0.3, 4, np.random.default_rng(0), length_sampler=FixedLengths(1))
    num_envs = 1000
    q = np.zeros((num_envs, 4))
    flights = [explorer.select(q, q, no_first(num_envs), None).in_flight for _ in range(20)]
    assert abs(np.mean(flights) - 0.3) < 0.01


# ---------------------------------------------------------------------- Behavior Transfer


def test_bt_flight_hands_over_to_prior_for_exactly_n_steps() -> None:
    num_envs = 5
    sampler = FixedLengths(3)
    explorer = BehaviorTransferExplorer(
        0.0,
        1.0,
        4,
        np.random.default_rng(0),
        flights=True,
        extra_action=False,
        length_sampler=sampler,
    )
    explorer.reset(num_envs)
    greedy = np.array([0, 1, 2, 3, 0])
    q = q_with_argmax(greedy, 4)
    obs = np.zeros((num_envs, 1))
    rng = np.random.default_rng(9)
    for step in range(3):
        prior = rng.integers(0, 4, num_envs)
        sel = explorer.select(q, obs, no_first(num_envs), prior)
        np.testing.assert_array_equal(sel.env_actions, prior)
        np.testing.assert_array_equal(sel.agent_actions, prior)
        assert sel.in_flight.all() and not sel.extra.any()
        if step == 0:
            explorer.epsilon_levy = check_probability("epsilon_levy", 0.0)
    sel = explorer.select(q, obs, no_first(num_envs), (greedy + 1) % 4)
    np.testing.assert_array_equal(sel.env_actions, greedy)
    assert not sel.in_flight.any()
    assert sampler.draws == num_envs


def test_bt_chained_flights_and_reset_at_episode_start() -> None:
    sampler = FixedLengths(5)
    explorer = BehaviorTransferExplorer(
        0.0, 1.0, 3, np.random.default_rng(0), extra_action=False, length_sampler=sampler
    )
    explorer.reset(2)
    q = np.zeros((2, 3))
    prior = np.array([1, 2])
    draws = []
    for _ in range(10):
        explorer.select(q, q, no_first(2), prior)
        draws.append(sampler.draws)
    assert draws == [2] * 5 + [4] * 5
    explorer.select(q, q, no_first(2), prior)  # new flights start, 4 steps left afterwards
    explorer.epsilon_levy = check_probability("epsilon_levy", 0.0)
    sel = explorer.select(q, q, np.array([False, True]), prior)
    np.testing.assert_array_equal(sel.in_flight, [True, False])
    np.testing.assert_array_equal(sel.env_actions, [1, 0])


def test_bt_extra_action_only() -> None:
    explorer = BehaviorTransferExplorer(
        0.0, 1.0, 3, np.random.default_rng(0), flights=False, extra_action=True
    )
    q = q_with_argmax(np.array([3, 0, 3]), 4)
    prior = np.array([2, 2, 0])
    for _ in range(10):  # eps_levy = 1 has no effect with flights off
        sel = explorer.select(q, q, no_first(3), prior)
        np.testing.assert_array_equal(sel.agent_actions, [3, 0, 3])
        np.testing.assert_array_equal(sel.env_actions, [2, 0, 0])
        np.testing.assert_array_equal(sel.extra, [True, False, True])
        assert not sel.in_flight.any()


def test_bt_both_on_flight_overrides_extra_action() -> None:
    explorer = BehaviorTransferExplorer(
        0.0, 1.0, 3, np.random.default_rng(0), length_sampler=FixedLengths(2)
    )
    q = q_with_argmax(np.array([3, 3]), 4)  # greedy choice would be a+
    prior = np.array([1, 0])
    sel = explorer.select(q, q, no_first(2), prior)
    np.testing.assert_array_equal(sel.agent_actions, [1, 0])
    np.testing.assert_array_equal(sel.env_actions, [1, 0])
    assert sel.in_flight.all() and not sel.extra.any()
    explorer.epsilon_levy = check_probability("epsilon_levy", 0.0)
    explorer.select(q, q, no_first(2), prior)
    sel = explorer.select(q, q, no_first(2), prior)
    np.testing.assert_array_equal(sel.agent_actions, [3, 3])
    np.testing.assert_array_equal(sel.env_actions, [1, 0])
    assert sel.extra.all() and not sel.in_flight.any()


def test_bt_flight_start_rate_and_exploration_rate() -> None:
    num_envs = 2000
    explorer = BehaviorTransferExplorer(
        0.5, 0.2, 3, np.random.default_rng(0), length_sampler=FixedLengths(1)
    )
    q = q_with_argmax(np.zeros(num_envs, dtype=np.int64), 4)
    prior = np.full(num_envs, 2)
    sels = [explorer.select(q, q, no_first(num_envs), prior) for _ in range(10)]
    in_flight = np.stack([s.in_flight for s in sels])
    extra = np.stack([s.extra for s in sels])
    assert abs(in_flight.mean() - 0.2) < 0.01
    # outside flights: a+ w.p. eps / |A+| = 0.5 / 4
    assert abs(extra[~in_flight].mean() - 0.125) < 0.01


def test_bt_both_off_is_epsilon_greedy_without_prior() -> None:
    explorer = BehaviorTransferExplorer(
        0.0, 0.5, 3, np.random.default_rng(0), flights=False, extra_action=False
    )
    q = q_with_argmax(np.array([2, 1]), 3)
    sel = explorer.select(q, q, no_first(2), None)
    np.testing.assert_array_equal(sel.env_actions, [2, 1])


def test_bt_input_errors() -> None:
    explorer = BehaviorTransferExplorer(0.1, 0.1, 3, np.random.default_rng(0))
    q2 = np.zeros((2, 1))
    with pytest.raises(ValueError, match="4"):  # extra action on: |A+| = 4 columns expected
        explorer.select(np.zeros((2, 3)), q2, no_first(2), np.array([0, 1]))
    with pytest.raises(ValueError, match="prior_actions"):
        explorer.select(np.zeros((2, 4)), q2, no_first(2), None)
    flights_only = BehaviorTransferExplorer(
        0.1, 0.1, 3, np.random.default_rng(0), extra_action=False
    )
    with pytest.raises(ValueError, match="columns"):
        flights_only.select(np.zeros((2, 4)), q2, no_first(2), np.array([0, 1]))
    with pytest.raises(ValueError, match="prior_actions"):
        flights_only.select(np.zeros((2, 3)), q2, no_first(2), None)
    flights_only.reset(2)
    with pytest.raises(ValueError, match="reset"):
        flights_only.select(np.zeros((3, 3)), np.zeros((3, 1)), no_first(3), np.array([0, 1, 2]))


def test_bt_real_zeta_flights_are_in_range() -> None:
    explorer = BehaviorTransferExplorer(
        0.0, 1.0, 3, np.random.default_rng(0), extra_action=False, max_flight_length=4
    )
    q = np.zeros((1, 3))
    # with eps_levy = 1 a flight of length <= 4 starts whenever none runs: all steps in flight
    sels = [explorer.select(q, q, no_first(1), np.array([1])) for _ in range(100)]
    assert all(s.in_flight[0] for s in sels)
    assert explorer.flight_steps_left.max() <= 3


def test_make_explorer() -> None:
    rng = np.random.default_rng(0)
    for kind, cls in [
        ("epsilon_greedy", EpsilonGreedy),
        ("ez_greedy", EZGreedy),
        ("behavior_transfer", BehaviorTransferExplorer),
    ]:
        explorer = make_explorer(kind, num_env_actions=3, epsilon=0.1, rng=rng)
        assert isinstance(explorer, cls)
        assert isinstance(explorer, Explorer)
    bt = make_explorer(
        "behavior_transfer", num_env_actions=3, epsilon=0.1, rng=rng, extra_action=False
    )
    assert isinstance(bt, BehaviorTransferExplorer) and bt.num_agent_actions == 3
    with pytest.raises(UnknownExplorerError, match="ez_greedy"):
        make_explorer("boltzmann", num_env_actions=3, epsilon=0.1, rng=rng)
