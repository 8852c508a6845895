"""EfficientZero targets by hand: value prefixes, n-step values at episode ends, off-policy
correction, reanalysed policies and the search-root value target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.mcts import MCTSConfig, ModelOutput, SearchResult
from rltransfer.agents.efficientzero.reanalyse import (
    ReanalyseConfig,
    Reanalyser,
    bootstrap_plan,
    n_step_value_targets,
    off_policy_td_steps,
    value_prefix_targets,
)
from rltransfer.replay.game_segment import NOT_ENDED, GameSegmentReplay

A = 3
GAMMA = 0.5


class FrameValueModel:
    """A fake target model: the value of an observation is its newest frame's pixel value."""

    def initial_inference(self, obs: torch.Tensor) -> ModelOutput:
        b = obs.shape[0]
        value = obs[:, -1, 0, 0].double().numpy().astype(np.float32)
        zeros = torch.zeros(1, b, 4)
        return ModelOutput(latent=obs.float(), reward_hidden=(zeros, zeros),
                           value_prefix=np.zeros(b, np.float32), value=value,
                           policy_logits=np.zeros((b, A), np.float32))

    def recurrent_inference(self, latent, reward_hidden, actions):  # pragma: no cover
        raise AssertionError("the network value target needs no search")


class FakeSearch:
    """Stands in for BatchedMCTS: root value 100 + v, policy one-hot on v mod A."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def search(self, model, root, rng, add_exploration_noise=True, legal_actions=None):
        self.calls.append(add_exploration_noise)
        v = root.value.astype(np.int64)
        policy = np.eye(A, dtype=np.float32)[v % A]
        return SearchResult(visit_counts=(policy * 8).astype(np.int64),
                            root_values=(100.0 + root.value).astype(np.float32), policy=policy)


def _replay(ends: dict[int, str], num_steps: int, unroll: int = 2,
            td: int = 3) -> GameSegmentReplay:
    """One env; the frame at step s has value s + 1, reward of step s is s + 1 (0 at autoreset),
    action s mod A, stored policy one-hot on (s + 1) mod A."""
    replay = GameSegmentReplay(1, 64, (1, 2, 2), A, frame_stack=2, unroll_steps=unroll,
                               td_steps=td)
    autoreset = False
    for s in range(num_steps):
        end = None if autoreset else ends.get(s)
        replay.add(np.full((1, 1, 2, 2), s + 1, np.uint8), np.array([s % A]),
                   np.array([0.0 if autoreset else s + 1.0]), np.array([end == "term"]),
                   np.array([end == "trunc"]), np.array([0.0]),
                   np.eye(A)[[(s + 1) % A]])
        autoreset = end is not None
    return replay


def _reanalyser(replay: GameSegmentReplay, value_target: str = "network", fraction: float = 0.0,
                tau: float = 0.0, total: int = 1000) -> Reanalyser:
    cfg = ReanalyseConfig(reanalyse_fraction=fraction, value_target=value_target,  # type: ignore[arg-type]
                          off_policy_tau=tau)
    return Reanalyser(replay, MCTSConfig(num_simulations=4, discount=GAMMA), discount=GAMMA,
                      value_prefix_horizon=5, total_env_steps=total, config=cfg)


def _batch(re: Reanalyser, steps: list[int], seed: int = 0):
    idx = np.asarray(steps, dtype=np.int64)  # one env: flat id == slot == step (no wrap)
    return re.targets(FrameValueModel(), idx, np.ones(len(steps), np.float32),
                      np.random.default_rng(seed))


def test_value_prefix_resets_every_horizon() -> None:
    r = np.array([[1.0, 2, 3, 4, 5, 6, 7]])
    np.testing.assert_allclose(value_prefix_targets(r, 3), [[1, 3, 6, 4, 9, 15, 7]])
    np.testing.assert_allclose(value_prefix_targets(r, 5), [[1, 3, 6, 10, 15, 6, 13]])
    with pytest.raises(ValueError, match="horizon"):
        value_prefix_targets(r, 0)


def test_off_policy_correction_shrinks_horizon_with_age() -> None:
    ages = np.array([0, 299, 300, 650, 10_000])
    np.testing.assert_array_equal(off_policy_td_steps(ages, 5, 1000, 0.3), [5, 5, 4, 3, 1])
    np.testing.assert_array_equal(off_policy_td_steps(ages, 5, 1000, 0.0), [5] * 5)


def test_plan_past_termination_and_truncation() -> None:
    start, boot, use = bootstrap_plan(np.array([1, 1, NOT_ENDED]), np.array([True, False, False]),
                                      np.array([3, 3, 2]), 2)
    np.testing.assert_array_equal(start, [[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(boot, [[2, 2, 2], [2, 2, 2], [2, 3, 4]])
    np.testing.assert_array_equal(use, [[False] * 3, [True] * 3, [True] * 3])
    z = n_step_value_targets(np.array([[4.0, 5, 0, 0, 0]] * 2 + [[1.0, 2, 3, 4, 5]]), start, boot,
                             use, np.full((3, 3), 6.0), GAMMA)
    np.testing.assert_allclose(z[0], [4 + 2.5, 5, 0])
    np.testing.assert_allclose(z[1], [4 + 2.5 + 0.25 * 6, 5 + 3, 6])
    np.testing.assert_allclose(z[2], [1 + 1 + 0.25 * 6, 2 + 1.5 + 1.5, 3 + 2 + 1.5])


def test_targets_when_episode_terminates_inside_the_horizon() -> None:
    # Episode 0: steps 0..4 (rewards 1..5), terminated at step 4; step 5 autoreset.
    re = _reanalyser(_replay({4: "term"}, 12))
    b = _batch(re, [0, 2, 3])
    # t=0: z0 bootstraps from step 3 (v = 4); z1 from step 4 (v = 5); z2 hits the termination.
    np.testing.assert_allclose(b.target_values[0], [1 + 1 + 0.75 + 0.125 * 4,
                                                    2 + 1.5 + 1 + 0.125 * 5,
                                                    3 + 2 + 1.25])
    np.testing.assert_allclose(b.target_values[1], [3 + 2 + 1.25, 4 + 2.5, 5])
    np.testing.assert_allclose(b.target_values[2], [4 + 2.5, 5, 0])  # step 5 is past the end
    np.testing.assert_allclose(b.mask, [[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(b.target_value_prefixes, [[1, 3], [3, 7], [4, 9]])
    np.testing.assert_array_equal(b.actions[:2], [[0, 1], [2, 0]])
    assert b.actions[2, 0] == 0  # a_3 = 3 mod 3; a_5 lies past the end (random)
    # Policy targets are the stored ones (fraction 0), zero past the end.
    np.testing.assert_allclose(b.target_policies[2], [np.eye(A)[1], np.eye(A)[2], np.zeros(A)])
    # Stacks: obs at t=3 holds steps 2 and 3; future obs past the end repeat the final obs.
    assert b.obs[2, :, 0, 0].tolist() == [3, 4]
    assert b.future_obs[2, :, -1, 0, 0].tolist() == [5, 6]
    assert b.future_obs.shape == (3, 2, 2, 2, 2) and b.future_obs.dtype == torch.uint8


def test_truncation_bootstraps_from_the_final_observation() -> None:
    re = _reanalyser(_replay({4: "trunc"}, 12))
    b = _batch(re, [3])
    # Final observation (step 5, frame value 6) bootstraps; past the end z = v(final).
    np.testing.assert_allclose(b.target_values[0], [4 + 2.5 + 0.25 * 6, 5 + 0.5 * 6, 6])
    np.testing.assert_allclose(b.mask[0], [1, 1, 0])


def test_off_policy_correction_in_targets() -> None:
    # 20 steps, no episode end; age of position t is 19 - t env steps; tau * T = 0.3 * 20 = 6.
    re = _reanalyser(_replay({}, 20), tau=0.3, total=20)
    b = _batch(re, [14, 7])  # ages 5 (l = 3) and 12 (l = 3 - 2 = 1)
    r = np.arange(1, 21, dtype=np.float64)  # r_s = s + 1, v(step s) = s + 1
    z14 = [sum(GAMMA**i * r[14 + k + i] for i in range(3)) + GAMMA**3 * (14 + k + 3 + 1)
           for k in range(3)]
    z7 = [r[7 + k] + GAMMA * (7 + k + 1 + 1) for k in range(3)]
    np.testing.assert_allclose(b.target_values[0], z14, rtol=1e-6)
    np.testing.assert_allclose(b.target_values[1], z7, rtol=1e-6)


def test_reanalysed_policies_and_root_value_targets() -> None:
    re = _reanalyser(_replay({4: "term"}, 14), value_target="root", fraction=0.5)
    fake = FakeSearch()
    re.mcts = fake  # type: ignore[assignment]
    b = _batch(re, [3, 3])
    # Row 0 is reanalysed: search at steps 3, 4 (frame values 4, 5) -> one-hot on v mod 3.
    np.testing.assert_allclose(b.target_policies[0], [np.eye(A)[1], np.eye(A)[2], np.zeros(A)])
    # Row 1 keeps the stored self-play policies (one-hot on (s + 1) mod 3).
    np.testing.assert_allclose(b.target_policies[1], [np.eye(A)[1], np.eye(A)[2], np.zeros(A)])
    # Root-value targets: t=3 ends at step 4 by termination -> no bootstrap at all.
    np.testing.assert_allclose(b.target_values[0], [4 + 2.5, 5, 0])
    b2 = _batch(re, [0])
    # z0 bootstraps at step 3 with the root value 100 + 4.
    assert b2.target_values[0, 0].item() == pytest.approx(1 + 1 + 0.75 + 0.125 * 104)
    assert True in fake.calls and False in fake.calls  # noisy policy search, noiseless value


def test_make_batch_samples_and_validates() -> None:
    re = _reanalyser(_replay({4: "term", 9: "trunc"}, 20))
    batch = re.make_batch(FrameValueModel(), 16, np.random.default_rng(1), 0.4)
    assert batch.obs.shape == (16, 2, 2, 2) and batch.target_values.shape == (16, 3)
    assert batch.target_policies.shape == (16, 3, A) and batch.weights.max() == pytest.approx(1)
    assert set(batch.indices.tolist()) <= set(re.replay.eligible_indices().tolist())
    with pytest.raises(ValueError, match="discount"):
        Reanalyser(re.replay, MCTSConfig(discount=0.9), discount=0.5, value_prefix_horizon=5,
                   total_env_steps=10)
