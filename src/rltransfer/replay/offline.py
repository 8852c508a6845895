"""Offline datasets of episodes (XTRA's pretraining data, Xu et al. 2023 Sec. 3.1), stored as
an rltransfer checkpoint or in Minari's format, and made from a game-segment replay's state
(:func:`dataset_from_game_segments`; a whole EfficientZero run:
:func:`rltransfer.methods.xtra.datasets.dataset_from_efficientzero_run`).

An :class:`OfflineDataset` holds ``E`` complete episodes, ``N`` env steps in all, concatenated:

* ``frames``: ``uint8[N + E, C, H, W]``, each episode's ``L + 1`` single frames (the reset
  observation, then one per step; the last is the final observation). Frame stacks are
  rebuilt by the reader (zeros before an episode's first frame), as the replays do.
* ``actions`` ``int64[N]`` (the game's *local* ids, see ``action_space``), ``rewards``
  ``float32[N]``, ``terminations`` / ``truncations`` ``bool[N]`` (only an episode's last step
  may set them), ``episode_lengths`` ``int64[E]``.
* optional search statistics of the behaviour policy at each step's observation:
  ``root_values`` ``float32[N]``, ``root_policies`` ``float32[N, L]`` (normalised visit
  counts) and ``search_mask`` ``bool[N]`` (False where the step has none, e.g. the uniform
  warm-up actions of an EfficientZero run).
* metadata: ``env_id``, ``action_space`` (:class:`~rltransfer.envs.shared_actions.ActionSpace`),
  ``frame_stack`` the behaviour policy used, and ``info`` (provenance, JSON).

Memory: ``C*H*W`` bytes per frame plus ``14 + 4*L`` bytes per step with search statistics
(``6`` without): MinAtar Breakout (4x10x10, L = 3) ~0.43 kB per step, Atari at 96x96 RGB
(L = 18) ~27.7 kB per step.

Storage: :meth:`OfflineDataset.save` / :meth:`OfflineDataset.load` write one checkpoint
directory (safetensors + ``meta.json``, atomic, hash-checked; ``kind = "offline-dataset"``);
:func:`save_minari` / :func:`load_minari` use the ``minari`` package (``pip install
'rltransfer[offline]'``) on local storage only, never downloading. A Minari episode keeps the
search statistics in its ``infos`` (``L + 1`` rows, Minari's convention of one info per
observation; the final row is padding) and the dataset's metadata under ``"rltransfer"``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.core.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.envs.shared_actions import ActionSpace, action_space_for, local_action_space
from rltransfer.errors import MissingDependencyError, UserError

__all__ = [
    "DATASET_KIND",
    "Episode",
    "OfflineDataset",
    "OfflineDatasetError",
    "dataset_from_game_segments",
    "load_minari",
    "save_minari",
]

DATASET_KIND = "offline-dataset"
"""``meta["kind"]`` of a saved :class:`OfflineDataset`."""

_SEARCH = ("root_values", "root_policies", "search_mask")


class OfflineDatasetError(UserError):
    """An offline dataset that is malformed, of another kind, or cannot be made from the
    given run or Minari dataset; the message names the fix."""


@dataclass(frozen=True)
class Episode:
    """One episode of an :class:`OfflineDataset` (views, not copies).

    Attributes:
        frames: ``uint8[L + 1, C, H, W]``; actions ``int64[L]``; rewards ``float32[L]``;
        terminated / truncated: how the episode ended (its last step's flags);
        root_values ``float32[L]``, root_policies ``float32[L, A]``, search_mask ``bool[L]``
        or None.
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool
    root_values: np.ndarray | None = None
    root_policies: np.ndarray | None = None
    search_mask: np.ndarray | None = None


@dataclass
class OfflineDataset:
    """Episodes of one game with optional search statistics (see the module docstring for
    fields and shapes).

    Raises:
        OfflineDatasetError: inconsistent shapes or dtypes, flags inside an episode, actions
            outside ``[0, L)``, or only some of the three search arrays.
    """

    env_id: str
    action_space: ActionSpace
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_lengths: np.ndarray
    root_values: np.ndarray | None = None
    root_policies: np.ndarray | None = None
    search_mask: np.ndarray | None = None
    frame_stack: int = 1
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.ascontiguousarray(self.frames)
        self.actions = np.asarray(self.actions, dtype=np.int64)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        self.episode_lengths = np.asarray(self.episode_lengths, dtype=np.int64).reshape(-1)
        lengths, n = self.episode_lengths, int(self.episode_lengths.sum())
        e = lengths.shape[0]
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4:
            raise OfflineDatasetError(
                f"frames must be uint8[N + E, C, H, W], got {self.frames.dtype}"
                f"{list(self.frames.shape)}")
        if e == 0 or np.any(lengths < 1):
            raise OfflineDatasetError(f"need episodes of >= 1 step, got lengths {lengths}")
        for name in ("actions", "rewards", "terminations", "truncations"):
            if getattr(self, name).shape != (n,):
                raise OfflineDatasetError(
                    f"{name} must have shape ({n},) (sum of episode lengths), got "
                    f"{getattr(self, name).shape}")
        if self.frames.shape[0] != n + e:
            raise OfflineDatasetError(
                f"frames must hold L + 1 per episode ({n + e}), got {self.frames.shape[0]}")
        ends = np.cumsum(lengths) - 1
        inside = np.ones(n, dtype=bool)
        inside[ends] = False
        if np.any((self.terminations | self.truncations) & inside):
            raise OfflineDatasetError("only an episode's last step may be terminal/truncated")
        if n and (self.actions.min() < 0 or self.actions.max() >= self.action_space.num_legal):
            raise OfflineDatasetError(
                f"actions must be local ids in [0, {self.action_space.num_legal}) of "
                f"{self.action_space.legal_names}")
        present = [getattr(self, k) is not None for k in _SEARCH]
        if any(present) and not all(present):
            raise OfflineDatasetError(
                "search statistics need root_values, root_policies and search_mask together")
        if all(present):
            self.root_values = np.asarray(self.root_values, dtype=np.float32)
            self.root_policies = np.asarray(self.root_policies, dtype=np.float32)
            self.search_mask = np.asarray(self.search_mask, dtype=bool)
            want = {"root_values": (n,), "root_policies": (n, self.action_space.num_legal),
                    "search_mask": (n,)}
            for name, shape in want.items():
                if getattr(self, name).shape != shape:
                    raise OfflineDatasetError(
                        f"{name} must have shape {shape}, got {getattr(self, name).shape}")

    # ------------------------------------------------------------------ views
    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """One frame ``(C, H, W)``."""
        c, h, w = self.frames.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_episodes(self) -> int:
        return int(self.episode_lengths.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.episode_lengths.sum())

    @property
    def has_search(self) -> bool:
        """Whether the behaviour policy's search statistics are stored."""
        return self.root_values is not None

    def episode(self, i: int) -> Episode:
        """Episode ``i`` (``0 <= i < E``; IndexError otherwise)."""
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} of {self.num_episodes}")
        s0 = int(self.episode_lengths[:i].sum())
        s1 = s0 + int(self.episode_lengths[i])
        f0 = s0 + i
        stats = ((None, None, None) if not self.has_search else
                 tuple(getattr(self, k)[s0:s1] for k in _SEARCH))
        return Episode(self.frames[f0:f0 + s1 - s0 + 1], self.actions[s0:s1],
                       self.rewards[s0:s1], bool(self.terminations[s1 - 1]),
                       bool(self.truncations[s1 - 1]), *stats)

    def episodes(self) -> Iterator[Episode]:
        for i in range(self.num_episodes):
            yield self.episode(i)

    @classmethod
    def from_episodes(cls, env_id: str, action_space: ActionSpace, episodes: Sequence[Episode],
                      *, frame_stack: int = 1, info: dict[str, Any] | None = None
                      ) -> OfflineDataset:
        """Concatenate :class:`Episode` records (all with or all without search statistics).

        Raises:
            OfflineDatasetError: no episodes, or inconsistent shapes (as the constructor).
        """
        if not episodes:
            raise OfflineDatasetError("an offline dataset needs at least one episode")
        lengths = [len(ep.actions) for ep in episodes]

        def flags(end_flag: str) -> np.ndarray:
            out = np.zeros(sum(lengths), dtype=bool)
            out[np.cumsum(lengths) - 1] = [getattr(ep, end_flag) for ep in episodes]
            return out

        with_search = [ep.root_values is not None for ep in episodes]
        if any(with_search) and not all(with_search):
            raise OfflineDatasetError("some episodes have search statistics and some do not")
        stats: dict[str, Any] = {}
        if all(with_search):
            stats = {k: np.concatenate([getattr(ep, k) for ep in episodes]) for k in _SEARCH}
        return cls(env_id, action_space, np.concatenate([ep.frames for ep in episodes]),
                   np.concatenate([ep.actions for ep in episodes]),
                   np.concatenate([ep.rewards for ep in episodes]),
                   flags("terminated"), flags("truncated"), np.array(lengths), **stats,
                   frame_stack=frame_stack, info=dict(info or {}))

    # ------------------------------------------------------------------ rltransfer format
    def meta(self) -> dict[str, Any]:
        """The JSON metadata saved with the arrays."""
        return {"kind": DATASET_KIND, "env_id": self.env_id,
                "action_space": self.action_space.to_json(), "obs_shape": list(self.obs_shape),
                "frame_stack": self.frame_stack, "num_episodes": self.num_episodes,
                "num_steps": self.num_steps, "has_search": self.has_search, "info": self.info}

    def save(self, path: str | Path) -> Path:
        """Write the dataset as a checkpoint directory (atomic; see
        :func:`rltransfer.core.checkpoint.save_checkpoint`). Returns the path."""
        names = ["frames", "actions", "rewards", "terminations", "truncations",
                 "episode_lengths", *(_SEARCH if self.has_search else ())]
        return save_checkpoint(path, {k: getattr(self, k) for k in names}, self.meta())

    @classmethod
    def load(cls, path: str | Path) -> OfflineDataset:
        """Read a dataset written by :meth:`save`.

        Raises:
            CheckpointError: missing, truncated or corrupt directory.
            OfflineDatasetError: a checkpoint of another kind, or malformed contents.
        """
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != DATASET_KIND:
            raise OfflineDatasetError(
                f"{path} is a checkpoint of kind {meta.get('kind')!r}, not an offline dataset; "
                "make one with dataset_from_efficientzero_run or load_minari")
        arrays = {k: v.numpy() for k, v in tensors.items()}
        stats = {k: arrays[k] for k in _SEARCH if k in arrays}
        return cls(str(meta["env_id"]), ActionSpace.from_json(meta["action_space"]),
                   arrays["frames"], arrays["actions"], arrays["rewards"],
                   arrays["terminations"], arrays["truncations"], arrays["episode_lengths"],
                   **stats, frame_stack=int(meta.get("frame_stack", 1)),
                   info=dict(meta.get("info") or {}))


