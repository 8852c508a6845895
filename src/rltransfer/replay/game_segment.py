"""Prioritized game-segment replay for EfficientZero: frames stored once, search statistics kept.

EfficientZero (Ye et al. 2021) and MuZero Reanalyze learn from *positions* of stored games:
a sampled position ``t`` is unrolled ``K`` steps (``a_t .. a_{t+K-1}``) and its targets need the
rewards, episode boundaries and observations up to ``t + K + n`` (``n`` = TD steps). This
replay keeps one circular stream per environment (the "game segments" of ``B`` parallel envs)
and stores every environment step once:

* the single ``uint8`` frame observed *before* the action (stacks of ``S`` frames are rebuilt
  at sample time, with zeros before an episode's first frame, exactly as
  :class:`rltransfer.replay.FrameStacker` stacks them at acting time);
* the action, the reward and the ``terminated`` / ``truncated`` flags returned by the step;
* the search statistics at that observation: root value and policy (normalised visit counts).

Stream semantics are gymnasium's ``NEXT_STEP`` autoreset (see
:class:`rltransfer.replay.TransitionReplay`): the step after an episode's last step is an
*autoreset* slot whose frame is the episode's final observation (the bootstrap observation of
a truncated episode) and whose action is ignored; it is never sampled as a position.

Sampleable positions: a valid (non-autoreset) slot ``t`` whose stack frames are still stored
and whose window is written: either slot ``t + K + n`` exists, or the episode ends at some
``t + l`` (``l < K + n``) and its final-observation slot ``t + l + 1`` exists.

Prioritized sampling (Schaul et al. 2016, proportional; EfficientZero: alpha 0.6, beta
annealed 0.4 -> 1 by the caller): ``P(i) = p_i^alpha / sum_k p_k^alpha``, new positions get the
largest priority given so far (initially 1), importance weights
``w_i = (N P(i))^-beta / max_batch w`` with ``N`` the number of sampleable positions.

Memory per stored env step: ``C*H*W`` bytes of frame + 4 (action int32) + 4 (reward float32)
+ 4 (root value float32) + ``4*A`` (policy float32) + 5 bool flags + the sum tree's 16..32
bytes (float64 leaves and inner nodes, rounded up to a power of two); that is about
``C*H*W + 4*A + 33..49`` bytes. Atari at 96x96 RGB (3x96x96, A = 18): ~27.8 kB per step, the
whole Atari100k run (100k env steps) ~2.8 GB. MinAtar Breakout (4x10x10, A = 6 with
``MinAtar/*-v1``): ~0.46 kB per step. :attr:`GameSegmentReplay.nbytes` gives the exact total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rltransfer.replay.ring import SlotRing
from rltransfer.replay.slots import check_indices

NOT_ENDED = np.iinfo(np.int64).max // 4
"""``Segment.episode_end`` of positions whose episode does not end inside the window."""

@dataclass
class Segment:
    """The stored data of ``N`` sampled positions and the ``K + n`` steps after each.

    Offsets ``j`` count env steps from the sampled position ``t`` (``j = 0`` is ``t``).
    ``W = K + n`` with ``K`` = ``unroll_steps`` and ``n`` = ``td_steps`` of the replay.

    Attributes:
        envs: ``int64[N]`` env (stream) of each position.
        steps: ``int64[N]`` absolute vector-env step of each position (counted by ``add``).
        rewards: ``float32[N, W]`` rewards of steps ``t .. t+W-1``; zero after the episode's
            last step (so sums over the window never cross into the next episode).
        actions: ``int64[N, K]`` stored actions ``a_t .. a_{t+K-1}``, *raw*: past the episode
            end they belong to the autoreset slot or the next episode (callers replace them).
        root_values: ``float32[N, K+1]`` self-play search root values at ``t .. t+K``.
        policies: ``float32[N, K+1, A]`` self-play search policies at ``t .. t+K``.
        episode_end: ``int64[N]`` offset ``l`` of the episode's last step (the step whose
            action ended it; its final observation is at offset ``l + 1``), or
            :data:`NOT_ENDED` when the episode does not end within offsets ``0 .. W-1``.
        terminal: ``bool[N]`` the episode ended by termination at ``l`` (False: truncated or
            not ended).
        age_env_steps: ``int64[N]`` env steps (all envs together) collected since this
            position was stored (0 for the newest step): the data age of the off-policy
            correction.
    """

    envs: np.ndarray
    steps: np.ndarray
    rewards: np.ndarray
    actions: np.ndarray
    root_values: np.ndarray
    policies: np.ndarray
    episode_end: np.ndarray
    terminal: np.ndarray
    age_env_steps: np.ndarray


class GameSegmentReplay(SlotRing):
    """Frame-once prioritized replay of game positions with their search statistics.

    ``add`` is called once per vector-env step for all ``B`` envs. ``sample`` draws positions
    by priority; :meth:`segment` and :meth:`stacked_obs` give what target computation
    (:mod:`rltransfer.agents.efficientzero.reanalyse`) needs.

    Args:
        num_envs: ``B``.
        capacity_per_env: slots per env (``num_envs * capacity_per_env`` in all); must be at
            least ``unroll_steps + td_steps + frame_stack + 1``.
        frame_shape: one frame ``(C, H, W)``.
        num_actions: ``A``, the size of stored search policies.
        frame_stack: ``S`` frames per observation.
        unroll_steps: ``K`` (EfficientZero: 5).
        td_steps: ``n``, the largest TD horizon targets may use (EfficientZero: 5).
        priority_exponent: alpha (EfficientZero: 0.6).
        min_priority: floor applied in :meth:`update_priorities` so no sampleable position
            gets probability 0.

    The ring (write cursor, stream flags, eligibility, sum tree, sampling, checkpoints) is
    :class:`~rltransfer.replay.ring.SlotRing`, always prioritized; this class adds the
    actions, rewards and search statistics per slot and the position rule.

    Raises:
        ValueError: invalid sizes or exponents (the message names the fix).
    """

    _add_label = "GameSegmentReplay.add"
    _item = "position"
    _config_fields = ("(num_envs, capacity_per_env, frame_stack, unroll_steps, td_steps, "
                      "num_actions, frame shape / priority exponent)")
    # An episode that ended (either way) at the last stored step keeps its end flag; its
    # last positions stay unsampleable (their final observation is never stored).
    _cut_truncated_end = False

    def __init__(
        self,
        num_envs: int,
        capacity_per_env: int,
        frame_shape: tuple[int, ...],
        num_actions: int,
        *,
        frame_stack: int = 4,
        unroll_steps: int = 5,
        td_steps: int = 5,
        priority_exponent: float = 0.6,
        min_priority: float = 1e-6,
    ) -> None:
        if num_envs < 1 or num_actions < 1:
            raise ValueError(f"num_envs and num_actions must be >= 1, got {num_envs}, "
                             f"{num_actions}")
        if frame_stack < 1 or unroll_steps < 1 or td_steps < 1:
            raise ValueError(
                "frame_stack, unroll_steps and td_steps must be >= 1, got "
                f"{frame_stack}, {unroll_steps}, {td_steps}"
            )
        need = unroll_steps + td_steps + frame_stack + 1
        if capacity_per_env < need:
            raise ValueError(
                f"capacity_per_env={capacity_per_env} is too small for unroll_steps="
                f"{unroll_steps}, td_steps={td_steps}, frame_stack={frame_stack}; use at "
                f"least {need}"
            )
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(
                f"frame_shape must be (C, H, W) with positive sizes, got {frame_shape}"
            )
        if priority_exponent < 0 or not min_priority > 0:
            raise ValueError(
                "priority_exponent must be >= 0 and min_priority > 0, got "
                f"{priority_exponent}, {min_priority}"
            )
        super().__init__(
            num_envs, capacity_per_env, frame_shape, frame_stack=frame_stack, prioritized=True,
            priority_exponent=priority_exponent, min_priority=min_priority,
            overwrite_reach=frame_stack,
        )
        self.num_actions = int(num_actions)
        self.unroll_steps = int(unroll_steps)
        self.td_steps = int(td_steps)
        self.window = self.unroll_steps + self.td_steps
        shape = (self.num_envs, self.capacity_per_env)
        self.actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.root_values = np.zeros(shape, dtype=np.float32)
        self.policies = np.zeros((*shape, self.num_actions), dtype=np.float32)

    # ------------------------------------------------------------------ ring hooks
    def _slot_arrays(self) -> tuple[str, ...]:
        return ("actions", "rewards", "root_values", "policies")

    # ------------------------------------------------------------------ writing
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        root_values: np.ndarray,
        policies: np.ndarray,
    ) -> None:
        """Append one vector-env step for all envs.

        Args:
            obs: ``uint8[B, C, H, W]``, the single frame observed *before* ``actions``.
            actions: ``int[B]`` actions executed, in ``[0, A)``.
            rewards: ``float[B]`` rewards of this step (already clipped if the run clips).
            terminated, truncated: ``bool[B]`` end flags returned by this step.
            root_values: ``float[B]`` search root values at ``obs``.
            policies: ``float[B, A]`` search policies (normalised visit counts) at ``obs``.

        Raises:
            ValueError: wrong shape/dtype, actions out of range, non-finite numbers.
        """
        b = self.num_envs
        obs = self._check_frame(obs)
        act = self._vector("actions", actions, np.int64, integer=False)
        if not np.issubdtype(np.asarray(actions).dtype, np.integer):
            raise ValueError(f"actions must be integers, got {np.asarray(actions).dtype}")
        if act.min() < 0 or act.max() >= self.num_actions:
            raise ValueError(f"actions must be in [0, {self.num_actions}), got {act}")
        rew = self._vector("rewards", rewards, np.float64)
        term = self._vector("terminated", terminated, bool)
        trunc = self._vector("truncated", truncated, bool)
        val = self._vector("root_values", root_values, np.float64)
        pol = np.asarray(policies, dtype=np.float64)
        if pol.shape != (b, self.num_actions):
            raise ValueError(f"policies must have shape {(b, self.num_actions)}, got {pol.shape}")
        if not (np.all(np.isfinite(rew)) and np.all(np.isfinite(val))
                and np.all(np.isfinite(pol))):
            raise ValueError("GameSegmentReplay.add: non-finite reward, root value or policy")

        t, p, _ = self._append(obs, term, trunc)
        self.actions[:, p] = act
        self.rewards[:, p] = rew
        self.root_values[:, p] = val
        self.policies[:, p] = pol
        self._refresh_recent(t)

    # ------------------------------------------------------------------ sampling
    def sample(
        self, batch_size: int, rng: np.random.Generator, importance_exponent: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``batch_size`` positions (with replacement) proportionally to priority.

        Args:
            batch_size: number of positions (>= 1).
            rng: numpy Generator.
            importance_exponent: beta of the importance weights (EfficientZero anneals it
                0.4 -> 1 over training).

        Returns:
            ``(indices int64[batch_size], weights float32[batch_size])``: flat position ids
            (``env * capacity_per_env + slot``) and importance weights (max 1).

        Raises:
            ValueError: ``batch_size < 1``, ``importance_exponent < 0``, or nothing sampleable
                yet (see :meth:`can_sample`).
        """
        if importance_exponent < 0:
            raise ValueError(f"importance_exponent must be >= 0, got {importance_exponent}")
        flat, weights = self._draw(
            batch_size, rng, importance_exponent,
            f"a position needs {self.window} steps after it written, or its episode's end",
        )
        return flat.astype(np.int64), weights

    def segment(self, indices: np.ndarray) -> Segment:
        """The stored window of each position (see :class:`Segment`).

        Args:
            indices: ``int64[N]`` sampleable flat ids (from :meth:`sample`).

        Raises:
            ValueError: an id is out of range or not sampleable now.
        """
        flat = check_indices(indices, self.eligible, "positions")
        c, k, w = self.capacity_per_env, self.unroll_steps, self.window
        envs, steps = flat // c, self.step_of_index(flat)
        end, terminal = self._episode_end(envs, steps)
        offs = np.arange(w)
        e = envs[:, None]
        pos = (steps[:, None] + offs[None, :]) % c
        written = steps[:, None] + offs[None, :] < self.num_added
        inside = (offs[None, :] <= end[:, None]) & written
        rewards = np.where(inside, self.rewards[e, pos], 0.0).astype(np.float32)
        pos_k = pos[:, : k + 1]  # W = K + n >= K + 1
        return Segment(
            envs=envs.astype(np.int64),
            steps=steps.astype(np.int64),
            rewards=rewards,
            actions=self.actions[e, pos_k[:, :k]].astype(np.int64),
            root_values=self.root_values[e, pos_k].copy(),
            policies=self.policies[e, pos_k].copy(),
            episode_end=end,
            terminal=terminal,
            age_env_steps=((self.num_added - 1 - steps) * self.num_envs).astype(np.int64),
        )

    def stacked_obs(self, envs: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Stacked observations at absolute ``steps`` of ``envs`` (oldest frame first).

        Frames from before the episode's first step are zeros (the rule of
        :class:`rltransfer.replay.FrameStacker`).

        Args:
            envs: ``int[M]`` env ids.
            steps: ``int[M]`` absolute steps, each stored (``num_added - capacity_per_env <=
                step < num_added``).

        Returns:
            ``uint8[M, C*S, H, W]``.

        Raises:
            ValueError: a step that is not stored.
        """
        envs = np.asarray(envs, dtype=np.int64).reshape(-1)
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        c = self.capacity_per_env
        if steps.size and (steps.max() >= self.num_added
                           or steps.min() < self.num_added - c):
            raise ValueError(
                f"steps must be stored, in [{max(0, self.num_added - c)}, {self.num_added})"
            )
        return self._stack(envs, steps)

    # ------------------------------------------------------------------ internals
    def _config_int(self) -> np.ndarray:
        return np.array(
            [self.num_envs, self.capacity_per_env, self.frame_stack, self.unroll_steps,
             self.td_steps, self.num_actions, *self.frame_shape],
            dtype=np.int64,
        )

    def _config_float(self) -> np.ndarray:
        return np.array([self.priority_exponent], dtype=np.float64)

    def _episode_end(self, envs: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offset of the episode's last step within ``0 .. W-1`` (or NOT_ENDED), terminal."""
        c, w = self.capacity_per_env, self.window
        st = steps[:, None] + np.arange(w)[None, :]
        pos = st % c
        written = st < self.num_added
        e = envs[:, None]
        term = self.terminated[e, pos] & written
        done = (term | self.truncated[e, pos]) & written
        any_done = done.any(axis=1)
        first_done = done.argmax(axis=1)
        end = np.where(any_done, first_done, NOT_ENDED).astype(np.int64)
        terminal = any_done & term[np.arange(steps.shape[0]), first_done]
        return end, terminal

    def _refresh_recent(self, last: int) -> None:
        """Recompute eligibility of the steps ``last - W .. last`` in every env (the ones
        whose window step ``last`` may complete)."""
        c = self.capacity_per_env
        steps = np.arange(max(0, last - self.window), last + 1)
        envs = np.repeat(np.arange(self.num_envs), steps.shape[0])
        st = np.tile(steps, self.num_envs)
        end, _ = self._episode_end(envs, st)
        # The episode's final observation must be stored: its slot (after the last step) is
        # an autoreset slot. After a stream restart (begin_stream) an episode that ended at
        # the last stored step has none, and its last positions stay unsampleable.
        final_step = st + np.minimum(end, self.window) + 1
        final_stored = (final_step < self.num_added) & ~self.valid[envs, final_step % c]
        ended_written = (end != NOT_ENDED) & final_stored
        complete = ended_written | (st + self.window < self.num_added)
        flags = self.valid[envs, st % c] & complete
        self._set_eligible(envs * c + st % c, flags)
