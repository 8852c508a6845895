"""EfficientZero over a shared action space (issue 12 item 2): the search masks illegal ids at
every node, local ids and policies become union ids and scattered targets in learner batches,
observations are channel-padded, a tiny MinAtar run trains and evaluates in the union, and a
checkpoint of another action space is refused with one clear error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.config import EfficientZeroConfig, EZTrainConfig
from rltransfer.agents.efficientzero.learner import EfficientZeroLearner
from rltransfer.agents.efficientzero.mcts import BatchedMCTS, MCTSConfig, ModelOutput
from rltransfer.agents.efficientzero.networks import EfficientZeroNet, world_model_preset
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig, Reanalyser
from rltransfer.agents.efficientzero.shared_space import (
    GameAdapter,
    check_transfer_space,
    resolve_action_space,
)
from rltransfer.agents.efficientzero.train import EZTrainer
from rltransfer.core.checkpoint import latest_checkpoint, load_checkpoint
from rltransfer.core.config import ConfigError
from rltransfer.envs.shared_actions import (
    ActionSpace,
    ActionSpaceMismatchError,
    local_action_space,
    minatar_action_space,
)
from rltransfer.experiments.efficientzero import ez_small
from rltransfer.replay.game_segment import GameSegmentReplay

BREAKOUT = minatar_action_space("MinAtar/Breakout-v1")  # legal [0, 1, 3] of 6
ASTERIX = minatar_action_space("MinAtar/Asterix-v1")  # legal [0, 1, 2, 3, 4] of 6
U = 6


def _random_net(obs_shape: tuple[int, int, int], seed: int) -> EfficientZeroNet:
    """A small world model with every parameter redrawn (the heads start at zero otherwise,
    which would make every prior uniform)."""
    torch.manual_seed(seed)
    net = EfficientZeroNet(world_model_preset("small"), obs_shape, U)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    return net.eval()


class FavourIllegal:
    """A random network whose policy logits are +50 at the illegal ids of each row: the
    search must still never pick them. Records every action it is asked to step with."""

    def __init__(self, net: EfficientZeroNet, mask: np.ndarray) -> None:
        self.net, self.mask = net, mask
        self.actions: list[np.ndarray] = []

    def _bias(self, out: ModelOutput) -> ModelOutput:
        out.policy_logits = out.policy_logits + 50.0 * (~self.mask)
        return out

    def initial_inference(self, obs: torch.Tensor) -> ModelOutput:
        return self._bias(self.net.initial_inference(obs))

    def recurrent_inference(self, latent: torch.Tensor,
                            reward_hidden: tuple[torch.Tensor, torch.Tensor],
                            actions: torch.Tensor) -> ModelOutput:
        self.actions.append(actions.numpy().copy())
        return self._bias(self.net.recurrent_inference(latent, reward_hidden, actions))


@pytest.mark.parametrize("noise", [True, False])
def test_masked_search_never_selects_an_illegal_action_at_any_node(noise: bool) -> None:
    net = _random_net((10, 10, 10), seed=3)
    mask = np.array([[i in ids for i in range(U)] for ids in
                     (BREAKOUT.legal_ids, ASTERIX.legal_ids, (2,), (0, 5))])
    model = FavourIllegal(net, mask)
    obs = torch.rand(4, 10, 10, 10)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=150, value_prefix_horizon=3), U)
    result = mcts.search(model, model.initial_inference(obs), np.random.default_rng(0),
                         add_exploration_noise=noise, action_mask=mask)
    tree = mcts.tree
    assert tree is not None
    expanded = tree.visit_count > 0  # [B, N]: every node of every tree was expanded
    assert expanded.all()
    illegal = ~mask[:, None, :]
    # no node ever got an illegal child, every prior of an illegal id is exactly 0
    assert (tree.children[np.broadcast_to(illegal, tree.children.shape)] == -1).all()
    assert (tree.priors[np.broadcast_to(illegal, tree.priors.shape)] == 0.0).all()
    np.testing.assert_allclose(tree.priors.sum(axis=2), 1.0, rtol=1e-12)
    assert (tree.root_prior_without_noise[~mask] == 0.0).all()
    # interior nodes below the root were expanded too (the mask matters beyond the root)
    assert (tree.depth.max(axis=1) >= 2).all()
    # every action the model was stepped with was legal in its row
    for acts in model.actions:
        assert mask[np.arange(4), acts].all()
    assert (result.visit_counts[~mask] == 0).all() and (result.policy[~mask] == 0).all()
    assert (result.visit_counts.sum(axis=1) == 150).all()
    # the single-legal-action row spends every simulation below action 2
    assert result.visit_counts[2, 2] == 150


def test_all_true_mask_is_the_unmasked_search() -> None:
    net = _random_net((4, 10, 10), seed=5)
    obs = torch.rand(3, 4, 10, 10)
    runs = []
    for mask in (None, np.ones((3, U), dtype=bool)):
        mcts = BatchedMCTS(MCTSConfig(num_simulations=30), U)
        result = mcts.search(net, net.initial_inference(obs), np.random.default_rng(1),
                             action_mask=mask)
        runs.append((result, mcts.tree))
    (a, ta), (b, tb) = runs
    assert ta is not None and tb is not None
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_array_equal(a.root_values, b.root_values)
    np.testing.assert_array_equal(ta.priors, tb.priors)
    np.testing.assert_array_equal(ta.value_sum, tb.value_sum)


def test_search_mask_errors() -> None:
    net = _random_net((4, 10, 10), seed=0)
    root = net.initial_inference(torch.rand(2, 4, 10, 10))
    mcts = BatchedMCTS(MCTSConfig(num_simulations=2), U)
    with pytest.raises(ValueError, match="action_mask must be bool"):
        mcts.search(net, root, np.random.default_rng(0), action_mask=np.ones((2, 5), bool))
    empty = np.ones((2, U), bool)
    empty[1] = False
    with pytest.raises(ValueError, match="no legal action"):
        mcts.search(net, root, np.random.default_rng(0), action_mask=empty)
    legal = np.zeros((2, U), bool)
    legal[:, 2] = True  # legal at the root, but masked for the game
    with pytest.raises(ValueError, match="leave a root with no legal action"):
        mcts.search(net, root, np.random.default_rng(0), legal_actions=legal,
                    action_mask=np.broadcast_to(~legal[0], (2, U)).copy())


def test_adapter_maps_actions_policies_and_channels() -> None:
    adapter = GameAdapter(BREAKOUT, frame_channels=4, frame_stack=2, channels=10)
    np.testing.assert_allclose(adapter.union_policy(np.array([0.2, 0.5, 0.3])),
                               [0.2, 0.5, 0.0, 0.3, 0.0, 0.0])
    np.testing.assert_array_equal(adapter.union_actions(np.array([0, 1, 2])), [0, 1, 3])
    np.testing.assert_array_equal(adapter.union_actions(torch.tensor([2, 0])), [3, 0])
    np.testing.assert_array_equal(adapter.local(np.arange(6)), [0, 1, 3])
    obs = np.arange(2 * 8 * 3 * 3, dtype=np.uint8).reshape(2, 8, 3, 3)
    padded = adapter.network_obs(obs)
    assert padded.shape == (2, 20, 3, 3) and adapter.obs_shape((4, 3, 3)) == (20, 3, 3)
    np.testing.assert_array_equal(padded[:, :4], obs[:, :4])  # frame 1, then zeros
    np.testing.assert_array_equal(padded[:, 10:14], obs[:, 4:])  # frame 2, then zeros
    assert not padded[:, 4:10].any() and not padded[:, 14:].any()
    assert torch.equal(adapter.network_obs(torch.from_numpy(obs)), torch.from_numpy(padded))
    with pytest.raises(ActionSpaceMismatchError, match="local action ids"):
        adapter.union_actions(np.array([3]))
    ident = GameAdapter.identity(3, 4)
    assert ident.is_identity and ident.search_mask(2) is None
    assert ident.union_policy(p := np.ones(3) / 3) is p
    assert resolve_action_space(None, "MinAtar/Breakout-v1", 3) == local_action_space(3)
    assert resolve_action_space("minatar-union", "MinAtar/Breakout-v1", 3) == BREAKOUT
    with pytest.raises(ConfigError, match="applies to atari games"):
        resolve_action_space("atari-full", "MinAtar/Breakout-v1", 3)


def test_reanalysed_batch_is_union_wide_with_scattered_policy_targets() -> None:
    """Breakout's stored policy [0.2, 0.5, 0.3] is the union target [0.2, 0.5, 0, 0.3, 0, 0];
    stored local actions become union ids; frames are padded 4 -> 10 channels."""
    rng = np.random.default_rng(0)
    replay = GameSegmentReplay(1, 32, (4, 10, 10), 3, frame_stack=1, unroll_steps=2,
                               td_steps=2)
    local_actions = [0, 1, 2, 2, 1, 0, 2, 1, 0, 1, 2, 0]
    for a in local_actions:
        replay.add(rng.integers(0, 2, (1, 4, 10, 10), dtype=np.uint8), np.array([a]),
                   np.array([1.0]), np.array([False]), np.array([False]), np.array([0.5]),
                   np.array([[0.2, 0.5, 0.3]]))
    adapter = GameAdapter(BREAKOUT, frame_channels=4, frame_stack=1, channels=10)
    reanalyser = Reanalyser(replay, MCTSConfig(num_simulations=4, discount=0.9), discount=0.9,
                            value_prefix_horizon=5, total_env_steps=100,
                            config=ReanalyseConfig(reanalyse_fraction=0.0), adapter=adapter)
    stored = np.array([0.2, 0.5, 0.3], dtype=np.float32)
    assert (replay.policies[0, :len(local_actions)] == stored).all()  # replay: local width
    net = _random_net((10, 10, 10), seed=1)
    indices = np.array([0, 3, 6])
    batch = reanalyser.targets(net, indices, np.ones(3, np.float32), rng)
    batch.check((10, 10, 10), 2, U)
    np.testing.assert_allclose(batch.target_policies.numpy(),
                               np.broadcast_to([0.2, 0.5, 0.0, 0.3, 0.0, 0.0], (3, 3, 6)),
                               rtol=1e-6)
    union_of = np.array(BREAKOUT.legal_ids)
    want = union_of[np.array(local_actions)[indices[:, None] + np.arange(2)]]
    np.testing.assert_array_equal(batch.actions.numpy(), want)
    assert not batch.obs[:, 4:].any() and not batch.future_obs[:, :, 4:].any()
    np.testing.assert_array_equal(batch.obs[:, :4].numpy(),
                                  replay.stacked_obs(np.zeros(3, np.int64), indices))
    # fresh searches: union-width, illegal ids never visited, stored back as local targets
    fresh = Reanalyser(replay, MCTSConfig(num_simulations=8, discount=0.9), discount=0.9,
                       value_prefix_horizon=5, total_env_steps=100,
                       config=ReanalyseConfig(reanalyse_fraction=1.0), adapter=adapter)
    batch = fresh.targets(net, indices, np.ones(3, np.float32), rng)
    pol = batch.target_policies.numpy()
    assert (pol[..., [2, 4, 5]] == 0).all()
    np.testing.assert_allclose(pol.sum(axis=-1), 1.0, rtol=1e-6)
    learner = EfficientZeroLearner(EfficientZeroConfig(lr_warmup_updates=1, unroll_steps=2),
                                   world_model_preset("small"), (10, 10, 10), U,
                                   action_space=BREAKOUT)
    assert np.isfinite(learner.update(batch).metrics["loss"])


def _learner(seed: int, action_space: ActionSpace | None = None) -> EfficientZeroLearner:
    torch.manual_seed(seed)
    return EfficientZeroLearner(EfficientZeroConfig(), world_model_preset("small"),
                                (10, 10, 10), U, action_space=action_space)


def test_loading_state_of_another_action_space_raises_before_changing_anything() -> None:
    source = _learner(1, action_space=ASTERIX)  # same width 6, other legal ids
    tensors, meta = source.state_tensors(), source.state_meta()
    assert meta["action_space"] == ASTERIX.to_json()
    dest = _learner(2, action_space=BREAKOUT)
    before = {k: v.clone() for k, v in dest.state_tensors().items()}
    with pytest.raises(ActionSpaceMismatchError, match="legal_ids"):
        dest.load_state_tensors(tensors, meta)
    local = _learner(3)  # the env's own 6 actions, shapes equal too
    with pytest.raises(ActionSpaceMismatchError, match="minatar"):
        dest.load_state_tensors(local.state_tensors(), local.state_meta())
    old_meta = {k: v for k, v in local.state_meta().items() if k != "action_space"}
    with pytest.raises(ActionSpaceMismatchError):  # saved before spaces were recorded
        dest.load_state_tensors(local.state_tensors(), old_meta)
    after = dest.state_tensors()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    same = _learner(4, action_space=BREAKOUT)
    dest.load_state_tensors(same.state_tensors(), same.state_meta())  # the same space loads
    with pytest.raises(ActionSpaceMismatchError, match="has 6 actions"):
        EfficientZeroLearner(EfficientZeroConfig(), world_model_preset("small"),
                             (10, 10, 10), U, action_space=local_action_space(3))


def test_transfer_checks_the_action_union() -> None:
    arch_asterix = {"action_space": ASTERIX.to_json(), "num_actions": 5}
    check_transfer_space(BREAKOUT, arch_asterix, ["prediction", "dynamics"], "src")  # one union
    with pytest.raises(ActionSpaceMismatchError, match="one action union"):
        check_transfer_space(BREAKOUT, {"num_actions": 6}, ["prediction"], "runs/local")
    check_transfer_space(BREAKOUT, {"num_actions": 6}, ["representation"], "runs/local")
    check_transfer_space(local_action_space(3), {"num_actions": 5}, ["prediction"], "x")


_UNKNOWN_SPACE: Any = "full"


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="action_space must be one of"):
        EZTrainConfig(action_space=_UNKNOWN_SPACE).validate()
    with pytest.raises(ConfigError, match="applies to atari games"):
        EZTrainConfig(action_space="atari-full").validate()
    EZTrainConfig(action_space="minatar-union", backend="ray").validate()  # Ray self-play too
    with pytest.raises(ConfigError, match="pad_channels must be >= 1"):
        EZTrainConfig(pad_channels=0).validate()
    EZTrainConfig(action_space="minatar-union", pad_channels=10).validate()


def test_tiny_minatar_run_in_the_union_trains_evaluates_and_checkpoints(tmp_path: Path) -> None:
    base = ez_small(run_dir=str(tmp_path / "run"), total_env_steps=200)
    cfg = dataclasses.replace(
        base, num_envs=2, mcts=dataclasses.replace(base.mcts, num_simulations=3),
        batch_size=8, updates_per_env_step=0.1, learning_starts_env_steps=60,
        replay_capacity_env_steps=1_000, checkpoint_every_env_steps=100,
        eval_every_env_steps=200, eval_episodes=1, max_episode_frames=200, progress=False,
        tensorboard=False, reanalyse=ReanalyseConfig(reanalyse_fraction=0.5),
        action_space="minatar-union", pad_channels=10)
    trainer = EZTrainer(cfg)
    assert trainer.learner.network.num_actions == U
    assert trainer.learner.obs_shape == (10, 10, 10)
    assert trainer.replay.num_actions == 3 and trainer.replay.frame_shape == (4, 10, 10)
    result = trainer.run()
    assert result.num_updates > 0 and np.isfinite(result.final_return_mean)
    stored = trainer.replay.actions[:, :trainer.replay.num_added]
    assert stored.min() >= 0 and stored.max() < 3  # the env's local ids
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" for r in records)
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train" and "loss" in r)
    meta = json.loads((tmp_path / "run" / "final" / "meta.json").read_text())
    assert meta["architecture"]["action_space"] == BREAKOUT.to_json()
    assert meta["architecture"]["net_obs_shape"] == [10, 10, 10]
    # the checkpoint's learner state restores into a learner of the same space only
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt is not None
    tensors, ckpt_meta = load_checkpoint(ckpt)
    state = {k: v for k, v in tensors.items() if not k.startswith(("selfplay/", "replay/",
                                                                     "rng/"))}
    same = EfficientZeroLearner(cfg.learner, trainer.net_config, (10, 10, 10), U,
                                action_space=BREAKOUT)
    same.load_state_tensors(state, ckpt_meta["learner_state"])
    other_space = EfficientZeroLearner(cfg.learner, trainer.net_config, (10, 10, 10), U)
    with pytest.raises(ActionSpaceMismatchError, match="learner state has action space"):
        other_space.load_state_tensors(state, ckpt_meta["learner_state"])
    # a run in the env's own actions cannot take g / f of this one
    other = dataclasses.replace(cfg, run_dir=str(tmp_path / "local"), action_space=None,
                                pad_channels=None, init_from=str(tmp_path / "run"),
                                transfer=("representation", "prediction"))
    with pytest.raises(ActionSpaceMismatchError, match="one action union"):
        EZTrainer(other)