# ---------------------------------------------------------------------- Minari
def _minari() -> Any:
    try:
        import minari
    except ImportError as err:
        raise MissingDependencyError(
            "Minari datasets need the 'minari' package with HDF5 storage. Install it with: "
            "pip install 'rltransfer[offline]'") from err
    return minari


@contextlib.contextmanager
def _datasets_root(root: str | Path | None) -> Iterator[None]:
    """Point ``MINARI_DATASETS_PATH`` at ``root`` for the duration (None: leave it)."""
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def save_minari(dataset: OfflineDataset, dataset_id: str, *, root: str | Path | None = None,
                author: str | None = None, description: str | None = None) -> Path:
    """Write ``dataset`` as the local Minari dataset ``dataset_id`` (HDF5, lossless: no JPEG).

    Args:
        dataset_id: Minari id ``[namespace/]name-v<version>``, e.g.
            ``"rltransfer/breakout-ez-v0"``.
        root: the Minari datasets directory (default: ``MINARI_DATASETS_PATH``, else
            ``~/.minari/datasets``).
        author, description: Minari metadata.

    Returns:
        The dataset's directory.

    Raises:
        MissingDependencyError: minari (or h5py) is not installed.
        OfflineDatasetError: a dataset with this id already exists there.
    """
    minari = _minari()
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    l_act = dataset.action_space.num_legal
    buffers = []
    for i, ep in enumerate(dataset.episodes()):
        infos = None
        if ep.root_values is not None and ep.root_policies is not None:
            pad = len(ep.actions) + 1
            infos = {"root_value": _pad_rows(ep.root_values, pad),
                     "root_policy": _pad_rows(ep.root_policies, pad),
                     "search_mask": _pad_rows(ep.search_mask, pad)}
        term, trunc = np.zeros(len(ep.actions), bool), np.zeros(len(ep.actions), bool)
        term[-1], trunc[-1] = ep.terminated, ep.truncated
        buffers.append(EpisodeBuffer(
            id=i, observations=ep.frames, actions=ep.actions, rewards=ep.rewards,
            terminations=term, truncations=trunc, infos=infos))
    with _datasets_root(root):
        from minari.storage.datasets_root_dir import get_dataset_path

        path = get_dataset_path(dataset_id)
        if path.exists():
            raise OfflineDatasetError(
                f"a Minari dataset {dataset_id!r} already exists at {path}; choose another id "
                "or delete it")
        try:
            with warnings.catch_warnings():  # Minari's nags about unset optional metadata
                warnings.filterwarnings("ignore", category=UserWarning, module="minari")
                created = minari.create_dataset_from_buffers(
                    dataset_id, buffers,
                    observation_space=spaces.Box(0, 255, dataset.obs_shape, np.uint8),
                    action_space=spaces.Discrete(l_act), algorithm_name="rltransfer",
                    author=author, description=description, jpeg_encoding=False)
            created.storage.update_metadata({"rltransfer": dataset.meta()})
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    return Path(path)


