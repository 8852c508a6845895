from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from rltransfer.core.policy import CallablePolicy, Policy
from rltransfer.explore import BehaviorTransferExplorer
from rltransfer.methods.behavior_transfer import (
    PriorPolicyDriver,
    SpaceMismatchError,
    validate_prior,
)


class StepCounterPolicy:
    """Recurrent stub: the state counts steps since the episode began; action = count % n."""

    def __init__(self, num_actions: int, obs_shape: tuple[int, ...] | None = None) -> None:
        self.num_actions = num_actions
        self.obs_shape = obs_shape
        self.resets: list[int] = []

    def reset(self, num_envs: int) -> np.ndarray:
        self.resets.append(num_envs)
        return np.zeros(num_envs, dtype=np.int64)

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        state = np.where(first, 0, state)
        return state % self.num_actions, state + 1


def test_validate_prior_action_mismatch_names_both_sides() -> None:
    with pytest.raises(SpaceMismatchError, match=r"18 actions.*task has 9"):
        validate_prior(StepCounterPolicy(18), 9)
    validate_prior(StepCounterPolicy(9), 9)
    assert issubclass(SpaceMismatchError, ValueError)


def test_validate_prior_obs_shape() -> None:
    policy = StepCounterPolicy(4, obs_shape=(4, 84, 84))
    validate_prior(policy, 4, (4, 84, 84))
    validate_prior(policy, 4)  # task shape unknown: nothing to compare
    with pytest.raises(SpaceMismatchError, match=r"\(4, 84, 84\).*\(10, 10, 10\)"):
        validate_prior(policy, 4, (10, 10, 10))
    validate_prior(StepCounterPolicy(4), 4, (10, 10, 10))  # policy shape unknown
    with pytest.raises(TypeError):
        validate_prior(cast(Any, object()), 4)


def test_driver_carries_recurrent_state_and_resets_on_first() -> None:
    policy = StepCounterPolicy(100)
    assert isinstance(policy, Policy)
    driver = PriorPolicyDriver(policy, num_envs=2, num_env_actions=100)
    obs = np.zeros((2, 4, 5, 5), dtype=np.uint8)
    no = np.zeros(2, dtype=bool)
    outputs = [driver.act(obs, no) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(outputs), [[0, 0], [1, 1], [2, 2]])
    out = driver.act(obs, np.array([True, False]))
    np.testing.assert_array_equal(out, [0, 3])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(driver.act(obs, no), [1, 4])
    driver.reset(2)
    np.testing.assert_array_equal(driver.act(obs, no), [0, 0])
    assert policy.resets == [2, 2]
    with pytest.raises(ValueError, match="reset"):
        driver.act(np.zeros((3, 4, 5, 5), dtype=np.uint8), np.zeros(3, dtype=bool))


class FixedOutputPolicy:
    """Returns a fixed array whatever the input (to test the driver's output checks)."""

    def __init__(self, num_actions: int, output: np.ndarray) -> None:
        self.num_actions = num_actions
        self.output = output

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.output, None


def test_driver_rejects_bad_policy_output() -> None:
    obs = np.zeros((2, 1, 3, 3), dtype=np.uint8)
    no = np.zeros(2, dtype=bool)
    ok = PriorPolicyDriver(FixedOutputPolicy(8, np.array([5, 7])))
    np.testing.assert_array_equal(ok.act(obs, no), [5, 7])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        PriorPolicyDriver(FixedOutputPolicy(2, np.array([0, 2]))).act(obs, no)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        PriorPolicyDriver(FixedOutputPolicy(2, np.array([-1, 0]))).act(obs, no)
    with pytest.raises(ValueError, match="shape"):
        PriorPolicyDriver(FixedOutputPolicy(2, np.array([0, 1, 1]))).act(obs, no)
    with pytest.raises(ValueError, match="dtype"):
        PriorPolicyDriver(FixedOutputPolicy(2, np.array([0.0, 1.0]))).act(obs, no)
    with pytest.raises(SpaceMismatchError):
        PriorPolicyDriver(StepCounterPolicy(3), num_envs=2, num_env_actions=4)


def test_driver_feeds_behavior_transfer_explorer() -> None:
    # pi_p always picks action 2 of 3; with eps_levy = 1 every step is in a flight
    driver = PriorPolicyDriver(CallablePolicy(lambda o: np.full(o.shape[0], 2), 3), num_envs=4)
    explorer = BehaviorTransferExplorer(0.0, 1.0, 3, np.random.default_rng(0))
    explorer.reset(4)
    obs = np.zeros((4, 2, 3, 3), dtype=np.uint8)
    q = np.zeros((4, 4))
    q[:, 0] = 1.0
    first = np.ones(4, dtype=bool)
    for _ in range(5):
        prior = driver.act(obs, first)
        sel = explorer.select(q, obs, first, prior)
        np.testing.assert_array_equal(sel.env_actions, [2, 2, 2, 2])
        assert sel.in_flight.all()
        first = np.zeros(4, dtype=bool)
