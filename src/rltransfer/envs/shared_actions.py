"""Shared action spaces across games, for multi-game world models (XTRA, Xu et al. 2023).

A multi-game network has one action width ``U`` for every game (its *union* space); each game
acts with its own ``L`` legal actions (its *local* ids ``0 .. L-1``, what its env accepts).
:class:`ActionSpace` records, for one game, the union's action names and the union id of each
local action:

* Atari: the union is ALE's full 18-action set (``NOOP, FIRE, UP, ...``, XTRA's
  ``ATARI_ACTION_SPACE = 18``); a game's local ids are its ALE minimal action set, in ALE's
  order (e.g. Breakout ``[0, 1, 3, 4]``, Pong ``[0, 1, 3, 4, 11, 12]``), read from ale_py.
* MinAtar: the union is MinAtar's 6 actions ``[n, l, u, r, d, f]``, the union of the five
  games' minimal sets (Breakout ``[0, 1, 3]``, Asterix ``[0, 1, 2, 3, 4]``, Freeway
  ``[0, 2, 4]``, Seaquest ``[0 .. 5]``, SpaceInvaders ``[0, 1, 3, 5]``); ``-v0`` ids use all
  six. Observations are zero-padded to :data:`MINATAR_MAX_CHANNELS` (Seaquest's 10).

The network works in union ids: local actions are mapped to union ids before the dynamics
step (:func:`local_to_union`), policy targets over local actions are scattered into the union
width (:func:`scatter_policy`), and union logits are sliced to the legal ids at every search
node (:func:`legal_logits`) so an illegal action can never be chosen. A checkpoint records its
space (:meth:`ActionSpace.to_json`); :func:`check_same_space` stops a mismatch with one
:class:`ActionSpaceMismatchError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from rltransfer.envs.spec import atari_game, minatar_game, require, suite_of
from rltransfer.errors import UserError

__all__ = [
    "ATARI_ACTION_NAMES",
    "MINATAR_ACTION_NAMES",
    "MINATAR_CHANNELS",
    "MINATAR_LEGAL_IDS",
    "MINATAR_MAX_CHANNELS",
    "ActionSpace",
    "ActionSpaceMismatchError",
    "action_space_for",
    "atari_action_space",
    "check_same_space",
    "legal_logits",
    "local_action_space",
    "local_to_union",
    "mask_logits",
    "minatar_action_space",
    "pad_channels",
    "scatter_policy",
    "union_policy_width",
    "union_to_local",
]

ATARI_ACTION_NAMES: tuple[str, ...] = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT",
    "DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE",
    "DOWNRIGHTFIRE", "DOWNLEFTFIRE",
)
"""ALE's full action set, in ALE's id order (``ale_py.Action``)."""

MINATAR_ACTION_NAMES: tuple[str, ...] = ("n", "l", "u", "r", "d", "f")
"""MinAtar's action set (``minatar.Environment.action_map``): no-op, left, up, right, down,
fire."""

MINATAR_LEGAL_IDS: dict[str, tuple[int, ...]] = {
    "breakout": (0, 1, 3),
    "asterix": (0, 1, 2, 3, 4),
    "freeway": (0, 2, 4),
    "seaquest": (0, 1, 2, 3, 4, 5),
    "space_invaders": (0, 1, 3, 5),
}
"""Each MinAtar game's minimal action set in union ids (``minimal_action_set()``, minatar
1.0.15)."""

MINATAR_CHANNELS: dict[str, int] = {
    "breakout": 4, "asterix": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6,
}
"""Observation channels of each MinAtar game."""

MINATAR_MAX_CHANNELS = 10
"""The common channel count of MinAtar observations (Seaquest's)."""

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


class ActionSpaceMismatchError(UserError):
    """An action space that does not fit: a checkpoint's space differs from the task's, an
    action outside the legal set, or arrays of the wrong width. The message names both
    spaces or the offending value."""


@dataclass(frozen=True)
class ActionSpace:
    """One game's actions inside a shared (union) action space.

    Attributes:
        suite: ``"atari"``, ``"minatar"`` or ``"local"`` (no sharing: union = local).
        names: the union's action names, ``U`` of them.
        legal_ids: the union id of each local action, ``L`` of them, in local order,
            distinct, each in ``[0, U)``.

    Raises:
        ActionSpaceMismatchError: empty names, or legal ids repeated or out of range.
    """

    suite: str
    names: tuple[str, ...]
    legal_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "legal_ids", tuple(int(i) for i in self.legal_ids))
        u = len(self.names)
        if u == 0 or not self.legal_ids:
            raise ActionSpaceMismatchError(
                f"an action space needs names and legal ids, got {self.names}, "
                f"{self.legal_ids}")
        if len(set(self.legal_ids)) != len(self.legal_ids) or not all(
                0 <= i < u for i in self.legal_ids):
            raise ActionSpaceMismatchError(
                f"legal ids must be distinct and in [0, {u}), got {list(self.legal_ids)}")

    @property
    def union_size(self) -> int:
        """``U``: the width of the shared action space."""
        return len(self.names)

    @property
    def num_legal(self) -> int:
        """``L``: the game's own action count (its env's ``Discrete(L)``)."""
        return len(self.legal_ids)

    @property
    def legal_names(self) -> tuple[str, ...]:
        """The names of the local actions, in local order."""
        return tuple(self.names[i] for i in self.legal_ids)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for checkpoint and dataset metadata)."""
        return {"suite": self.suite, "names": list(self.names),
                "legal_ids": list(self.legal_ids)}

    @classmethod
    def from_json(cls, data: Any) -> ActionSpace:
        """Rebuild from :meth:`to_json` output.

        Raises:
            ActionSpaceMismatchError: not a dict with ``suite``, ``names``, ``legal_ids``.
        """
        if not isinstance(data, dict) or not {"suite", "names", "legal_ids"} <= data.keys():
            raise ActionSpaceMismatchError(
                f"not an action-space record (need suite, names, legal_ids): {data!r}")
        return cls(str(data["suite"]), tuple(data["names"]), tuple(data["legal_ids"]))


def check_same_space(expected: ActionSpace, found: ActionSpace, *, what: str) -> None:
    """Stop when ``found`` (e.g. a checkpoint's space) is not ``expected`` (the task's).

    Args:
        what: names ``found`` in the message, e.g. ``"checkpoint runs/x/final"``.

    Raises:
        ActionSpaceMismatchError: the suites, union names or legal ids differ.
    """
    if expected != found:
        raise ActionSpaceMismatchError(
            f"{what} has action space {found.to_json()}, the task needs "
            f"{expected.to_json()}; use a checkpoint trained with the same shared action space")


def local_action_space(num_actions: int) -> ActionSpace:
    """The trivial space of a game that shares nothing: union = local, names ``"0" ..``."""
    return ActionSpace("local", tuple(str(i) for i in range(num_actions)),
                       tuple(range(num_actions)))


def minatar_action_space(env_id: str) -> ActionSpace:
    """The space of ``MinAtar/<Game>-v1`` (minimal set) or ``-v0`` (all six actions) inside
    MinAtar's 6-action union.

    Raises:
        UnknownEnvError: not a MinAtar id.
    """
    game, minimal = minatar_game(env_id)
    legal = MINATAR_LEGAL_IDS[game] if minimal else tuple(range(len(MINATAR_ACTION_NAMES)))
    return ActionSpace("minatar", MINATAR_ACTION_NAMES, legal)


def atari_action_space(env_id: str) -> ActionSpace:
    """The space of ``ALE/<Game>-v5`` (ALE's minimal action set, as its env acts with
    ``full_action_space=False``) inside the full 18-action set.

    Raises:
        UnknownEnvError: not an ALE v5 id.
        ImportError: ale_py is not installed.
    """
    game, _ = atari_game(env_id)
    ale_py = require("atari")
    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(str(roms.get_rom_path(game)))
    legal = tuple(int(a.value) for a in ale.getMinimalActionSet())
    return ActionSpace("atari", ATARI_ACTION_NAMES, legal)


def action_space_for(env_id: str, num_actions: int | None = None) -> ActionSpace:
    """The shared action space of ``env_id``: MinAtar and Atari ids get theirs, other suites
    the trivial :func:`local_action_space` of ``num_actions``.

    Raises:
        ActionSpaceMismatchError: ``num_actions`` is given and differs from the space's legal
            count, or is needed (another suite) and missing.
        UnknownEnvError: an id of no known suite (or as :func:`minatar_action_space` /
            :func:`atari_action_space`).
        ImportError: ale_py is missing for an Atari id.
    """
    suite = suite_of(env_id)
    if suite == "minatar":
        space = minatar_action_space(env_id)
    elif suite == "atari":
        space = atari_action_space(env_id)
    elif num_actions is None:
        raise ActionSpaceMismatchError(
            f"{env_id} has no shared action space (only MinAtar/ and ALE/ ids do); pass "
            "num_actions for a local one")
    else:
        space = local_action_space(num_actions)
    if num_actions is not None and num_actions != space.num_legal:
        raise ActionSpaceMismatchError(
            f"{env_id} has {space.num_legal} actions {space.legal_names} in its shared space, "
            f"but {num_actions} were given")
    return space


def local_to_union(local_ids: Any, space: ActionSpace) -> np.ndarray:
    """Map local action ids to union ids (before the dynamics step).

    Args:
        local_ids: int array ``[...]`` in ``[0, L)``.

    Returns:
        ``int64[...]`` union ids.

    Raises:
        ActionSpaceMismatchError: a local id outside ``[0, L)``.
    """
    ids = np.asarray(local_ids)
    if ids.dtype.kind not in "iu" or (ids.size and (ids.min() < 0
                                                    or ids.max() >= space.num_legal)):
        raise ActionSpaceMismatchError(
            f"local action ids must be integers in [0, {space.num_legal}), got {ids}")
    return np.asarray(space.legal_ids, dtype=np.int64)[ids]


def union_to_local(union_ids: Any, space: ActionSpace) -> np.ndarray:
    """Map union ids back to local ids (what the game's env accepts).

    Returns:
        ``int64[...]`` local ids.

    Raises:
        ActionSpaceMismatchError: a union id that is not legal in this game.
    """
    ids = np.asarray(union_ids, dtype=np.int64)
    lookup = np.full(space.union_size, -1, dtype=np.int64)
    lookup[list(space.legal_ids)] = np.arange(space.num_legal)
    if ids.size and (ids.min() < 0 or ids.max() >= space.union_size):
        raise ActionSpaceMismatchError(
            f"union action ids must be in [0, {space.union_size}), got {ids}")
    local = lookup[ids]
    if np.any(local < 0):
        raise ActionSpaceMismatchError(
            f"union ids {sorted(set(ids[local < 0].tolist()))} are not legal here; legal: "
            f"{list(space.legal_ids)} ({', '.join(space.legal_names)})")
    return local


def _check_width(x: np.ndarray | torch.Tensor, width: int, what: str) -> None:
    if x.shape[-1] != width:
        raise ActionSpaceMismatchError(
            f"{what} must have {width} entries in its last dimension, got shape "
            f"{tuple(x.shape)}")


def scatter_policy(policy: _Array, space: ActionSpace) -> _Array:
    """Scatter a distribution over local actions into the union width (policy targets).

    Example: Breakout ``[0.2, 0.5, 0.3]`` on ``[n, l, u, r, d, f]`` becomes
    ``[0.2, 0.5, 0, 0.3, 0, 0]``.

    Args:
        policy: numpy array or torch tensor ``[..., L]``.

    Returns:
        The same type, ``[..., U]``, zeros at illegal ids.

    Raises:
        ActionSpaceMismatchError: the last dimension is not ``L``.
    """
    _check_width(policy, space.num_legal, "a local policy")
    ids = list(space.legal_ids)
    if isinstance(policy, torch.Tensor):
        out_t = policy.new_zeros((*policy.shape[:-1], space.union_size))
        out_t[..., ids] = policy
        return out_t
    out = np.zeros((*policy.shape[:-1], space.union_size), dtype=policy.dtype)
    out[..., ids] = policy
    return out


def legal_logits(logits: _Array, space: ActionSpace) -> _Array:
    """Slice union logits to the legal ids, in local order (what every search node uses, so
    no illegal action is ever expanded or selected).

    Args:
        logits: numpy array or torch tensor ``[..., U]``.

    Returns:
        ``[..., L]`` of the same type.

    Raises:
        ActionSpaceMismatchError: the last dimension is not ``U``.
    """
    _check_width(logits, space.union_size, "union logits")
    ids = list(space.legal_ids)
    if isinstance(logits, torch.Tensor):
        return logits[..., torch.as_tensor(ids, device=logits.device)]
    return logits[..., ids]


def mask_logits(logits: _Array, space: ActionSpace, fill: float = -np.inf) -> _Array:
    """Union logits with illegal ids set to ``fill`` (a softmax then puts 0 there).

    Args:
        logits: numpy array or torch tensor ``[..., U]``.
        fill: value at illegal ids (default ``-inf``).

    Returns:
        A copy, ``[..., U]``.

    Raises:
        ActionSpaceMismatchError: the last dimension is not ``U``.
    """
    _check_width(logits, space.union_size, "union logits")
    illegal = [i for i in range(space.union_size) if i not in set(space.legal_ids)]
    if isinstance(logits, torch.Tensor):
        out_t = logits.clone()
        out_t[..., illegal] = fill
        return out_t
    out = np.array(logits, dtype=np.result_type(logits.dtype, np.float32), copy=True)
    out[..., illegal] = fill
    return out


def pad_channels(obs: _Array, channels: int) -> _Array:
    """Zero-pad observations ``[..., C, H, W]`` to ``channels`` channels (appended after the
    game's own), e.g. a Breakout frame ``[4, 10, 10]`` to ``[10, 10, 10]``.

    Args:
        obs: numpy array or torch tensor with at least 3 dimensions.
        channels: the common channel count, ``>= C``.

    Returns:
        The same type and dtype, ``[..., channels, H, W]`` (``obs`` itself when ``C`` equals
        ``channels``).

    Raises:
        ActionSpaceMismatchError: fewer than 3 dimensions or ``C > channels``.
    """
    if obs.ndim < 3:
        raise ActionSpaceMismatchError(
            f"observations must be [..., C, H, W], got shape {tuple(obs.shape)}")
    c = int(obs.shape[-3])
    if c > channels:
        raise ActionSpaceMismatchError(
            f"observations have {c} channels, more than the common {channels}")
    if c == channels:
        return obs
    if isinstance(obs, torch.Tensor):
        pad_t = obs.new_zeros((*obs.shape[:-3], channels - c, *obs.shape[-2:]))
        return torch.cat([obs, pad_t], dim=-3)
    pad = np.zeros((*obs.shape[:-3], channels - c, *obs.shape[-2:]), dtype=obs.dtype)
    return np.concatenate([obs, pad], axis=-3)


def union_policy_width(spaces: Sequence[ActionSpace]) -> int:
    """The common ``U`` of several games' spaces.

    Raises:
        ActionSpaceMismatchError: no spaces, or they do not share one union (suite and
            names).
    """
    if not spaces:
        raise ActionSpaceMismatchError("union_policy_width needs at least one action space")
    first = spaces[0]
    for other in spaces[1:]:
        if (other.suite, other.names) != (first.suite, first.names):
            raise ActionSpaceMismatchError(
                f"games do not share one action union: {first.suite} {list(first.names)} vs "
                f"{other.suite} {list(other.names)}")
    return first.union_size