def _pad_rows(a: Any, rows: int) -> np.ndarray:
    arr = np.asarray(a)
    return np.concatenate([arr, np.zeros((rows - arr.shape[0], *arr.shape[1:]), arr.dtype)])


def load_minari(dataset_id: str, *, root: str | Path | None = None,
                env_id: str | None = None) -> OfflineDataset:
    """Read the local Minari dataset ``dataset_id`` (never downloads).

    A dataset written by :func:`save_minari` comes back whole (search statistics and
    metadata). A foreign one needs a ``Discrete`` action space and ``uint8`` image
    observations ``[C, H, W]`` (or ``[H, W]``, given one channel); its env id is ``env_id``,
    else its recorded gymnasium env id, else ``dataset_id``, and its action space is the
    env's shared one when the id is a MinAtar / Atari id, else the trivial local one.

    Raises:
        MissingDependencyError: minari (or h5py) is not installed.
        OfflineDatasetError: no such local dataset, or spaces this reader cannot use.
    """
    minari = _minari()
    from gymnasium import spaces

    with _datasets_root(root):
        try:
            data = minari.load_dataset(dataset_id, download=False)
        except FileNotFoundError as err:
            raise OfflineDatasetError(
                f"no local Minari dataset {dataset_id!r} ({err}); rltransfer never downloads: "
                "run `minari download` yourself or set MINARI_DATASETS_PATH") from err
        ours = data.storage.metadata.get("rltransfer")
        obs_space, act_space = data.observation_space, data.action_space
        if not isinstance(act_space, spaces.Discrete):
            raise OfflineDatasetError(
                f"{dataset_id} has action space {act_space}; only Discrete actions are read")
        if (not isinstance(obs_space, spaces.Box) or obs_space.dtype != np.uint8
                or len(obs_space.shape) not in (2, 3)):
            raise OfflineDatasetError(
                f"{dataset_id} has observation space {obs_space}; need uint8 [C, H, W] or "
                "[H, W] frames")
        episodes = [_episode_from_minari(ep) for ep in data.iterate_episodes()]
    if isinstance(ours, dict):
        meta = ours
        space = ActionSpace.from_json(meta["action_space"])
        name, stack, info = str(meta["env_id"]), int(meta.get("frame_stack", 1)), meta["info"]
    else:
        spec = data.env_spec
        name = env_id or (spec.id if spec is not None else dataset_id)
        n = int(act_space.n)
        try:
            space = action_space_for(name, n)
        except (UserError, ImportError):
            space = local_action_space(n)
        stack, info = 1, {"minari_dataset_id": dataset_id}
    return OfflineDataset.from_episodes(name, space, episodes, frame_stack=stack, info=info)


