"""One game's view of a multi-game world model (XTRA, Xu et al. 2023; shared action spaces as
in the public code's ``ATARI_ACTION_SPACE = 18``).

A multi-game EfficientZero network acts in the *union* action width ``U`` and reads frames
zero-padded to a common channel count; each game acts with its ``L`` local ids and its own
channels. :class:`TaskModel` wraps the network so that search (:class:`~rltransfer.agents.
efficientzero.mcts.BatchedMCTS`), reanalysis (:class:`~rltransfer.agents.efficientzero.
reanalyse.Reanalyser`) and acting see a plain ``L``-action model:

* observations ``[B, C_in*S, H, W]`` are zero-padded (or cut) per stacked frame to the
  network's channels (:func:`~rltransfer.envs.shared_actions.pad_channels`);
* policy logits are sliced to the legal ids at *every* node, the root and every recurrent
  step (:func:`~rltransfer.envs.shared_actions.legal_logits`), so no illegal action can ever
  be expanded or chosen;
* local actions are mapped to union ids before the dynamics step
  (:func:`~rltransfer.envs.shared_actions.local_to_union`).

A network whose width already is ``L`` (a single-game teacher) is used as it is.
:class:`TaskSearchPolicy` acts with a :class:`TaskModel` by greedy or sampled MCTS (the
:class:`~rltransfer.core.policy.Policy` interface of the evaluation protocol).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.agents.efficientzero.mcts import (
    BatchedMCTS,
    MCTSConfig,
    ModelOutput,
    SearchResult,
    select_action,
)
from rltransfer.agents.efficientzero.networks import EfficientZeroNet
from rltransfer.envs.shared_actions import (
    ActionSpace,
    ActionSpaceMismatchError,
    legal_logits,
    pad_channels,
)

__all__ = ["TaskModel", "TaskSearchPolicy", "adapt_channels"]


def adapt_channels(obs: torch.Tensor, frame_stack: int, channels: int) -> torch.Tensor:
    """Stacked observations ``[B, C*S, H, W]`` with each of the ``S`` frames zero-padded (or
    cut, dropping trailing channels) from ``C`` to ``channels`` channels:
    ``[B, channels*S, H, W]``, same dtype.

    Raises:
        ActionSpaceMismatchError: ``C*S`` is not a multiple of ``frame_stack``.
    """
    b, cs, h, w = (int(s) for s in obs.shape)
    if cs % frame_stack:
        raise ActionSpaceMismatchError(
            f"{cs} stacked channels are not {frame_stack} frames of equal channels")
    c = cs // frame_stack
    if c == channels:
        return obs
    frames = obs.reshape(b, frame_stack, c, h, w)
    frames = frames[:, :, :channels] if c > channels else pad_channels(frames, channels)
    return frames.reshape(b, frame_stack * channels, h, w)


class TaskModel(nn.Module):
    """A world model as one game sees it (see the module docstring).

    Args:
        network: an :class:`EfficientZeroNet` of width ``U`` (union) or ``L`` (local).
        space: the game's :class:`ActionSpace`.
        frame_channels: channels ``C_in`` of one frame of the observations given to
            :meth:`initial_inference`.
        frame_stack: ``S``, frames per observation (the network's input has
            ``C_net * S`` channels).

    Raises:
        ActionSpaceMismatchError: the network's width is neither ``L`` nor ``U``, or its
            input channels are not a multiple of ``S``.
    """

    def __init__(self, network: EfficientZeroNet, space: ActionSpace, frame_channels: int,
                 frame_stack: int) -> None:
        super().__init__()
        width = int(network.num_actions)
        if width not in (space.num_legal, space.union_size):
            raise ActionSpaceMismatchError(
                f"a network with {width} actions cannot play {space.legal_names} (needs "
                f"{space.num_legal} local or {space.union_size} union actions)")
        if network.obs_shape[0] % frame_stack:
            raise ActionSpaceMismatchError(
                f"the network reads {network.obs_shape[0]} channels, not {frame_stack} frames")
        self.network = network
        self.space = space
        self.mapped = width != space.num_legal
        self.frame_channels = int(frame_channels)
        self.frame_stack = int(frame_stack)
        self.net_channels = network.obs_shape[0] // frame_stack
        self.num_actions = space.num_legal
        self._union_ids = torch.as_tensor(space.legal_ids, dtype=torch.int64)

    def adapt_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, C_in*S, H, W]`` -> ``[B, C_net*S, H, W]`` (:func:`adapt_channels`)."""
        return adapt_channels(obs, self.frame_stack, self.net_channels)

    def _local(self, out: ModelOutput) -> ModelOutput:
        if self.mapped:
            out.policy_logits = np.ascontiguousarray(legal_logits(out.policy_logits, self.space))
        return out

    def union_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Local ids ``int64[B]`` -> the network's ids (union ids when mapped)."""
        if not self.mapped:
            return actions
        return self._union_ids.to(actions.device)[actions.long()]

    @torch.no_grad()
    def initial_inference(self, obs: torch.Tensor) -> ModelOutput:
        """Root inference of ``obs`` ``[B, C_in*S, H, W]``; policy logits ``[B, L]``."""
        return self._local(self.network.initial_inference(self.adapt_obs(obs)))

    @torch.no_grad()
    def recurrent_inference(self, latent: torch.Tensor,
                            reward_hidden: tuple[torch.Tensor, torch.Tensor],
                            actions: torch.Tensor) -> ModelOutput:
        """One model step with local ``actions`` ``int64[B]``; policy logits ``[B, L]``."""
        return self._local(self.network.recurrent_inference(
            latent, reward_hidden, self.union_actions(actions)))


class TaskSearchPolicy:
    """Acting by batched MCTS through a :class:`TaskModel` (a
    :class:`~rltransfer.core.policy.Policy`: ``act(obs, state, first)``).

    Greedy (``deterministic``): no root noise, argmax of the visit counts; otherwise root
    Dirichlet noise and sampling with ``temperature``.
    """

    def __init__(self, model: TaskModel, mcts_config: MCTSConfig, *, device: str = "cpu",
                 deterministic: bool = True, temperature: float = 1.0, seed: int = 0) -> None:
        self.model = model
        self.num_actions = model.num_actions
        self.mcts = BatchedMCTS(mcts_config, model.num_actions)
        self.device = torch.device(device)
        self.deterministic = deterministic
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        return None

    @torch.no_grad()
    def search(self, obs: np.ndarray) -> SearchResult:
        """One batched search from stacked ``uint8[B, C_in*S, H, W]``."""
        self.model.eval()
        root = self.model.initial_inference(torch.from_numpy(obs).to(self.device))
        return self.mcts.search(self.model, root, self.rng,
                                add_exploration_noise=not self.deterministic)

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """Local actions ``int64[B]`` for stacked ``uint8[B, C_in*S, H, W]``."""
        result = self.search(obs)
        return select_action(result.visit_counts, self.temperature, self.rng,
                             deterministic=self.deterministic), state
