"""The frame-once slot ring that the three replays are built on.

:class:`~rltransfer.replay.transition.TransitionReplay` (n-step transitions),
:class:`~rltransfer.replay.sequence.SequenceReplay` (R2D2 sequences) and
:class:`~rltransfer.replay.game_segment.GameSegmentReplay` (EfficientZero positions) all store
each env's steps once, in a ring of ``capacity_per_env`` slots per env, and differ only in
what a sampleable *item* is and what extra per-slot data they keep. :class:`SlotRing` is
that common part:

* the write cursor: vector-env step ``t`` (counted by ``add``) lives in slot ``t %
  capacity_per_env`` of every env, the oldest step is overwritten once the ring is full;
* the stream flags of gymnasium's ``NEXT_STEP`` autoreset (``terminated``, ``truncated``,
  ``valid`` = not an autoreset slot, ``first`` = first slot of an episode), all
  ``bool[B, capacity_per_env]``, and the one ``uint8`` frame observed before each action;
* the eligibility mask ``eligible`` (``bool[B, capacity_per_env]``, flat id ``env *
  capacity_per_env + slot``: the slot starts a sampleable item) kept in sync with a
  :class:`~rltransfer.replay.sum_tree.SumTree` of ``p^alpha`` per slot (0 where not
  eligible);
* proportional prioritized sampling with importance weights (Schaul et al. 2016, Sec.
  3.3-3.4; new items get the largest priority seen so far, initially 1), or uniform
  sampling (every eligible leaf 1, weights 1);
* frame stacking at sample time (the rule of
  :class:`~rltransfer.replay.transition.FrameStacker`);
* ``state_tensors()`` / ``load_state_tensors()``: a flat dict of numpy arrays whose keys are
  the replay's slot arrays by name plus ``priorities``, ``num_added``, ``max_priority``,
  ``prev_done``, ``prev_autoreset``, ``config_int``, ``config_float`` (the checkpoint
  format of the replays before this base existed, unchanged).

A subclass validates its arguments, calls ``SlotRing.__init__``, allocates its own slot
arrays and implements :meth:`SlotRing._refresh_recent` (which recent items became
sampleable); its ``add`` validates the inputs, calls :meth:`SlotRing._append` and writes its
own arrays at the returned slot, then calls :meth:`SlotRing._refresh_recent`.
:class:`BatchRing` adds what the transition and sequence replays share on top: ``sample`` /
``gather`` of one dict of arrays per batch with a fixed importance exponent.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np

from rltransfer.replay.slots import (
    check_indices,
    importance_weights,
    set_eligible,
    set_priorities,
    stack_zero_mask,
    validated_state,
)
from rltransfer.replay.sum_tree import SumTree

__all__ = ["BatchRing", "SlotRing", "StepInputs"]

_RING_ARRAYS = ("frames", "terminated", "truncated", "valid", "first", "eligible")


class SlotRing:
    """Frame-once ring of ``num_envs x capacity_per_env`` slots with prioritized eligibility.

    Args (validated by the subclass, whose messages name its own fixes):
        num_envs: ``B``.
        capacity_per_env: slots per env.
        frame_shape: one frame ``(C, H, W)``, stored as ``uint8``.
        frame_stack: ``S`` frames per sampled observation.
        prioritized: proportional prioritized sampling, else uniform.
        priority_exponent: alpha (priorities are stored as ``p^alpha``).
        min_priority: floor applied in :meth:`update_priorities`.
        overwrite_reach: how many slots from the overwritten one onwards an item may read
            backwards (frame stack, burn-in): writing step ``t`` makes the items at steps
            ``t - capacity_per_env + k``, ``0 <= k < overwrite_reach``, unsampleable.

    Memory: ``C*H*W + 5`` bytes per slot here (frame and five flags) plus the sum tree's
    16..32 bytes per slot (:attr:`nbytes` counts the subclass's arrays too).
    """

    # Class-level settings of the subclasses.
    _label: ClassVar[str] = "replay"  # how checkpoint errors name the replay
    _add_label: ClassVar[str] = "replay.add"  # how add() errors are prefixed
    _item: ClassVar[str] = "item"  # what a sampleable item is, for error messages
    _config_fields: ClassVar[str] = ""  # what config_int / config_float hold
    # begin_stream: also close an episode whose last stored step already ended it by
    # truncation (its final observation was never stored).
    _cut_truncated_end: ClassVar[bool] = True

    def __init__(self, num_envs: int, capacity_per_env: int, frame_shape: tuple[int, ...], *,
                 frame_stack: int, prioritized: bool, priority_exponent: float,
                 min_priority: float, overwrite_reach: int) -> None:
        self.num_envs = int(num_envs)
        self.capacity_per_env = int(capacity_per_env)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.frame_stack = int(frame_stack)
        self.prioritized = bool(prioritized)
        self.priority_exponent = float(priority_exponent)
        self.min_priority = float(min_priority)
        self._overwrite_reach = int(overwrite_reach)
        shape = (self.num_envs, self.capacity_per_env)
        self.frames = np.zeros((*shape, *self.frame_shape), dtype=np.uint8)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.valid = np.zeros(shape, dtype=bool)  # not an autoreset slot
        self.first = np.zeros(shape, dtype=bool)  # first slot of an episode
        self.eligible = np.zeros(shape, dtype=bool)  # starts a sampleable item now
        self.tree = SumTree(self.num_envs * self.capacity_per_env)
        self.num_added = 0  # vector-env steps added (each adds num_envs slots)
        self.num_eligible = 0
        self.max_priority = 1.0
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._prev_autoreset = np.ones(self.num_envs, dtype=bool)

    # ------------------------------------------------------------------ subclass hooks
    def _slot_arrays(self) -> tuple[str, ...]:
        """Names of the subclass's own per-slot arrays (saved under these names)."""
        return ()

    def _extra_state(self) -> tuple[str, ...]:
        """Attribute names of further saved arrays that are not slots (restored in place;
        saved under the name without its leading underscore)."""
        return ()

    def _memory_arrays(self) -> tuple[str, ...]:
        """The arrays :attr:`nbytes` counts besides the slot arrays."""
        return ()

    def _config_int(self) -> np.ndarray:
        raise NotImplementedError

    def _config_float(self) -> np.ndarray:
        raise NotImplementedError

    def _upgrade_state(self, arrays: dict[str, np.ndarray],
                       expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fill in keys that older checkpoints lack (default: none)."""
        return arrays

    def _refresh_recent(self, last: int) -> None:
        """Recompute the eligibility of the items that writing step ``last`` may change."""
        raise NotImplementedError

    # ------------------------------------------------------------------ info
    @property
    def stacked_shape(self) -> tuple[int, int, int]:
        """``(C*S, H, W)``: one stacked observation."""
        c, h, w = self.frame_shape
        return (c * self.frame_stack, h, w)

    @property
    def nbytes(self) -> int:
        """Bytes held by the slot arrays, the subclass's other buffers and the sum tree."""
        names = (*_RING_ARRAYS, *self._slot_arrays(), *self._memory_arrays())
        return int(sum(getattr(self, n).nbytes for n in names)) + self.tree.nbytes

    def __len__(self) -> int:
        """Number of items that can be sampled now."""
        return self.num_eligible

    def can_sample(self) -> bool:
        """True when at least one item is sampleable."""
        return self.num_eligible > 0

    def eligible_indices(self) -> np.ndarray:
        """Flat ids (``env * capacity_per_env + slot``) of all sampleable items, ``int64``."""
        return np.flatnonzero(self.eligible.reshape(-1))

    def step_of_index(self, indices: np.ndarray) -> np.ndarray:
        """The vector-env step number (0-based, counted by ``add``) stored at flat ids."""
        pos = np.asarray(indices, dtype=np.int64) % self.capacity_per_env
        last = self.num_added - 1
        return last - ((last - pos) % self.capacity_per_env)

    # ------------------------------------------------------------------ writing
    def _check_frame(self, obs: Any) -> np.ndarray:
        """``obs`` as ``uint8[B, C, H, W]``; raises ValueError otherwise."""
        obs = np.asarray(obs)
        if obs.dtype != np.uint8 or obs.shape != (self.num_envs, *self.frame_shape):
            raise ValueError(
                f"{self._add_label} expects obs uint8{[self.num_envs, *self.frame_shape]} "
                f"(one unstacked frame), got {obs.dtype}{list(obs.shape)}"
            )
        return obs

    def _vector(self, name: str, value: Any, dtype: Any, *, integer: bool = True) -> np.ndarray:
        """A ``[B]`` input as ``dtype``; with ``integer``, ``dtype`` ``np.int64`` needs integer
        input. Raises ValueError (wrong shape, non-integer input)."""
        a = np.asarray(value)
        if a.shape != (self.num_envs,):
            raise ValueError(
                f"{self._add_label}: {name} must have shape ({self.num_envs},), got {a.shape}"
            )
        if integer and dtype is np.int64 and a.dtype.kind not in "iu":
            raise ValueError(f"{self._add_label}: {name} must be integer, got {a.dtype}")
        return a.astype(dtype, copy=False)

    def _append(self, obs: np.ndarray, term: np.ndarray,
                trunc: np.ndarray) -> tuple[int, int, np.ndarray]:
        """Write the ring's part of one vector-env step (inputs already validated).

        Clears the eligibility of the items that read the overwritten slot, stores the frame
        and the stream flags, advances the cursor. The caller then writes its own arrays at
        the returned slot and calls :meth:`_refresh_recent` with the returned step.

        Returns:
            ``(t, p, first)``: the absolute step written, its slot, and ``bool[B]`` whether
            it starts an episode.
        """
        b, c = self.num_envs, self.capacity_per_env
        t = self.num_added
        p = t % c
        autoreset = self._prev_done  # replaced (not written into) below: no copy needed
        live = ~autoreset
        first = self._prev_autoreset & live
        if t + self._overwrite_reach > c:  # some old step t - c + k (k < reach) exists
            old_steps = t - c + np.arange(self._overwrite_reach)
            old_pos = old_steps[old_steps >= 0] % c
            flat = (np.arange(b)[:, None] * c + old_pos[None, :]).reshape(-1)
            self._set_eligible(flat, np.zeros(flat.shape, bool))
        self.frames[:, p] = obs
        self.terminated[:, p] = term & live
        self.truncated[:, p] = trunc & live
        self.valid[:, p] = live
        self.first[:, p] = first
        self._prev_done = (term | trunc) & live
        self._prev_autoreset = autoreset
        self.num_added = t + 1
        return t, p, first

    def begin_stream(self) -> None:
        """Declare that the env streams restart (fresh ``env.reset()``, e.g. after resuming).

        The next ``add`` starts a new episode in every env. An episode cut mid-way is closed
        as truncated at its second-to-last stored step; its last stored slot becomes the
        final (bootstrap, autoreset-like) observation, never sampled itself. An episode that
        was terminated at the last stored step stays as it is (its final observation is
        never stored); one truncated there is cut the same way when the class sets
        ``_cut_truncated_end`` (transition and sequence replays), else kept as it is (game
        segments: its last positions stay unsampleable). A no-op before the first ``add``.
        """
        if self.num_added == 0:
            self._prev_done[:] = False
            self._prev_autoreset[:] = True
            return
        last = self.num_added - 1
        c = self.capacity_per_env
        p = last % c
        cut = ~self._prev_autoreset & ~self.terminated[:, p]
        if not self._cut_truncated_end:
            cut &= ~self.truncated[:, p]
        if cut.any():
            envs = np.flatnonzero(cut)
            self.valid[envs, p] = False
            self.terminated[envs, p] = False
            self.truncated[envs, p] = False
            has_prev = envs[~self.first[envs, p]]
            self.truncated[has_prev, (last - 1) % c] = True
            self._set_eligible(envs * c + p, np.zeros(envs.shape, bool))
        self._prev_done[:] = False
        self._prev_autoreset[:] = True
        self._refresh_recent(last)

    def _set_eligible(self, flat: np.ndarray, flags: np.ndarray) -> None:
        """Set eligibility of unique flat ids, keeping the tree and the counter in sync."""
        fresh = self.max_priority**self.priority_exponent if self.prioritized else 1.0
        self.num_eligible += set_eligible(self.eligible, self.tree, flat, flags, fresh)

    # ------------------------------------------------------------------ sampling
    def _draw(self, batch_size: int, rng: np.random.Generator, importance_exponent: float,
              empty_hint: str) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch_size`` flat ids (with replacement) proportionally to the tree.

        Returns:
            ``(flat int64[batch_size], weights float32[batch_size])``: importance weights
            with exponent ``importance_exponent`` (max 1) when prioritized, else ones.

        Raises:
            ValueError: ``batch_size < 1`` or nothing sampleable (``empty_hint`` says what an
                item needs).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.num_eligible == 0:
            raise ValueError(
                f"replay has no sampleable {self._item} yet: add more steps first "
                f"({empty_hint}); check can_sample()"
            )
        total = self.tree.total
        flat = self.tree.find(rng.random(batch_size) * total)
        weights = (
            importance_weights(self.tree, flat, total, self.num_eligible, importance_exponent)
            if self.prioritized else np.ones(batch_size, dtype=np.float32)
        )
        return flat, weights

    def _stack(self, envs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Stacked observations ``uint8[M, C*S, H, W]`` at stored absolute ``steps`` of
        ``envs`` (both ``int[M]``), oldest frame first; frames from before the episode's
        first step are zeros (the rule of :class:`~rltransfer.replay.FrameStacker`)."""
        c, s = self.capacity_per_env, self.frame_stack
        if s == 1:
            return self.frames[envs, steps % c]
        e = envs[:, None]
        frames = self.frames[e, (steps[:, None] + np.arange(1 - s, 1)[None, :]) % c]
        first_back = self.first[e, (steps[:, None] - np.arange(s - 1)[None, :]) % c]
        frames[stack_zero_mask(first_back)] = 0
        return frames.reshape(steps.shape[0], *self.stacked_shape)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of sampled items (``p_i``; stored as ``p_i^alpha``).

        Ids that are no longer sampleable (overwritten since sampling) are skipped. A no-op
        in uniform mode (after validation).

        Args:
            indices: ``int64[N]`` flat ids from sampling.
            priorities: ``float[N]``, finite and >= 0 (e.g. |TD error|); floored at
                ``min_priority``.

        Raises:
            ValueError: mismatched shapes, out-of-range ids, negative or non-finite priorities.
        """
        self.max_priority = set_priorities(
            self.tree, self.eligible, indices, priorities, min_priority=self.min_priority,
            exponent=self.priority_exponent, max_priority=self.max_priority,
            prioritized=self.prioritized,
        )

    # ------------------------------------------------------------------ checkpoints
    def _state_names(self) -> tuple[str, ...]:
        return (*_RING_ARRAYS, *self._slot_arrays(), *self._extra_state())

    def state_tensors(self) -> dict[str, np.ndarray]:
        """Contents and counters as plain numpy arrays (safetensors-ready, nothing pickled)."""
        out = {name.lstrip("_"): getattr(self, name).copy() for name in self._state_names()}
        out.update(
            priorities=self.tree.leaves.copy(),
            num_added=np.array([self.num_added], dtype=np.int64),
            max_priority=np.array([self.max_priority], dtype=np.float64),
            prev_done=self._prev_done.copy(),
            prev_autoreset=self._prev_autoreset.copy(),
            config_int=self._config_int(),
            config_float=self._config_float(),
        )
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        """Restore from :meth:`state_tensors` output (numpy arrays or CPU torch tensors).

        Raises:
            ValueError: missing/unexpected keys, or a replay of another configuration or
                shape (the message names the difference). Nothing is changed in that case.
        """
        arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                  for k, v in tensors.items()}
        expected = self.state_tensors()
        arrays = validated_state(self._upgrade_state(arrays, expected), expected,
                                 label=self._label, config_fields=self._config_fields)
        for name in self._state_names():
            getattr(self, name)[...] = arrays[name.lstrip("_")]
        self.tree.set_all(np.where(self.eligible.reshape(-1), arrays["priorities"], 0.0))
        self.num_added = int(arrays["num_added"][0])
        self.max_priority = float(arrays["max_priority"][0])
        self._prev_done = arrays["prev_done"].copy()
        self._prev_autoreset = arrays["prev_autoreset"].copy()
        self.num_eligible = int(self.eligible.sum())


class StepInputs(NamedTuple):
    """One vector-env step's ``add`` inputs as :meth:`BatchRing._check_step` validated them
    (``B`` envs)."""

    obs: np.ndarray  # uint8[B, C, H, W]
    action: np.ndarray  # int64[B] (discrete) or float32[B, A] (continuous)
    agent_action: np.ndarray  # int64[B] in A+ (``action`` when not given or continuous)
    extra: np.ndarray  # bool[B]
    reward: np.ndarray  # float64[B], finite
    terminated: np.ndarray  # bool[B]
    truncated: np.ndarray  # bool[B]


class BatchRing(SlotRing):
    """A :class:`SlotRing` whose items are sampled and gathered as one dict of numpy arrays
    with a fixed importance exponent (the transition and sequence replays; the game-segment
    replay gathers :class:`~rltransfer.replay.game_segment.Segment` objects and anneals its
    exponent, so it builds on :class:`SlotRing` directly).

    Args:
        importance_exponent: beta of the importance weights (Schaul et al. 2016, Sec. 3.4),
            validated by the subclass; the other arguments are :class:`SlotRing`'s.

    A subclass implements :meth:`_gather` (the batch of checked flat ids) and
    :meth:`_empty_hint`, validates the inputs of its ``add`` with :meth:`_check_step`
    (overriding :meth:`_check_actions` for other kinds of action), and documents its batch
    layout in its class docstring.
    """

    def __init__(self, num_envs: int, capacity_per_env: int, frame_shape: tuple[int, ...], *,
                 frame_stack: int, prioritized: bool, priority_exponent: float,
                 importance_exponent: float, min_priority: float, overwrite_reach: int) -> None:
        super().__init__(
            num_envs, capacity_per_env, frame_shape, frame_stack=frame_stack,
            prioritized=prioritized, priority_exponent=priority_exponent,
            min_priority=min_priority, overwrite_reach=overwrite_reach,
        )
        self.importance_exponent = float(importance_exponent)

    # ------------------------------------------------------------------ subclass hooks
    def _gather(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The batch dict of the items at checked flat ids ``int64[N]`` (without
        ``weights``)."""
        raise NotImplementedError

    def _empty_hint(self) -> str:
        """What an item needs before it can be sampled (for the empty-replay error)."""
        raise NotImplementedError

    def _check_actions(self, action: Any,
                       agent_action: Any | None) -> tuple[np.ndarray, np.ndarray]:
        """Discrete actions: ``action`` and ``agent_action`` (``None``: ``action``) as
        ``int64[B]``, both >= 0. Raises ValueError (wrong shape, non-integer, negative)."""
        action_a = self._vector("action", action, np.int64)
        agent_a = action_a if agent_action is None else self._vector(
            "agent_action", agent_action, np.int64)
        if action_a.min() < 0 or agent_a.min() < 0:
            raise ValueError(f"{self._add_label}: actions must be >= 0")
        return action_a, agent_a

    def _check_finite(self, name: str, reward: np.ndarray) -> None:
        """Raises ValueError if a reward input ``float64[B]`` is NaN or infinite."""
        if not np.all(np.isfinite(reward)):
            raise ValueError(
                f"{self._add_label}: non-finite {name} {reward}; check the reward function")

    # ------------------------------------------------------------------ writing
    def _check_step(self, obs: Any, action: Any, agent_action: Any | None, extra: Any | None,
                    reward: Any, terminated: Any, truncated: Any) -> StepInputs:
        """Validate the inputs ``add`` has in common (``uint8[B, C, H, W]`` frame, actions by
        :meth:`_check_actions`, ``bool[B]`` extra (``None``: all false), finite ``float[B]``
        reward, ``bool[B]`` end flags).

        Raises:
            ValueError: wrong shape/dtype, negative actions, non-finite rewards.
        """
        frame = self._check_frame(obs)
        action_a, agent_a = self._check_actions(action, agent_action)
        extra_a = (np.zeros(self.num_envs, bool) if extra is None
                   else self._vector("extra", extra, bool))
        reward_a = self._vector("reward", reward, np.float64)
        term = self._vector("terminated", terminated, bool)
        trunc = self._vector("truncated", truncated, bool)
        self._check_finite("reward", reward_a)
        return StepInputs(frame, action_a, agent_a, extra_a, reward_a, term, trunc)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Sample ``batch_size`` items with replacement, proportionally to priority
        (uniformly when not prioritized); the batch layout is the subclass's (see its class
        docstring), with importance weights ``float32[batch_size]`` (max 1; ones when
        uniform) under ``"weights"`` (Schaul et al. 2016, Sec. 3.3-3.4).

        Raises:
            ValueError: ``batch_size < 1`` or nothing to sample yet (see :meth:`can_sample`).
        """
        flat, weights = self._draw(batch_size, rng, self.importance_exponent,
                                   self._empty_hint())
        batch = self._gather(flat)
        batch["weights"] = weights
        return batch

    def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The items at flat ``indices`` (``int[N]``, ``env * capacity_per_env + slot``), as
        ``sample`` returns them, with ``weights`` all 1.

        Raises:
            ValueError: an index is out of range or not sampleable now.
        """
        flat = check_indices(indices, self.eligible, f"{self._item}s")
        batch = self._gather(flat)
        batch["weights"] = np.ones(flat.shape[0], dtype=np.float32)
        return batch
