"""EfficientZero's self-play actor (agents/efficientzero/actor.py), the one acting code of the
local loop and the Ray workers: determinism from its seed, warm-up actions without a search,
records replay takes, and the checks on its inputs."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.actor import (
    SelfPlayActor,
    SelfPlayStep,
    discrete_actions,
)
from rltransfer.agents.efficientzero.config import ez_env_kwargs, ez_net_config
from rltransfer.agents.efficientzero.networks import EfficientZeroNet
from rltransfer.core.config import to_dict
from rltransfer.distributed.selfplay import SelfPlayWorker
from rltransfer.envs import env_spec, make_env
from rltransfer.experiments.efficientzero import ez_small

torch.set_num_threads(1)
CFG = dataclasses.replace(ez_small(run_dir="unused", total_env_steps=64), num_envs=2,
                          max_episode_frames=30)
CFG = dataclasses.replace(CFG, mcts=dataclasses.replace(CFG.mcts, num_simulations=4))


def _net(envs: Any) -> EfficientZeroNet:
    c, h, w = envs.single_observation_space.shape
    stack = CFG.frame_stack or env_spec(CFG.env_id).frame_stack
    torch.manual_seed(0)
    return EfficientZeroNet(ez_net_config(CFG), (c * stack, h, w), discrete_actions(envs))


def _actor(seed: int = 5) -> SelfPlayActor:
    envs = make_env(CFG.env_id, CFG.num_envs, 0, **ez_env_kwargs(CFG))
    net = _net(envs).eval()
    actor = SelfPlayActor(envs, net.requires_grad_(False), CFG, seed=seed)
    actor.begin(seed=11)
    return actor


def _play(actor: SelfPlayActor, steps: int, random_until: int) -> list[SelfPlayStep]:
    out = []
    for t in range(steps):
        record, _, _ = actor.step(t * CFG.num_envs, random_actions=t < random_until)
        record.obs = np.array(record.obs, copy=True)
        out.append(record)
    return out


def test_same_seed_same_games_and_searches() -> None:
    a, b = _actor(), _actor()
    sa, sb = SelfPlayStep.stack(_play(a, 6, 3)), SelfPlayStep.stack(_play(b, 6, 3))
    for name, value in sa.to_arrays().items():
        np.testing.assert_array_equal(value, sb.to_arrays()[name], err_msg=name)
    assert sa.policy.shape == (6, 2, 3) and sa.obs.shape[:2] == (6, 2)
    np.testing.assert_allclose(sa.policy[:3], 1 / 3)  # warm-up: uniform, no search
    np.testing.assert_array_equal(sa.root_values[:3], 0.0)
    np.testing.assert_allclose(sa.policy[3:] * 4, np.round(sa.policy[3:] * 4), atol=1e-6)
    other = SelfPlayStep.stack(_play(_actor(seed=6), 6, 3))
    assert not np.array_equal(other.actions, sa.actions)  # another seed, other actions
    for actor in (a, b):
        actor.close()


def test_record_round_trip_and_single_steps() -> None:
    actor = _actor()
    steps = _play(actor, 3, 3)
    stacked = SelfPlayStep.stack(steps)
    again = SelfPlayStep.from_arrays({**stacked.to_arrays(), "episode_step": np.zeros(0)})
    for t, step in enumerate(steps):
        for name, value in again.at(t).to_arrays().items():
            np.testing.assert_array_equal(value, step.to_arrays()[name])
    actor.close()


def test_step_before_begin_and_non_discrete_actions_are_refused() -> None:
    envs = make_env(CFG.env_id, CFG.num_envs, 0, **ez_env_kwargs(CFG))
    actor = SelfPlayActor(envs, _net(envs), CFG)
    with pytest.raises(RuntimeError, match="begin"):
        actor.step(0)
    actor.close()

    class Continuous:
        single_action_space = gym.spaces.Box(-1.0, 1.0, (2,))

    with pytest.raises(ValueError, match="Discrete"):
        discrete_actions(cast(Any, Continuous()))


def test_the_ray_worker_runs_the_same_actor() -> None:
    worker = SelfPlayWorker(to_dict(CFG), 2, 0, env_seed=3, weights=None)
    assert isinstance(worker.actor, SelfPlayActor) and worker.actor.num_envs == 1
    chunk = worker.collect(2, env_steps=0, random_actions=True)
    assert chunk["actions"].shape == (2, 1)
    worker.close()