def _episode_from_minari(ep: Any) -> Episode:
    frames = np.asarray(ep.observations, dtype=np.uint8)
    if frames.ndim == 3:
        frames = frames[:, None]
    steps = len(ep.actions)
    infos = ep.infos or {}
    stats: tuple[Any, ...] = (None, None, None)
    if {"root_value", "root_policy", "search_mask"} <= set(infos):
        stats = (np.asarray(infos["root_value"])[:steps],
                 np.asarray(infos["root_policy"])[:steps],
                 np.asarray(infos["search_mask"])[:steps])
    return Episode(frames, np.asarray(ep.actions, dtype=np.int64),
                   np.asarray(ep.rewards, dtype=np.float32), bool(ep.terminations[-1]),
                   bool(ep.truncations[-1]), *stats)


# ---------------------------------------------------------------------- game-segment replays
def dataset_from_game_segments(replay: dict[str, np.ndarray], *, env_id: str,
                               action_space: ActionSpace, no_search_before_env_step: int = 0,
                               frame_stack: int = 1, info: dict[str, Any] | None = None
                               ) -> OfflineDataset:
    """The complete episodes held by a :class:`~rltransfer.replay.game_segment.GameSegmentReplay`
    state (``state_tensors()`` output: ``frames [B, S, C, H, W]``, ``actions``, ``rewards``,
    ``root_values``, ``policies [B, S, A]``, ``terminated``, ``truncated``, ``valid``,
    ``first`` ``[B, S]``, ``num_added [1]``; ``S`` = slots per env).

    An episode is kept when its first step and its final observation (the autoreset slot
    after its last step) are both still stored; episodes cut by the ring, still running, or
    whose final observation was never stored are left out. Episodes are ordered by env,
    then by time.

    Args:
        no_search_before_env_step: steps collected before this env step (vector step ``t``
            is env step ``t * B``) get ``search_mask`` False: their statistics are the
            uniform warm-up placeholders (policy ``1/A``, value 0), not a search.

    Raises:
        OfflineDatasetError: missing arrays, or no complete episode stored.
    """
    need = ("frames", "actions", "rewards", "root_values", "policies", "terminated",
            "truncated", "valid", "first", "num_added")
    missing = [k for k in need if k not in replay]
    if missing:
        raise OfflineDatasetError(f"not a game-segment replay state: missing {missing}")
    r = {k: np.asarray(replay[k]) for k in need}
    num_envs, cap = r["valid"].shape
    added = int(r["num_added"].reshape(-1)[0])
    steps = np.arange(max(0, added - cap), added)
    slots = steps % cap
    episodes = []
    for b in range(num_envs):
        valid, first = r["valid"][b, slots], r["first"][b, slots]
        done = (r["terminated"][b, slots] | r["truncated"][b, slots]) & valid
        for s in np.flatnonzero(first & valid):
            later = np.flatnonzero(done[s:])
            if later.size == 0:
                continue
            d = s + int(later[0])
            if d + 1 >= len(steps) or valid[d + 1] or not valid[s:d + 1].all():
                continue
            pos = slots[s:d + 2]
            policies = r["policies"][b, pos[:-1]].astype(np.float32)
            values = r["root_values"][b, pos[:-1]].astype(np.float32)
            mask = steps[s:d + 1] * num_envs >= no_search_before_env_step
            episodes.append(Episode(
                r["frames"][b, pos], r["actions"][b, pos[:-1]].astype(np.int64),
                r["rewards"][b, pos[:-1]].astype(np.float32),
                bool(r["terminated"][b, pos[-2]]), bool(r["truncated"][b, pos[-2]]),
                values, policies, mask))
    if not episodes:
        raise OfflineDatasetError(
            "the replay holds no complete episode (first step and final observation stored); "
            "train longer or use a larger replay")
    return OfflineDataset.from_episodes(env_id, action_space, episodes,
                                        frame_stack=frame_stack, info=info)
