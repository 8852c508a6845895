"""EfficientZero over a shared action space (XTRA, Xu et al. 2023, Sec. 3 and App. A: one
network for several games, Atari's full 18 actions or MinAtar's union of 6).

:class:`GameAdapter` stands between one game's env terms and the network's:

* **actions**: the env, the replay and the offline datasets use the game's *local* ids
  ``0 .. L-1``; the network's dynamics action encoding and policy head use the union width
  ``U`` (:class:`~rltransfer.envs.shared_actions.ActionSpace`). Local ids are mapped to union
  ids before a dynamics step (:meth:`GameAdapter.union_actions`), and the search runs over the
  union width with the game's legal ids as an action mask at *every* node (root and interior;
  :class:`~rltransfer.agents.efficientzero.mcts.BatchedMCTS` ``action_mask``): illegal
  actions get prior 0 and are never selected or expanded.
* **policy targets**: the replay stores the visit distribution over the local ids
  (``[..., L]``, what an offline dataset records); a learner batch scatters it into the union
  width (:meth:`GameAdapter.union_policy`, zeros at illegal ids). Search results in the union
  width are sliced back to the local ids (:meth:`GameAdapter.local`) to pick an action.
* **observations**: frames are stored with the game's own ``C`` channels and zero-padded to
  the common ``channels`` at the network's input (:meth:`GameAdapter.network_obs`, MinAtar:
  10, Seaquest's count), frame by frame inside the stack. A network of fewer channels than
  the stored frames (a single-game teacher reading frames padded for a multi-game student)
  gets them with the trailing padding cut off again.

:class:`GameModel` shows a network to one game as a plain ``L``-action model (observations
through :meth:`GameAdapter.network_obs`, logits sliced to the legal ids by
:meth:`GameAdapter.local` at every node, local actions mapped by
:meth:`GameAdapter.union_actions` before each dynamics step): the target model of offline
reanalysis whose batches are built in the game's local ids (XTRA's teachers and sources).

Without an action space (``EZTrainConfig.action_space = None``) the adapter is the identity
(:attr:`GameAdapter.is_identity`) and every path skips it, so existing runs are unchanged.

The learner's policy loss is the cross-entropy over all ``U`` logits (targets are 0 at
illegal ids, so it pushes illegal logits down; the search never uses them), as the public
XTRA code trains its 18-wide head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from rltransfer.agents.efficientzero.mcts import ModelOutput
from rltransfer.core.config import ConfigError
from rltransfer.envs.shared_actions import (
    ActionSpace,
    ActionSpaceMismatchError,
    action_space_for,
    local_action_space,
    local_to_union,
    pad_channels,
    scatter_policy,
    union_policy_width,
)
from rltransfer.envs.spec import suite_of

if TYPE_CHECKING:
    from rltransfer.agents.efficientzero.networks import EfficientZeroNet

__all__ = [
    "ACTION_COMPONENTS",
    "ACTION_SPACES",
    "GameAdapter",
    "GameModel",
    "check_transfer_space",
    "resolve_action_space",
]

ACTION_SPACES: dict[str, str] = {"minatar-union": "minatar", "atari-full": "atari"}
"""Names of :attr:`EZTrainConfig.action_space` and the suite each applies to:
``"minatar-union"`` (MinAtar's 6 actions ``[n, l, u, r, d, f]``) and ``"atari-full"`` (ALE's
18 actions)."""

ACTION_COMPONENTS: tuple[str, ...] = ("dynamics", "prediction")
"""The world-model components whose shapes depend on the action width: g (the action
encoding) and f (the policy head)."""

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def resolve_action_space(name: str | None, env_id: str, num_actions: int) -> ActionSpace:
    """The action space named ``name`` for ``env_id`` (whose env has ``num_actions``).

    Args:
        name: ``None`` (the env's own actions: union = local), ``"minatar-union"`` or
            ``"atari-full"`` (:data:`ACTION_SPACES`).
        env_id: the game's env id.
        num_actions: ``L``, the env's ``Discrete`` size.

    Raises:
        ConfigError: an unknown name, or a name of another suite than ``env_id``'s.
        ActionSpaceMismatchError: the env's action count is not the space's legal count.
    """
    if name is None:
        return local_action_space(num_actions)
    if name not in ACTION_SPACES:
        raise ConfigError(f"action_space must be one of {sorted(ACTION_SPACES)} or None "
                          f"(got {name!r})")
    suite = suite_of(env_id)
    if suite != ACTION_SPACES[name]:
        raise ConfigError(f"action_space={name!r} applies to {ACTION_SPACES[name]} games; "
                          f"{env_id} is a {suite} game")
    return action_space_for(env_id, num_actions)


def check_transfer_space(mine: ActionSpace, architecture: Mapping[str, Any],
                         components: Iterable[str], source: str) -> None:
    """Stop a transfer of action-dependent components (:data:`ACTION_COMPONENTS`) from a
    model of another action union. Games of one union (e.g. MinAtar Asterix -> Breakout, both
    ``minatar-union``) share g and f, as XTRA transfers them; a model without a recorded
    space has the local space of its ``num_actions``. Two local spaces are left to the
    tensor-shape checks (as before shared spaces existed).

    Args:
        mine: the receiving learner's space.
        architecture: the source checkpoint's ``meta["architecture"]``.
        components: the components to load.
        source: names the source in the message.

    Raises:
        ActionSpaceMismatchError: the unions (suite and action names) differ.
    """
    if not set(components) & set(ACTION_COMPONENTS):
        return
    record = architecture.get("action_space")
    if record is not None:
        theirs = ActionSpace.from_json(record)
    elif architecture.get("num_actions") is not None:
        theirs = local_action_space(int(architecture["num_actions"]))
    else:
        return
    if mine.suite == "local" and theirs.suite == "local":
        return
    try:
        union_policy_width([mine, theirs])
    except ActionSpaceMismatchError as e:
        raise ActionSpaceMismatchError(
            f"{source} has action space {theirs.to_json()}, this run {mine.to_json()}: "
            f"dynamics and prediction transfer within one action union only ({e})") from e


@dataclass(frozen=True)
class GameAdapter:
    """One game seen by a network of a shared action space (see the module docstring).

    Attributes:
        space: the game's :class:`ActionSpace` (``U`` union ids, ``L`` legal).
        frame_channels: ``C``, channels of one stored frame.
        frame_stack: ``S``, frames per observation.
        channels: channels of one frame at the network's input (``None``: ``C``). Above
            ``C`` the frames are zero-padded; below ``C`` the trailing ``C - channels``
            channels are cut off, and they must be zeros (padding added for another network).

    Raises:
        ActionSpaceMismatchError: non-positive sizes.
    """

    space: ActionSpace
    frame_channels: int
    frame_stack: int = 1
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.frame_channels < 1 or self.frame_stack < 1:
            raise ActionSpaceMismatchError(
                f"frame_channels and frame_stack must be >= 1 (got {self.frame_channels}, "
                f"{self.frame_stack})")
        if self.channels is not None and self.channels < 1:
            raise ActionSpaceMismatchError(f"channels must be >= 1 (got {self.channels})")

    @classmethod
    def for_env(cls, action_space: str | None, env_id: str, num_actions: int,
                frame_shape: tuple[int, int, int], frame_stack: int,
                pad_channels: int | None = None) -> GameAdapter:
        """The adapter of a run's env (``EZTrainConfig.action_space`` / ``pad_channels``).

        Raises:
            ConfigError, ActionSpaceMismatchError: as :func:`resolve_action_space`, or
                ``pad_channels`` below the frames' channels.
        """
        space = resolve_action_space(action_space, env_id, num_actions)
        return cls(space, int(frame_shape[0]), int(frame_stack), pad_channels)

    @classmethod
    def for_network(cls, space: ActionSpace, num_actions: int,
                    network_obs_shape: tuple[int, ...], frame_channels: int,
                    frame_stack: int) -> GameAdapter:
        """The adapter between one game and a network of width ``num_actions`` reading
        ``network_obs_shape = (C_net * S, H, W)``: the game's ``space`` when the network is
        union-wide (``U``), its local space when the network has the game's own ``L`` actions
        (a single-game teacher); ``channels = C_net``.

        Raises:
            ActionSpaceMismatchError: the width is neither ``L`` nor ``U``, or the network's
                input channels are not ``S`` frames of equal channels.
        """
        width, stack = int(num_actions), int(frame_stack)
        if width not in (space.num_legal, space.union_size):
            raise ActionSpaceMismatchError(
                f"a network with {width} actions cannot play {space.legal_names} (needs "
                f"{space.num_legal} local or {space.union_size} union actions)")
        cs = int(network_obs_shape[0])
        if stack < 1 or cs % stack:
            raise ActionSpaceMismatchError(
                f"the network reads {cs} channels, not {stack} frames of equal channels")
        game = space if width == space.union_size else local_action_space(width)
        return cls(game, int(frame_channels), stack, cs // stack)

    @classmethod
    def identity(cls, num_actions: int, frame_channels: int = 1,
                 frame_stack: int = 1) -> GameAdapter:
        """The adapter of a game that shares nothing (local space, no padding)."""
        return cls(local_action_space(num_actions), frame_channels, frame_stack)

    # ------------------------------------------------------------------ sizes
    @property
    def num_actions(self) -> int:
        """``U``: the network's action width (policy head, dynamics encoding, search)."""
        return self.space.union_size

    @property
    def num_legal(self) -> int:
        """``L``: the env's action count (replay actions and stored policies)."""
        return self.space.num_legal

    @property
    def net_channels(self) -> int:
        """Channels of one frame at the network's input."""
        return self.frame_channels if self.channels is None else int(self.channels)

    @property
    def maps_actions(self) -> bool:
        """Whether local and union ids differ (``legal_ids != 0 .. U-1``)."""
        return self.space.legal_ids != tuple(range(self.space.union_size))

    @property
    def pads(self) -> bool:
        """Whether frames change channels at the network's input (padded, or cut)."""
        return self.net_channels != self.frame_channels

    @property
    def is_identity(self) -> bool:
        """No action mapping and no padding: every conversion returns its input."""
        return not (self.maps_actions or self.pads)

    @property
    def legal_mask(self) -> np.ndarray:
        """``bool[U]``: True at the game's legal union ids."""
        mask = np.zeros(self.num_actions, dtype=np.bool_)
        mask[list(self.space.legal_ids)] = True
        return mask

    def search_mask(self, batch: int) -> np.ndarray | None:
        """The search's ``action_mask`` for ``batch`` roots: ``bool[batch, U]``, or ``None``
        when every union id is legal."""
        if not self.maps_actions:
            return None
        return np.ascontiguousarray(np.broadcast_to(self.legal_mask, (batch, self.num_actions)))

    def obs_shape(self, frame_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The network's input ``(channels * S, H, W)`` for stored frames ``(C, H, W)``."""
        _, h, w = frame_shape
        return (self.net_channels * self.frame_stack, int(h), int(w))

    # ------------------------------------------------------------------ conversions
    def network_obs(self, obs: _Array) -> _Array:
        """Stacked observations ``[..., C*S, H, W]`` -> ``[..., channels*S, H, W]``, each
        frame zero-padded after its own channels, or cut to its first ``channels`` when the
        network reads fewer (numpy or torch; ``obs`` itself when the counts agree).

        Raises:
            ActionSpaceMismatchError: ``obs`` is not ``[..., C*S, H, W]``, or a cut channel
                holds a non-zero value (it is game data, not padding).
        """
        if not self.pads:
            return obs
        c, s = self.frame_channels, self.frame_stack
        if obs.ndim < 3 or int(obs.shape[-3]) != c * s:
            raise ActionSpaceMismatchError(
                f"stacked observations must be [..., {c * s}, H, W] ({s} frames of {c} "
                f"channels), got shape {tuple(obs.shape)}")
        lead, hw = tuple(obs.shape[:-3]), tuple(obs.shape[-2:])
        frames = obs.reshape(*lead, s, c, *hw)
        net_c = self.net_channels
        if net_c < c:
            if bool((frames[..., net_c:, :, :] != 0).any()):
                raise ActionSpaceMismatchError(
                    f"the network reads {net_c} channels per frame; the frames' channels "
                    f"{net_c}..{c - 1} hold game data, not zero padding")
            return frames[..., :net_c, :, :].reshape(*lead, s * net_c, *hw)
        padded = pad_channels(frames, net_c)
        return padded.reshape(*lead, s * net_c, *hw)

    def union_actions(self, actions: _Array) -> _Array:
        """Local ids ``int[...]`` -> union ids ``int64[...]`` (numpy or torch, same device).

        Raises:
            ActionSpaceMismatchError: an id outside ``[0, L)``.
        """
        if not self.maps_actions:
            return actions
        if isinstance(actions, torch.Tensor):
            mapped = local_to_union(actions.detach().cpu().numpy(), self.space)
            return torch.from_numpy(mapped).to(actions.device)
        return local_to_union(actions, self.space)

    def union_policy(self, policy: _Array) -> _Array:
        """A distribution over local ids ``[..., L]`` -> ``[..., U]``, zeros at illegal ids
        (:func:`~rltransfer.envs.shared_actions.scatter_policy`; e.g. Breakout
        ``[0.2, 0.5, 0.3]`` -> ``[0.2, 0.5, 0, 0.3, 0, 0]``)."""
        if not self.maps_actions:
            return policy
        return scatter_policy(policy, self.space)

    def local(self, union: _Array) -> _Array:
        """Union-width entries ``[..., U]`` (visit counts, policies, logits) -> the legal ids'
        ``[..., L]``, in local order.

        Raises:
            ActionSpaceMismatchError: the last dimension is not ``U``.
        """
        if not self.maps_actions:
            return union
        if union.shape[-1] != self.num_actions:
            raise ActionSpaceMismatchError(
                f"expected {self.num_actions} union entries in the last dimension, got shape "
                f"{tuple(union.shape)}")
        ids = list(self.space.legal_ids)
        if isinstance(union, torch.Tensor):
            return union[..., torch.as_tensor(ids, device=union.device)]
        return np.ascontiguousarray(union[..., ids])


class GameModel(nn.Module):
    """A network as one game sees it: an ``L``-action target model for search and
    reanalysis (:class:`~rltransfer.agents.efficientzero.reanalyse.TargetModel`; see the
    module docstring). Every conversion is the :class:`GameAdapter`'s; a network whose width
    and channels are the game's is used as it is.

    Args:
        network: an :class:`~rltransfer.agents.efficientzero.networks.EfficientZeroNet` of
            width ``U`` (union) or ``L`` (local).
        space: the game's :class:`ActionSpace`.
        frame_channels: ``C``, channels of one frame of the observations given to
            :meth:`initial_inference`.
        frame_stack: ``S``, frames per observation.

    Raises:
        ActionSpaceMismatchError: as :meth:`GameAdapter.for_network`.

    Attributes:
        adapter: the :class:`GameAdapter` (``channels`` = the network's per frame).
        num_actions: ``L``.
    """

    def __init__(self, network: EfficientZeroNet, space: ActionSpace, frame_channels: int,
                 frame_stack: int) -> None:
        super().__init__()
        self.network = network
        self.adapter = GameAdapter.for_network(space, int(network.num_actions),
                                               tuple(network.obs_shape), frame_channels,
                                               frame_stack)
        self.num_actions = space.num_legal

    def _local(self, out: ModelOutput) -> ModelOutput:
        if self.adapter.maps_actions:
            out.policy_logits = self.adapter.local(out.policy_logits)
        return out

    def union_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Local ids ``int64[B]`` -> the network's ids (:meth:`GameAdapter.union_actions`)."""
        return self.adapter.union_actions(actions)

    @torch.no_grad()
    def initial_inference(self, obs: torch.Tensor) -> ModelOutput:
        """Root inference of ``obs`` ``[B, C*S, H, W]``; policy logits ``[B, L]``."""
        return self._local(self.network.initial_inference(self.adapter.network_obs(obs)))

    @torch.no_grad()
    def recurrent_inference(self, latent: torch.Tensor,
                            reward_hidden: tuple[torch.Tensor, torch.Tensor],
                            actions: torch.Tensor) -> ModelOutput:
        """One model step with local ``actions`` ``int64[B]``; policy logits ``[B, L]``."""
        return self._local(self.network.recurrent_inference(
            latent, reward_hidden, self.union_actions(actions)))
