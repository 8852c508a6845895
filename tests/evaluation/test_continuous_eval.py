"""One evaluation protocol for discrete and continuous actions (issue 11): `evaluate_policy`
scores a `ContinuousPolicy` on a Box env with the fixed episode-count rule, refuses actions
outside the env's bounds and policies of the other kind, and pixel SAC goes through it via
`SACPolicy`."""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from rltransfer.agents.sac.learner import SACAgent
from rltransfer.agents.sac.train import SACPolicy
from rltransfer.core.policy import (
    ContinuousPolicy,
    Policy,
    RandomPolicy,
    SpaceMismatchError,
    checked_box_actions,
)
from rltransfer.envs.wrappers import TaskRewardInfo
from rltransfer.evaluation.protocol import evaluate_policy


class ActionRewardEnv(gym.Env):
    """Reward = ``a[0] + 2 a[1]`` of the executed action; observation ``uint8[1, 2, 2]`` filled
    with the step count ``t`` (0 at reset); truncated after ``length`` steps. Actions are
    ``Box(-2, 3, (2,))``. Records every action it receives."""

    def __init__(self, length: int, received: list[np.ndarray]) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (1, 2, 2), np.uint8)
        self.action_space = gym.spaces.Box(-2.0, 3.0, (2,), np.float32)
        self.length = length
        self.received = received
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((1, 2, 2), np.uint8), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.received.append(np.array(action))
        reward = float(action[0] + 2.0 * action[1])
        self.t += 1
        return (np.full((1, 2, 2), self.t, np.uint8), reward, False, self.t >= self.length,
                {})


def box_factory(lengths: list[int], received: list[np.ndarray] | None = None) -> Any:
    """``(n, seed) -> VectorEnv``: env ``i`` has episodes of ``lengths[i]`` steps."""
    log: list[np.ndarray] = [] if received is None else received

    def build(num_envs: int, seed: int) -> VectorEnv:
        fns = [lambda length=length: ActionRewardEnv(length, log)
               for length in lengths[:num_envs]]
        env = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
        return TaskRewardInfo(env, reward_free=False)

    return build


class DiscreteEnv(gym.Env):
    """Three discrete actions, reward 1, truncated after 2 steps."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (1, 2, 2), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((1, 2, 2), np.uint8), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.zeros((1, 2, 2), np.uint8), 1.0, False, self.t >= 2, {}


def discrete_factory(num_envs: int, seed: int) -> VectorEnv:
    env = gym.vector.SyncVectorEnv([DiscreteEnv] * num_envs,
                                   autoreset_mode=AutoresetMode.NEXT_STEP)
    return TaskRewardInfo(env, reward_free=False)


class StepPolicy:
    """Continuous policy: action ``[0.5 t, -1]`` where ``t`` is the latest frame's value."""

    action_shape: tuple[int, ...] = (2,)

    def __init__(self) -> None:
        self.obs_shapes: list[tuple[int, ...]] = []

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        self.obs_shapes.append(obs.shape)
        t = obs[:, -1, 0, 0].astype(np.float32)
        return np.stack([0.5 * t, -np.ones_like(t)], axis=1), None


class ConstantPolicy:
    """Continuous policy acting ``value`` in every dimension."""

    def __init__(self, value: float, shape: tuple[int, ...] = (2,)) -> None:
        self.value = value
        self.action_shape: tuple[int, ...] = shape

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        return np.full((obs.shape[0], *self.action_shape), self.value, np.float32), None


def test_continuous_policy_is_a_continuous_not_a_discrete_policy() -> None:
    assert isinstance(StepPolicy(), ContinuousPolicy)
    assert not isinstance(StepPolicy(), Policy)
    assert isinstance(RandomPolicy(3), Policy)


def test_continuous_returns_follow_the_fixed_episode_rule() -> None:
    """2 envs with episodes of 2 and 6 steps, 5 episodes: env 0 runs episodes 0, 2, 4 and env
    1 runs 1, 3 (the first five to finish would be four of env 0's and one of env 1's).

    Step t (0-based) of an episode acts [0.5 t, -1], reward 0.5 t - 2, so an episode of L steps
    returns 0.25 L (L - 1) - 2 L: L = 2 -> 0.5 - 4 = -3.5, L = 6 -> 7.5 - 12 = -4.5.
    """
    received: list[np.ndarray] = []
    policy = StepPolicy()
    returns = evaluate_policy(policy, "box", 5, seed=3, frame_stack=2, num_envs=2,
                              make_envs=box_factory([2, 6], received))
    assert returns.dtype == np.float64 and returns.shape == (5,)
    assert sorted(returns.tolist()) == [-4.5, -4.5, -3.5, -3.5, -3.5]
    assert set(policy.obs_shapes) == {(2, 2, 2, 2)}  # [B, C*S, H, W], S = 2
    assert all(a.dtype == np.float32 and a.shape == (2,) for a in received)
    # Env 0's 2-step episodes: actions [0, -1], [0.5, -1].
    np.testing.assert_array_equal(received[0], [0.0, -1.0])
    np.testing.assert_array_equal(received[2], [0.5, -1.0])


def test_one_episode_uses_one_env() -> None:
    """num_episodes = 1 builds one env (n = min(num_envs, num_episodes)): length 6, -4.5."""
    returns = evaluate_policy(StepPolicy(), "box", 1, seed=0, frame_stack=1, num_envs=8,
                              make_envs=box_factory([6, 2]))
    assert returns.tolist() == [-4.5]


