"""EfficientZero training batches from an offline dataset, with targets computed by a given
network (MuZero Reanalyze, Schrittwieser et al. 2021; XTRA's teachers and distillation, Xu et
al. 2023 Sec. 3.1; the offline half of its finetuning batches, Sec. 3.2).

The dataset's episodes are written once, in order, into a one-stream
:class:`~rltransfer.replay.game_segment.GameSegmentReplay` (each episode's steps, then its
final observation as the autoreset slot), with uniform sampling (priority exponent 0, all
importance weights 1) and no off-policy correction (``off_policy_tau = 0``: the data has no
age). Targets are then exactly EfficientZero's, built by the one reanalyser
(:class:`~rltransfer.agents.efficientzero.reanalyse.Reanalyser`): ``K`` unroll steps,
value-prefix targets, ``n``-step value targets bootstrapped by the given model, policy targets
from a fresh search of the given model (``reanalyse_fraction``; the rest are the behaviour
policy's stored search policies, uniform where the dataset has none).

The model that computes targets is any network seen through a
:class:`~rltransfer.agents.efficientzero.shared_space.GameModel` (a frozen teacher in
distillation, the student's target network in finetuning), so searches run over the game's
legal actions only.
With ``union=True`` a batch is returned in the union width: actions mapped to union ids and
policy targets scattered into ``U`` slots (zeros at illegal ids).
"""

from __future__ import annotations

import numpy as np
import torch

from rltransfer.agents.efficientzero.batch import EZBatch
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig, Reanalyser, TargetModel
from rltransfer.agents.efficientzero.shared_space import GameAdapter
from rltransfer.envs.shared_actions import pad_channels
from rltransfer.replay.game_segment import GameSegmentReplay
from rltransfer.replay.offline import OfflineDataset, OfflineDatasetError

__all__ = ["OfflineBatches", "concat_batches", "replay_from_dataset"]


def replay_from_dataset(dataset: OfflineDataset, *, unroll_steps: int, td_steps: int,
                        frame_stack: int | None = None, channels: int | None = None,
                        ) -> GameSegmentReplay:
    """A one-stream game-segment replay holding every episode of ``dataset``.

    Args:
        unroll_steps, td_steps: ``K`` and ``n`` of the batches.
        frame_stack: frames per observation (default: the dataset's).
        channels: zero-pad each frame to this many channels (default: the dataset's).

    Returns:
        A :class:`GameSegmentReplay` with ``num_envs = 1``, ``N + E`` slots (``N`` steps,
        ``E`` episodes), ``num_actions = L`` (the game's legal count), priority exponent 0.
        Stored policies are the behaviour policy's search policies where ``search_mask``
        holds, uniform ``1/L`` elsewhere; an episode without an end flag is closed as
        truncated.

    Raises:
        OfflineDatasetError: ``channels`` below the dataset's.
    """
    stack = int(frame_stack or dataset.frame_stack)
    c = dataset.obs_shape[0]
    width = int(channels or c)
    if width < c:
        raise OfflineDatasetError(f"cannot pad {c} channels to {width}")
    frames = pad_channels(dataset.frames, width) if width != c else dataset.frames
    num_legal = dataset.action_space.num_legal
    cap = max(dataset.num_steps + dataset.num_episodes,
              unroll_steps + td_steps + stack + 1)
    replay = GameSegmentReplay(1, cap, (width, *dataset.obs_shape[1:]), num_legal,
                               frame_stack=stack, unroll_steps=unroll_steps, td_steps=td_steps,
                               priority_exponent=0.0)
    uniform = np.full((1, num_legal), 1.0 / num_legal)
    no = np.zeros(1, dtype=bool)
    step, frame = 0, 0
    for length in dataset.episode_lengths.tolist():
        for i in range(length):
            s = step + i
            last = i == length - 1
            term = bool(dataset.terminations[s]) and last
            trunc = last and not term
            if dataset.has_search and dataset.search_mask is not None and dataset.search_mask[s]:
                assert dataset.root_values is not None and dataset.root_policies is not None
                value = np.array([dataset.root_values[s]])
                policy = dataset.root_policies[s][None]
            else:
                value, policy = np.zeros(1), uniform
            replay.add(frames[frame + i][None], dataset.actions[s:s + 1],
                       dataset.rewards[s:s + 1], np.array([term]), np.array([trunc]),
                       value, policy)
        # the final observation: an autoreset slot (its action and flags are ignored)
        replay.add(frames[frame + length][None], np.zeros(1, dtype=np.int64), np.zeros(1),
                   no, no, np.zeros(1), uniform)
        step += length
        frame += length + 1
    return replay


