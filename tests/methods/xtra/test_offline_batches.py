"""Offline EfficientZero batches (MuZero Reanalyze from a dataset) and one game's view of a
union-width world model (GameModel on the GameAdapter)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.mcts import BatchedMCTS, MCTSConfig
from rltransfer.agents.efficientzero.networks import EfficientZeroNet, world_model_preset
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.agents.efficientzero.shared_space import GameAdapter, GameModel
from rltransfer.envs.shared_actions import ActionSpaceMismatchError, minatar_action_space
from rltransfer.methods.xtra.offline_batches import OfflineBatches, replay_from_dataset
from rltransfer.replay.offline import Episode, OfflineDataset

BREAKOUT = minatar_action_space("MinAtar/Breakout-v1")  # legal [0, 1, 3] of 6


def tiny_dataset(seed: int = 0, lengths: tuple[int, ...] = (12, 9, 15),
                 channels: int = 4) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    eps = []
    for i, n in enumerate(lengths):
        pol = rng.random((n, 3)).astype(np.float32)
        eps.append(Episode(rng.integers(0, 2, (n + 1, channels, 10, 10), dtype=np.uint8),
                           rng.integers(0, 3, n), rng.integers(0, 2, n).astype(np.float32),
                           i != 1, i == 1, rng.normal(size=n).astype(np.float32),
                           pol / pol.sum(1, keepdims=True), np.ones(n, dtype=bool)))
    return OfflineDataset.from_episodes("MinAtar/Breakout-v1", BREAKOUT, eps, frame_stack=2)


def tiny_net(channels: int, width: int, seed: int = 0, stack: int = 2) -> EfficientZeroNet:
    torch.manual_seed(seed)
    return EfficientZeroNet(world_model_preset("small"), (channels * stack, 10, 10), width)


MCTS = MCTSConfig(num_simulations=4, discount=0.99)


def test_replay_holds_every_episode_padded() -> None:
    data = tiny_dataset()
    replay = replay_from_dataset(data, unroll_steps=5, td_steps=5, channels=10)
    assert replay.frame_shape == (10, 10, 10)
    assert replay.num_added == data.num_steps + data.num_episodes
    assert int(replay.valid.sum()) == data.num_steps
    np.testing.assert_array_equal(replay.frames[0, 0, :4], data.frames[0])
    assert not replay.frames[0, :, 4:].any()
    np.testing.assert_array_equal(replay.actions[0, :12], data.actions[:12])


def test_union_batch_shapes_and_scatter() -> None:
    data = tiny_dataset()
    batches = OfflineBatches(data, MCTS, discount=0.99, channels=10,
                             reanalyse=ReanalyseConfig(reanalyse_fraction=0.5,
                                                       value_target="network"))
    teacher = GameModel(tiny_net(10, 3), BREAKOUT, 10, 2)
    batch = batches.sample(teacher, 8, np.random.default_rng(0), union=True)
    batch.check((20, 10, 10), 5, 6)
    assert set(np.unique(batch.actions.numpy())) <= {0, 1, 3}
    # illegal slots of the scattered policy targets are exactly zero
    assert float(batch.target_policies[..., [2, 4, 5]].abs().sum()) == 0.0
    inside = batch.mask > 0
    np.testing.assert_allclose(batch.target_policies.sum(-1)[inside].numpy(), 1.0, atol=1e-5)
    assert torch.all(batch.weights == 1)


def test_teacher_targets_do_not_change_when_the_student_changes() -> None:
    data = tiny_dataset()
    batches = OfflineBatches(data, MCTS, discount=0.99, channels=10)
    teacher_net = tiny_net(10, 3, seed=1)
    student = tiny_net(10, 6, seed=2)
    teacher = GameModel(teacher_net, BREAKOUT, 10, 2)
    before = batches.sample(teacher, 8, np.random.default_rng(5), union=True)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    state = copy.deepcopy(teacher_net.state_dict())
    after = batches.sample(teacher, 8, np.random.default_rng(5), union=True)
    for name in ("target_values", "target_policies", "target_value_prefixes", "actions"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    for k, v in teacher_net.state_dict().items():  # the teacher itself is untouched
        assert torch.equal(v, state[k]), k


class SpyModel(GameModel):
    """Records the ids the network's dynamics receives."""

    seen: list[torch.Tensor]

    def union_actions(self, actions: torch.Tensor) -> torch.Tensor:
        ids = super().union_actions(actions)
        self.seen.append(ids.clone())
        return ids


def test_game_model_slices_every_node_and_maps_actions() -> None:
    net = tiny_net(10, 6)
    last = net.prediction.policy_mlp[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():  # illegal actions are the most attractive at every node
        last.bias[[2, 4, 5]] = 50.0
    model = SpyModel(net, BREAKOUT, 4, 2).eval()
    model.seen = []
    obs = torch.randint(0, 2, (3, 8, 10, 10), dtype=torch.uint8)
    root = model.initial_inference(obs)
    assert root.policy_logits.shape == (3, 3)
    result = BatchedMCTS(MCTS, 3).search(model, root, np.random.default_rng(0))
    assert result.visit_counts.shape == (3, 3)
    ids = torch.cat(model.seen)
    assert ids.numel() == 3 * MCTS.num_simulations
    assert set(ids.tolist()) <= {0, 1, 3}


def test_network_obs_pads_and_cuts_per_frame() -> None:
    obs = torch.arange(2 * 4 * 1 * 1).reshape(1, 8, 1, 1)
    out = GameAdapter(BREAKOUT, frame_channels=4, frame_stack=2, channels=6).network_obs(obs)
    assert out.shape == (1, 12, 1, 1)
    assert out[0, :4, 0, 0].tolist() == [0, 1, 2, 3] and out[0, 4:6].abs().sum() == 0
    assert out[0, 6:10, 0, 0].tolist() == [4, 5, 6, 7]
    # a narrower network (a teacher of the game's own channels) gets the padding cut off
    back = GameAdapter(BREAKOUT, frame_channels=6, frame_stack=2, channels=4).network_obs(out)
    assert torch.equal(back, obs)
    with pytest.raises(ActionSpaceMismatchError, match="game data"):  # not padding: refused
        GameAdapter(BREAKOUT, frame_channels=4, frame_stack=2, channels=3).network_obs(obs)


def test_game_model_reads_padded_frames_with_a_narrower_teacher() -> None:
    teacher = tiny_net(4, 3)  # Breakout's own 4 channels and 3 actions
    model = GameModel(teacher, BREAKOUT, 10, 2)
    padded = GameAdapter(BREAKOUT, 4, 2, channels=10).network_obs(
        torch.randint(0, 2, (3, 8, 10, 10), dtype=torch.uint8))
    with torch.no_grad():
        want = teacher.initial_inference(
            torch.cat([padded[:, :4], padded[:, 10:14]], dim=1))
    got = model.initial_inference(padded)
    np.testing.assert_array_equal(got.policy_logits, want.policy_logits)
    assert not model.adapter.maps_actions


def test_game_model_rejects_other_widths() -> None:
    with pytest.raises(ActionSpaceMismatchError):
        GameModel(tiny_net(4, 5), BREAKOUT, 4, 2)
    with pytest.raises(ActionSpaceMismatchError):  # 8 input channels are not 3 frames
        GameModel(tiny_net(4, 3), BREAKOUT, 4, 3)