@pytest.mark.parametrize("value, shown", [(3.5, "3.5"), (-2.25, "-2.25"), (np.nan, "nan")])
def test_actions_outside_the_bounds_are_refused(value: float, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"ConstantPolicy returned action {shown} for env 0, "
                                         r"dimension \(0,\), outside the env's bounds "
                                         r"\[-2.0, 3.0\]"):
        evaluate_policy(ConstantPolicy(value), "box", 2, seed=0, frame_stack=1,
                        make_envs=box_factory([2, 2]))


def test_actions_on_the_bounds_are_accepted() -> None:
    """3 and -2 are the bounds themselves: reward 3 + 6 = 9 (and -2 - 4 = -6) per step."""
    assert evaluate_policy(ConstantPolicy(3.0), "box", 1, seed=0, frame_stack=1,
                           make_envs=box_factory([2])).tolist() == [18.0]
    assert evaluate_policy(ConstantPolicy(-2.0), "box", 1, seed=0, frame_stack=1,
                           make_envs=box_factory([2])).tolist() == [-12.0]


def test_policies_of_the_wrong_kind_or_shape_are_refused() -> None:
    with pytest.raises(SpaceMismatchError, match="continuous Box actions of shape"):
        evaluate_policy(RandomPolicy(3), "box", 1, seed=0, frame_stack=1,
                        make_envs=box_factory([2]))
    with pytest.raises(SpaceMismatchError, match=r"shape \(3,\) but box's actions have "
                                                 r"shape \(2,\)"):
        evaluate_policy(ConstantPolicy(0.0, (3,)), "box", 1, seed=0, frame_stack=1,
                        make_envs=box_factory([2]))
    with pytest.raises(SpaceMismatchError, match="3 discrete actions but the policy has no "
                                                 "num_actions"):
        evaluate_policy(ConstantPolicy(0.0), "disc", 1, seed=0, frame_stack=1,
                        make_envs=discrete_factory)
    # The discrete path still runs through the same function: 2 steps of reward 1.
    assert evaluate_policy(RandomPolicy(3), "disc", 3, seed=0, frame_stack=1,
                           make_envs=discrete_factory).tolist() == [2.0, 2.0, 2.0]


def test_make_envs_refuses_env_settings() -> None:
    with pytest.raises(ValueError, match="make_envs builds the evaluation env itself"):
        evaluate_policy(StepPolicy(), "box", 1, seed=0, frame_stack=1,
                        make_envs=box_factory([2]), env_kwargs={"action_repeat": 2})
    with pytest.raises(ValueError, match=r"\['task'\] would be ignored"):
        evaluate_policy(StepPolicy(), "box", 1, seed=0, frame_stack=1,
                        make_envs=box_factory([2]), task="run")


def test_checked_box_actions_shapes() -> None:
    low = np.full((2, 2), -1.0, np.float32)
    high = np.ones((2, 2), np.float32)
    out = checked_box_actions(np.zeros((3, 4)), 3, low, high, "p")
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"p returned actions of shape \(2, 4\) for 3 envs"):
        checked_box_actions(np.zeros((2, 4)), 3, low, high, "p")
    bad = np.zeros((3, 2, 2))
    bad[2, 1, 0] = 1.5
    with pytest.raises(ValueError, match=r"for env 2, dimension \(1, 0\)"):
        checked_box_actions(bad, 3, low, high, "p")


class StubAgent:
    """Stands in for SACAgent: ``act`` returns fixed ``[-1, 1]`` actions, records its flag."""

    action_dim = 2

    def __init__(self) -> None:
        self.flags: list[bool] = []

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        self.flags.append(deterministic)
        return np.tile(np.array([[-1.0, 0.5]], np.float32), (obs.shape[0], 1))


def test_sac_policy_acts_deterministically_in_the_env_bounds() -> None:
    """[-1, 0.5] in [-1, 1] -> low + (a + 1) / 2 (high - low): on bounds [-2, 0] .. [2, 10]
    that is [-2, 0 + 0.75 * 10] = [-2, 7.5]."""
    agent = StubAgent()
    policy = SACPolicy(cast(SACAgent, agent), np.array([-2.0, 0.0]), np.array([2.0, 10.0]))
    assert isinstance(policy, ContinuousPolicy) and policy.action_shape == (2,)
    actions, state = policy.act(np.zeros((3, 6, 4, 4), np.uint8), None, np.ones(3, bool))
    assert state is None and agent.flags == [True]
    assert actions.dtype == np.float32 and actions.shape == (3, 2)
    np.testing.assert_array_equal(actions, [[-2.0, 7.5]] * 3)
    with pytest.raises(ValueError, match="2 action dimensions, the bounds 3"):
        SACPolicy(cast(SACAgent, agent), np.zeros(3), np.ones(3))


def test_sac_policy_evaluates_through_the_protocol() -> None:
    """The stub's [-1, 0.5] on the Box(-2, 3) env: [-2, 0 + 0.75 * 5 - 2] = [-2, 1.75], reward
    -2 + 3.5 = 1.5 per step; 2-step episodes return 3."""
    agent = StubAgent()
    policy = SACPolicy(cast(SACAgent, agent), np.full(2, -2.0), np.full(2, 3.0))
    returns = evaluate_policy(policy, "box", 3, seed=0, frame_stack=3, num_envs=5,
                              make_envs=box_factory([2, 2, 2]))
    assert returns.tolist() == [3.0, 3.0, 3.0]
    assert all(agent.flags)
