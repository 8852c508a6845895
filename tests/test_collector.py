"""The Collector: one acting step for replay, episode bookkeeping, weight transport."""

from __future__ import annotations

import numpy as np
import torch

from rltransfer.agents.r2d2.actor import (
    Collector,
    StepBatch,
    acting_tensors,
    load_acting_tensors,
    make_explorer,
    make_intrinsic,
)
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.envs import make_env
from rltransfer.explore import actor_epsilons
from rltransfer.replay import TransitionReplay

CFG = TrainConfig(env_id="MiniGrid-Empty-5x5-v0", num_envs=4, intrinsic="rnd",
                  rnd_feature_dim=8, rnd_hidden=8,
                  agent=R2D2Config(feature_dim=16, hidden=16))


def _collector(seed: int = 0, num_envs: int = 4) -> Collector:
    envs = make_env(CFG.env_id, num_envs, seed)
    shape = envs.single_observation_space.shape
    frame = (int(shape[0]), int(shape[1]), int(shape[2]))
    n = int(envs.single_action_space.n)
    torch.manual_seed(seed)
    agent = R2D2Agent(CFG.agent, obs_shape=frame, obs_scale=10.0, num_actions=n)
    rng = np.random.default_rng(seed)
    return Collector(envs, agent, make_explorer(CFG, n, rng, slice(0, num_envs)),
                     frame_shape=frame, frame_stack=1, rng=rng,
                     intrinsic=make_intrinsic(CFG, frame, 10.0, n, num_envs),
                     intrinsic_scale=0.5)


def test_step_feeds_replay_and_counts_episodes() -> None:
    col = _collector()
    col.begin(seed=3)
    replay = TransitionReplay(4, 64, col.frame_shape, n_step=2, gamma=0.9, prioritized=False)
    lengths: list[int] = []
    for _ in range(120):  # Empty-5x5 episodes last at most 100 steps
        record, episodes = col.step()
        assert record.obs.shape == (4, *col.frame_shape) and record.obs.dtype == np.uint8
        # r = r_e + beta * r_i with beta = 0.5
        np.testing.assert_allclose(
            record.reward, record.extrinsic_reward + 0.5 * record.intrinsic_reward, rtol=1e-6)
        record.add_to(replay)
        lengths += episodes.lengths.tolist()
    assert replay.num_added == 120 and replay.can_sample()
    assert lengths and all(1 <= n <= 100 for n in lengths)
    col.close()


def test_step_before_begin_raises() -> None:
    col = _collector()
    try:
        col.step()
    except RuntimeError as e:
        assert "begin" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected RuntimeError")
    col.close()


def test_stack_concat_and_at_roundtrip() -> None:
    def one(v: int, b: int) -> StepBatch:
        z = np.full(b, v)
        return StepBatch(np.full((b, 1, 2, 2), v, np.uint8), z, z, z > 9, z * 1.0, z < 0,
                         z < 0, z * 1.0, z.astype(np.float32), np.zeros((b, 0), np.float32),
                         np.zeros(b, np.int64))
    a = StepBatch.stack([one(1, 2), one(2, 2), one(3, 2)])  # [T=3, 2]
    b = StepBatch.stack([one(4, 3), one(5, 3), one(6, 3)])  # [T=3, 3]
    joined = StepBatch.concat_envs([a, b], axis=1)
    assert joined.obs.shape == (3, 5, 1, 2, 2)
    np.testing.assert_array_equal(joined.at(1).env_actions, [2, 2, 5, 5, 5])
    again = StepBatch.from_arrays(joined.to_arrays())
    np.testing.assert_array_equal(again.reward, joined.reward)


def test_acting_tensors_make_a_copy_act_identically() -> None:
    learner, actor = _collector(seed=0), _collector(seed=1)
    obs = np.random.default_rng(0).integers(0, 5, (4, *learner.frame_shape)).astype(np.uint8)
    assert not np.allclose(learner.agent.q_values(obs), actor.agent.q_values(obs))
    load_acting_tensors(actor.agent, actor.intrinsic, acting_tensors(learner.agent,
                                                                     learner.intrinsic))
    np.testing.assert_array_equal(learner.agent.q_values(obs), actor.agent.q_values(obs))
    # RND predictor and observation statistics travel too (the target is fixed by the seed).
    learner.intrinsic.update_obs_stats(obs)  # type: ignore[union-attr]
    load_acting_tensors(actor.agent, actor.intrinsic, acting_tensors(learner.agent,
                                                                     learner.intrinsic))
    np.testing.assert_array_equal(learner.intrinsic.novelty(obs),  # type: ignore[union-attr]
                                  actor.intrinsic.novelty(obs))  # type: ignore[union-attr]
    learner.close()
    actor.close()


def test_explorer_slices_follow_ape_x_over_all_envs() -> None:
    rng = np.random.default_rng(0)
    eps = actor_epsilons(8)  # 0.4^(1 + 7 i / 7): 0.4, 0.4^2, ..., 0.4^8
    np.testing.assert_allclose(eps[[0, 7]], [0.4, 0.4**8])
    second = make_explorer(TrainConfig(num_envs=8), 7, rng, slice(4, 8))
    np.testing.assert_allclose(second.epsilon, 0.4 ** (1 + np.arange(4, 8)))  # type: ignore[attr-defined]