def concat_batches(batches: list[EZBatch]) -> EZBatch:
    """One :class:`EZBatch` of the samples of ``batches`` in order (indices concatenated
    too; they only mean something per part)."""
    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(b, name) for b in batches])

    return EZBatch(obs=cat("obs"), future_obs=cat("future_obs"), actions=cat("actions"),
                   target_value_prefixes=cat("target_value_prefixes"),
                   target_values=cat("target_values"), target_policies=cat("target_policies"),
                   mask=cat("mask"), weights=cat("weights"),
                   indices=np.concatenate([b.indices for b in batches]))


class OfflineBatches:
    """EfficientZero batches from one offline dataset (see the module docstring).

    Args:
        dataset: the episodes (its action space gives ``L`` and ``U``).
        mcts_config: the reanalysis search (its discount must equal ``discount``).
        discount: gamma per env step; value_prefix_horizon: ``H`` (EZ: 5).
        unroll_steps, td_steps: ``K`` and ``n`` (EZ: 5, 5).
        reanalyse: fraction of fresh-search policy targets and the value target kind
            (``off_policy_tau`` is forced to 0).
        frame_stack, channels: as :func:`replay_from_dataset`.
        device: torch device of the target models.

    Attributes:
        replay: the :class:`GameSegmentReplay`; space: the dataset's action space;
        frame_channels: channels of one stored frame (after padding); adapter: the
        :class:`GameAdapter` of ``space`` over the stored frames (local -> union).
    """

    def __init__(self, dataset: OfflineDataset, mcts_config: MCTSConfig, *, discount: float,
                 value_prefix_horizon: int = 5, unroll_steps: int = 5, td_steps: int = 5,
                 reanalyse: ReanalyseConfig | None = None, frame_stack: int | None = None,
                 channels: int | None = None, device: str = "cpu") -> None:
        self.dataset = dataset
        self.space = dataset.action_space
        self.env_id = dataset.env_id
        self.replay = replay_from_dataset(dataset, unroll_steps=unroll_steps,
                                          td_steps=td_steps, frame_stack=frame_stack,
                                          channels=channels)
        self.frame_stack = self.replay.frame_stack
        self.frame_channels = int(self.replay.frame_shape[0])
        self.adapter = GameAdapter(self.space, self.frame_channels, self.frame_stack)
        base = reanalyse or ReanalyseConfig()
        config = ReanalyseConfig(reanalyse_fraction=base.reanalyse_fraction,
                                 value_target=base.value_target, off_policy_tau=0.0,
                                 inference_batch_size=base.inference_batch_size)
        self.reanalyser = Reanalyser(self.replay, mcts_config, discount=discount,
                                     value_prefix_horizon=value_prefix_horizon,
                                     total_env_steps=max(1, dataset.num_steps), config=config,
                                     device=device)

    def sample(self, model: TargetModel, batch_size: int, rng: np.random.Generator, *,
               union: bool = False) -> EZBatch:
        """``batch_size`` positions drawn uniformly, targets computed by ``model``.

        Args:
            model: the target model in this game's local ids and stored channels (e.g. a
                :class:`~rltransfer.agents.efficientzero.shared_space.GameModel` built with
                ``frame_channels`` and ``frame_stack`` of this object). Used without
                gradients in eval mode; its weights are not changed.
            batch_size: ``B`` >= 1.
            rng: numpy generator (positions, padding actions, search noise).
            union: return actions as union ids and policy targets ``[B, K+1, U]``.

        Returns:
            :class:`EZBatch` on the CPU (``obs`` ``uint8[B, C*S, H, W]`` in the stored
            channels; weights all 1).
        """
        batch = self.reanalyser.make_batch(model, batch_size, rng, importance_exponent=1.0)
        if union:
            batch = self.to_union(batch)
        return batch

    def to_union(self, batch: EZBatch) -> EZBatch:
        """``batch`` with local actions mapped to union ids and policy targets scattered into
        the union width (:meth:`GameAdapter.union_actions`, :meth:`GameAdapter.union_policy`).
        """
        batch.actions = self.adapter.union_actions(batch.actions.long())
        batch.target_policies = self.adapter.union_policy(batch.target_policies)
        return batch
