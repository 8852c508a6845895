"""A recurrent pi_p is told what was executed: the Policy seam's ``observe`` (issue 10, item 6).

R2D2's LSTM takes the previous action and rewards. As Behavior Transfer's prior, a recurrent
policy proposes an action on every step while the learner's action is executed on most of
them; its next step must see the executed action and that step's rewards.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rltransfer.agents.agent_policy import AgentPolicy, RecurrentPolicyState
from rltransfer.agents.r2d2.actor import Collector
from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.policy import CallablePolicy, RandomPolicy, observe_step
from rltransfer.evaluation.protocol import evaluate_policy
from rltransfer.explore import EpsilonGreedy
from rltransfer.intrinsic.constant import ConstantReward
from rltransfer.methods.behavior_transfer import PriorPolicyDriver

FRAME = (1, 2, 2)
LSTM = R2D2Config(core="lstm", torso="mlp", feature_dim=8, hidden=8, lstm_hidden=6)


class CountingEnv:
    """A two-env stand-in for the vector env: reward of env i for action a is 1 + a + 10 i,
    episodes never end (so every step after the first is a continuation)."""

    num_envs = 2
    single_observation_space = gym.spaces.Box(0, 255, FRAME, np.uint8)
    single_action_space = gym.spaces.Discrete(3)

    def __init__(self) -> None:
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.full((2, *FRAME), self.t % 7, dtype=np.uint8)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.t = 0
        return self._obs(), {}

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        self.t += 1
        reward = 1.0 + np.asarray(actions, np.float64) + 10.0 * np.arange(2)
        no = np.zeros(2, dtype=bool)
        return self._obs(), reward, no, no, {"task_reward": reward}

    def close(self) -> None:
        pass


class ActQSpy:
    """Wraps ``agent.act_q`` and records the previous-step inputs of every call."""

    def __init__(self, agent: R2D2Agent) -> None:
        self.inner = agent.act_q
        self.calls: list[dict[str, np.ndarray]] = []

    def __call__(self, obs: Any, state: Any, first: Any, prev_action: Any = None,
                 prev_reward: Any = None, prev_intrinsic_reward: Any = None,
                 **kw: Any) -> Any:
        self.calls.append({
            "first": np.array(first, bool),
            "prev_action": np.array(prev_action, np.int64),
            "prev_reward": np.array(prev_reward, np.float32),
            "prev_intrinsic": np.array(prev_intrinsic_reward, np.float32),
        })
        return self.inner(obs, state, first, prev_action, prev_reward, prev_intrinsic_reward,
                          **kw)


def _prior(extrinsic_reward_input: bool = True) -> tuple[AgentPolicy, ActQSpy]:
    torch.manual_seed(5)
    agent = R2D2Agent(LSTM, FRAME, 255.0, 3)
    spy = ActQSpy(agent)
    agent.act_q = spy  # type: ignore[method-assign]
    return AgentPolicy(agent, 3, extrinsic_reward_input=extrinsic_reward_input), spy


def test_recurrent_prior_sees_the_executed_action_and_last_rewards() -> None:
    prior, spy = _prior()
    torch.manual_seed(0)
    learner = R2D2Agent(R2D2Config(torso="mlp", feature_dim=8, hidden=8), FRAME, 255.0, 3)
    rng = np.random.default_rng(0)
    # epsilon 1: the learner's (random) action is executed on every step, pi_p's never.
    explorer = EpsilonGreedy(1.0, 3, extra_action=False, rng=rng)
    driver = PriorPolicyDriver(prior)
    proposals: list[np.ndarray] = []
    driver_act = driver.act

    def recording_act(obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        out = driver_act(obs, first)
        proposals.append(out.copy())
        return out

    driver.act = recording_act  # type: ignore[method-assign]
    col = Collector(CountingEnv(), learner, explorer, frame_shape=FRAME, frame_stack=1,  # type: ignore[arg-type]
                    rng=rng, intrinsic=ConstantReward(0.25), intrinsic_scale=1.0,
                    prior_driver=driver)
    col.begin(seed=0)
    executed = [col.step()[0].env_actions.copy() for _ in range(12)]
    assert len(spy.calls) == 12
    assert spy.calls[0]["first"].all() and not spy.calls[1]["first"].any()
    differs = 0
    for t in range(1, 12):
        a = executed[t - 1]
        # a_{t-1} is what the env executed, not pi_p's own proposal ...
        np.testing.assert_array_equal(spy.calls[t]["prev_action"], a)
        differs += int((proposals[t - 1] != a).sum())
        # ... and r_{t-1} is that step's reward: 1 + a + 10 i by construction; r_i = 0.25.
        np.testing.assert_array_equal(spy.calls[t]["prev_reward"],
                                      (1.0 + a + np.array([0.0, 10.0])).astype(np.float32))
        np.testing.assert_array_equal(spy.calls[t]["prev_intrinsic"], [0.25, 0.25])
    assert differs >= 5, "the learner's action must differ from pi_p's proposal on some steps"


def test_reward_free_prior_is_fed_zero_extrinsic_rewards() -> None:
    prior, spy = _prior(extrinsic_reward_input=False)
    obs = np.zeros((2, *FRAME), np.uint8)
    state = prior.reset(2)
    _, state = prior.act(obs, state, np.ones(2, bool))
    state = observe_step(prior, state, np.array([2, 0]), np.array([3.0, 4.0]),
                         np.array([0.5, 0.0]))
    assert isinstance(state, RecurrentPolicyState)
    prior.act(obs, state, np.zeros(2, bool))
    np.testing.assert_array_equal(spy.calls[1]["prev_action"], [2, 0])
    np.testing.assert_array_equal(spy.calls[1]["prev_reward"], [0.0, 0.0])
    np.testing.assert_array_equal(spy.calls[1]["prev_intrinsic"], [0.5, 0.0])


def test_learner_policy_passes_observations_on_to_its_prior() -> None:
    prior, spy = _prior()
    torch.manual_seed(1)
    bt_agent = R2D2Agent(LSTM, FRAME, 255.0, 4, num_env_actions=3)  # |A| + a+
    policy = AgentPolicy(bt_agent, 3, prior=prior)
    obs = np.zeros((2, *FRAME), np.uint8)
    state = policy.reset(2)
    _, state = policy.act(obs, state, np.ones(2, bool))
    state = policy.observe(np.array([1, 2]), np.array([0.0, 7.0]), np.zeros(2), state)
    np.testing.assert_array_equal(state.prev_action, [1, 2])
    np.testing.assert_array_equal(state.prior.prev_action, [1, 2])
    np.testing.assert_array_equal(state.prior.prev_reward, [0.0, 7.0])
    policy.act(obs, state, np.zeros(2, bool))
    np.testing.assert_array_equal(spy.calls[-1]["prev_action"], [1, 2])


class OldStylePolicy:
    """A custom policy written before ``observe`` existed."""

    num_actions = 3

    def reset(self, num_envs: int) -> list[int]:
        return [0] * num_envs

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        return np.zeros(obs.shape[0], np.int64), state


def test_stateless_and_old_style_policies_ignore_observe() -> None:
    acts, r = np.array([1, 2]), np.array([1.0, 2.0])
    for policy in (CallablePolicy(lambda o: np.zeros(o.shape[0]), 3), RandomPolicy(3)):
        assert observe_step(policy, None, acts, r, r) is None
    driver = PriorPolicyDriver(OldStylePolicy(), num_envs=2)
    state_before = driver.state
    driver.act(np.zeros((2, *FRAME), np.uint8), np.ones(2, bool))
    driver.observe(acts, r, r)
    assert driver.state is state_before


class ScriptedRecorder:
    """Empty-5x5 solved by a script (forward, forward, turn right, forward, forward); records
    what ``observe`` is told."""

    num_actions = 7
    SCRIPT = (2, 2, 1, 2, 2)

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def reset(self, num_envs: int) -> int:
        return 0

    def act(self, obs: np.ndarray, state: int, first: np.ndarray) -> tuple[np.ndarray, int]:
        t = 0 if first[0] else state
        return np.array([self.SCRIPT[t % 5]]), t

    def observe(self, actions: np.ndarray, rewards_extrinsic: np.ndarray,
                rewards_intrinsic: np.ndarray, state: int) -> int:
        self.seen.append((int(actions[0]), float(rewards_extrinsic[0])))
        assert float(rewards_intrinsic[0]) == 0.0
        return state + 1


def test_evaluation_tells_the_policy_the_executed_actions_and_rewards() -> None:
    policy = ScriptedRecorder()
    returns = evaluate_policy(policy, "MiniGrid-Empty-5x5-v0", num_episodes=1, seed=0,
                              num_envs=1)
    # MiniGrid's reward at the goal: 1 - 0.9 * steps / max_steps, max_steps = 4 * 5 * 5.
    expected = 1.0 - 0.9 * 5 / 100
    assert returns.tolist() == [expected]
    # observe receives float32 rewards
    assert policy.seen == [(2, 0.0), (2, 0.0), (1, 0.0), (2, 0.0),
                           (2, float(np.float32(expected)))]


def test_epsilon_wrapper_replaces_actions_with_the_seeded_uniform_draws() -> None:
    from rltransfer.methods.behavior_transfer import EpsilonPolicy, with_epsilon

    base = CallablePolicy(lambda o: np.full(o.shape[0], 6), 7)
    assert with_epsilon(base, 0.0) is base
    wrapped = with_epsilon(base, 0.5, seed=3)
    assert isinstance(wrapped, EpsilonPolicy) and wrapped.num_actions == 7
    obs = np.zeros((1000, *FRAME), np.uint8)
    actions, _ = wrapped.act(obs, wrapped.reset(1000), np.ones(1000, bool))
    # Same draws by hand: u < 0.5 picks rng.integers(0, 7), else pi_p's 6.
    rng = np.random.default_rng(3)
    explore = rng.random(1000) < 0.5
    expected = np.where(explore, rng.integers(0, 7, size=1000), 6)
    np.testing.assert_array_equal(actions, expected)
    assert 400 < explore.sum() < 600
    with np.testing.assert_raises(ValueError):
        EpsilonPolicy(base, 1.5)
    # observe is passed on to the wrapped policy.
    prior, _ = _prior()
    eps_prior = EpsilonPolicy(prior, 0.0)
    state = eps_prior.reset(2)
    _, state = eps_prior.act(np.zeros((2, *FRAME), np.uint8), state, np.ones(2, bool))
    state = observe_step(eps_prior, state, np.array([2, 1]), np.array([1.0, 0.0]))
    assert isinstance(state, RecurrentPolicyState)
    np.testing.assert_array_equal(state.prev_action, [2, 1])
