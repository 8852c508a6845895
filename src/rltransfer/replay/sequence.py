"""Frame-once prioritized sequence replay for recurrent agents (R2D2).

Kapturowski et al. 2019 (Sec. 3): the learner trains on fixed-length sequences cut from the
actors' streams, overlapping by half, with the recurrent state the actor had at each
sequence's start ("stored state") and a burn-in prefix that is only unrolled to refresh that
state. Sequences never cross an episode boundary: they are padded after the episode's end,
with a mask. Priorities are per sequence (``eta max|delta| + (1 - eta) mean|delta|``,
computed by the agent), sampled proportionally (Schaul et al. 2016) from a
:class:`~rltransfer.replay.sum_tree.SumTree`.

Storage is the slot stream of :class:`~rltransfer.replay.transition.TransitionReplay` (one
frame per env step, ``NEXT_STEP`` autoreset semantics, same stacking rule via
:func:`~rltransfer.replay.slots.stack_zero_mask`): sequences, stacked observations and
n-step targets are index arithmetic over that stream at sample time, so no frame is stored
twice. Recurrent states are stored only at the slots where a sequence's window begins.

Layout of one episode (slots ``e0 .. e0+E-1``, then the autoreset slot ``e0+E`` holding the
final observation; ``P = sequence_length - sequence_overlap``):

* the training part of sequence ``k`` starts at ``u_k = e0 + k P`` (every ``u_k < e0 + E``);
  its window is ``[u_k - burn_in, u_k + sequence_length)``; window steps before ``e0`` (front
  padding) and after ``e0 + E`` (end padding) are outside the episode (``in_episode`` false,
  zero frames);
* the stored state is the actor's state entering slot ``max(u_k - burn_in, e0)``: zeros at
  the episode's start, else the row saved by :meth:`SequenceReplay.add` at that slot;
* a sequence becomes sampleable once its window is written up to ``u_k + L - 1`` or up to the
  episode's autoreset slot, and stops being sampleable when any slot it reads (window and
  frame stack) is overwritten.

n-step targets inside the sequence (R2D2): for window step ``i`` (a slot ``t``),
``R = sum_{j<m} gamma^j r_{t+j}`` with ``m = n`` or fewer at an episode end inside the window,
bootstrap at window index ``i + m`` with discount ``gamma^m`` (0 after a termination; after a
truncation the bootstrap is the autoreset slot, the final observation). A training step is in
``loss_mask`` only when its bootstrap step lies inside the window (or it ends in a
termination), so the last ``n`` steps of a sequence are left to the next, overlapping one.

NGU policy family (Badia et al. 2020, Sec. 3): each slot stores the policy index ``j`` of the
actor that wrote it, and the n-step return and bootstrap discount of window step ``i`` use
that step's ``gamma_j`` (``policy_gammas[j]``) instead of one ``gamma``. With one policy this
is exactly the single-``gamma`` computation.
"""

from __future__ import annotations

import numpy as np

from rltransfer.replay.ring import BatchRing

_SLOT = ("actions", "agent_actions", "rewards", "prev_rewards_in", "intrinsic_rewards",
         "episode_pos", "state_row", "policy_index", "extra")


class SequenceReplay(BatchRing):
    """Prioritized replay of overlapping, padded sequences with stored recurrent states.

    Args:
        num_envs: ``B``.
        capacity_per_env: slots per env; at least ``burn_in + sequence_length + frame_stack
            + 1``.
        frame_shape: one frame ``(C, H, W)``.
        state_dim: width ``D`` of the stored recurrent state (``2 * lstm_hidden``).
        frame_stack: ``S``.
        sequence_length: ``L``, training steps per sequence (R2D2: 80).
        burn_in: prefix steps unrolled without gradient (R2D2: 40).
        sequence_overlap: overlap of consecutive training parts (R2D2: 40); a sequence starts
            every ``L - sequence_overlap`` steps of an episode.
        n_step, gamma: n-step return inside the sequence (R2D2: 5, 0.997).
        policy_gammas: ``float[N]`` discounts ``gamma_j`` of an NGU policy family (each
            step's ``j`` is given to :meth:`add`); ``None``: one policy with ``gamma``.
        prioritized, priority_exponent, importance_exponent, min_priority: as
            :class:`~rltransfer.replay.TransitionReplay` (R2D2: alpha 0.9, beta 0.6).

    Memory per slot: ``C*H*W`` frame bytes + 35 bytes (two int32 actions, three float32
    rewards, int32 position and state row, int8 policy index, six flags) + the sum tree's
    16..32 bytes; plus ``capacity_per_env / p + 2`` stored states of ``4 D`` bytes per env,
    ``p`` the smallest spacing of window starts (``L - overlap`` with the default ``burn_in``
    a multiple of it).

    Batches: ``sample(batch_size, rng)`` draws ``N = batch_size`` sequences with replacement,
    proportionally to priority; ``gather(indices)`` returns the sequences at given flat ids
    with weights 1 (both :class:`~rltransfer.replay.ring.BatchRing`; ``ValueError`` for
    ``batch_size < 1``, nothing sampleable yet, or ids out of range or not sampleable). A
    batch is a dict of numpy arrays, ``T = burn_in + sequence_length`` (window index
    ``burn_in`` is the first training step):

    * ``obs`` ``uint8[N, T, C*S, H, W]`` (zeros outside the episode);
    * ``action``, ``agent_action`` ``int64[N, T]``; ``extra`` ``bool[N, T]``;
      ``reward`` ``float32[N, T]`` (learner reward);
    * ``prev_action`` ``int64[N, T]`` (-1 at the episode's first step and outside it),
      ``prev_reward``, ``prev_intrinsic_reward`` ``float32[N, T]``: the core's inputs;
    * ``in_episode`` ``bool[N, T]``; ``valid`` ``bool[N, T]`` (in the episode and not
      the autoreset slot: a real transition);
    * ``n_step_return``, ``bootstrap_discount`` ``float32[N, T]``,
      ``bootstrap_index`` ``int64[N, T]`` (window index; own index where unused or
      after a termination),
      ``loss_mask`` ``bool[N, T]`` (training steps with a target); returns and
      discounts use ``policy_gammas[policy_index]`` of each step;
    * ``policy_index`` ``int64[N, T]``: the NGU policy ``j`` of each step (outside
      the episode: ``j`` of the training start);
    * ``core_state`` ``float32[N, D]`` at the window's first in-episode step;
    * ``weights`` ``float32[N]`` (importance weights, max 1), ``indices`` ``int64[N]``.

    The ring (write cursor, stream flags, eligibility, sum tree, sampling, checkpoints) is
    :class:`~rltransfer.replay.ring.BatchRing`; this class adds the per-slot inputs of the
    recurrent core, the stored states and the sequence rule.

    Raises:
        ValueError: invalid sizes (the message names the fix).
    """

    _label = "sequence replay"
    _item = "sequence"

    def __init__(
        self,
        num_envs: int,
        capacity_per_env: int,
        frame_shape: tuple[int, ...],
        state_dim: int,
        *,
        frame_stack: int = 1,
        sequence_length: int = 80,
        burn_in: int = 40,
        sequence_overlap: int = 40,
        n_step: int = 5,
        gamma: float = 0.997,
        policy_gammas: np.ndarray | list[float] | tuple[float, ...] | None = None,
        prioritized: bool = True,
        priority_exponent: float = 0.9,
        importance_exponent: float = 0.6,
        min_priority: float = 1e-6,
    ) -> None:
        problems = []
        if num_envs < 1 or frame_stack < 1 or n_step < 1 or state_dim < 0:
            problems.append("num_envs, frame_stack, n_step must be >= 1 and state_dim >= 0")
        if burn_in < 0 or not 0 <= sequence_overlap < sequence_length:
            problems.append("need burn_in >= 0 and 0 <= sequence_overlap < sequence_length")
        if sequence_length <= n_step:
            problems.append(f"sequence_length ({sequence_length}) must exceed n_step ({n_step})")
        if capacity_per_env < burn_in + sequence_length + frame_stack + 1:
            problems.append(
                f"capacity_per_env={capacity_per_env} is too small; use at least "
                f"{burn_in + sequence_length + frame_stack + 1} (burn_in + sequence_length + "
                "frame_stack + 1)"
            )
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            problems.append(f"frame_shape must be (C, H, W), got {frame_shape}")
        if not 0.0 <= gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1], got {gamma}")
        gammas = np.array([gamma] if policy_gammas is None else policy_gammas, np.float64)
        if gammas.ndim != 1 or not 1 <= gammas.size <= 127 or not np.all(
            (gammas >= 0.0) & (gammas <= 1.0)
        ):
            problems.append(
                f"policy_gammas must be 1..127 discounts in [0, 1], got {policy_gammas}"
            )
        if priority_exponent < 0 or importance_exponent < 0 or not min_priority > 0:
            problems.append("exponents must be >= 0 and min_priority > 0")
        if problems:
            raise ValueError("invalid SequenceReplay: " + "; ".join(problems))
        super().__init__(
            num_envs, capacity_per_env, frame_shape, frame_stack=frame_stack,
            prioritized=prioritized, priority_exponent=priority_exponent,
            importance_exponent=importance_exponent, min_priority=min_priority,
            overwrite_reach=burn_in + frame_stack,
        )
        self.state_dim = int(state_dim)
        self.sequence_length = int(sequence_length)
        self.burn_in = int(burn_in)
        self.sequence_overlap = int(sequence_overlap)
        self.period = self.sequence_length - self.sequence_overlap
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.policy_gammas = gammas
        self.num_policies = int(gammas.size)
        # Smallest gap between two state-row slots (see class docstring) -> ring size.
        rem = self.burn_in % self.period
        min_gap = self.period - rem if rem else self.period
        self.num_state_rows = self.capacity_per_env // min_gap + 2

        shape = (self.num_envs, self.capacity_per_env)
        self.actions = np.zeros(shape, dtype=np.int32)
        self.agent_actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)  # learner reward
        self.prev_rewards_in = np.zeros(shape, dtype=np.float32)  # extrinsic core input
        self.intrinsic_rewards = np.zeros(shape, dtype=np.float32)  # intrinsic core input
        self.episode_pos = np.zeros(shape, dtype=np.int32)
        self.state_row = np.full(shape, -1, dtype=np.int32)
        self.policy_index = np.zeros(shape, dtype=np.int8)  # NGU policy j of the actor
        self.extra = np.zeros(shape, dtype=bool)
        self.states = np.zeros((self.num_envs, self.num_state_rows, self.state_dim), np.float32)
        self.state_step = np.full((self.num_envs, self.num_state_rows), -1, dtype=np.int64)
        self.next_state_row = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_pos = np.zeros(self.num_envs, dtype=np.int64)
        # [N_policies, n + 1]: gamma_j^k (row 0 is gamma^k for a single policy).
        self._gamma_pows = (self.policy_gammas[:, None]
                            ** np.arange(self.n_step + 1, dtype=np.float64)[None, :])

    # ------------------------------------------------------------------ info
    @property
    def window_length(self) -> int:
        """``T = burn_in + sequence_length``: steps per sampled window."""
        return self.burn_in + self.sequence_length

    # ------------------------------------------------------------------ ring hooks
    def _empty_hint(self) -> str:
        return f"a sequence needs {self.sequence_length} steps or its episode's end written"

    def _slot_arrays(self) -> tuple[str, ...]:
        return _SLOT

    def _extra_state(self) -> tuple[str, ...]:
        return ("states", "state_step", "next_state_row", "_prev_pos")

    def _memory_arrays(self) -> tuple[str, ...]:
        return ("states", "state_step")

    def _upgrade_state(self, arrays: dict[str, np.ndarray],
                       expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "policy_index" not in arrays and self.num_policies == 1 and "frames" in arrays:
            # Saved before the policy family existed: every step was policy 0.
            arrays["policy_index"] = np.zeros_like(expected["policy_index"])
        return arrays

    # ------------------------------------------------------------------ writing
    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        agent_action: np.ndarray | None,
        extra: np.ndarray | None,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        *,
        core_state: np.ndarray | None = None,
        extrinsic_reward: np.ndarray | None = None,
        intrinsic_reward: np.ndarray | None = None,
        policy_index: np.ndarray | None = None,
    ) -> None:
        """Append one vector-env step for all envs (arguments as ``TransitionReplay.add``).

        Args:
            obs, action, agent_action, extra, reward, terminated, truncated: see
                :meth:`rltransfer.replay.TransitionReplay.add` (``reward`` is the learner's).
            core_state: ``float32[B, D]``, the recurrent state the actor fed into this step
                (before its reset where the episode begins); required when ``D > 0``.
            extrinsic_reward: ``float[B]``, this step's extrinsic reward as the core sees it
                at the next step (``None``: ``reward``).
            intrinsic_reward: ``float[B]``, this step's intrinsic reward (``None``: 0).
            policy_index: ``int[B]``, the NGU policy ``j`` each env acted with, in
                ``[0, len(policy_gammas))`` (``None``: 0).

        Raises:
            ValueError: wrong shapes/dtypes, negative actions, non-finite rewards or states,
                policy indices out of range.
        """
        b = self.num_envs
        x = self._check_step(obs, action, agent_action, extra, reward, terminated, truncated)
        ext_a = x.reward if extrinsic_reward is None else self._vector(
            "extrinsic_reward", extrinsic_reward, np.float64)
        int_a = np.zeros(b) if intrinsic_reward is None else self._vector(
            "intrinsic_reward", intrinsic_reward, np.float64)
        pol = np.zeros(b, np.int64) if policy_index is None else self._vector(
            "policy_index", policy_index, np.int64)
        if pol.min() < 0 or pol.max() >= self.num_policies:
            raise ValueError(
                f"replay.add: policy_index must be in [0, {self.num_policies}) (one per "
                f"policy_gammas entry), got {pol}"
            )
        self._check_finite("extrinsic_reward", ext_a)
        self._check_finite("intrinsic_reward", int_a)
        if self.state_dim:
            if core_state is None:
                raise ValueError(f"replay.add needs core_state float32[{b}, {self.state_dim}]")
            st = np.asarray(core_state, dtype=np.float32)
            if st.shape != (b, self.state_dim) or not np.all(np.isfinite(st)):
                raise ValueError(
                    f"core_state must be finite float32[{b}, {self.state_dim}], got {st.shape}"
                )

        t, p, first = self._append(x.obs, x.terminated, x.truncated)
        pos = np.where(first, 0, self._prev_pos + 1)
        self.actions[:, p] = x.action
        self.agent_actions[:, p] = x.agent_action
        self.extra[:, p] = x.extra
        self.rewards[:, p] = x.reward
        self.prev_rewards_in[:, p] = ext_a
        self.intrinsic_rewards[:, p] = int_a
        self.policy_index[:, p] = pol
        self.episode_pos[:, p] = pos
        self.state_row[:, p] = -1
        store = (pos > 0) & ((pos + self.burn_in) % self.period == 0)
        if self.state_dim and store.any():
            envs = np.flatnonzero(store)
            rows = self.next_state_row[envs] % self.num_state_rows
            self.states[envs, rows] = st[envs]
            self.state_step[envs, rows] = t
            self.state_row[envs, p] = rows
            self.next_state_row[envs] += 1
        self._prev_pos = pos
        self._refresh_recent(t)

    # ------------------------------------------------------------------ internals
    def _config_int(self) -> np.ndarray:
        return np.array(
            [self.num_envs, self.capacity_per_env, self.frame_stack, self.n_step,
             *self.frame_shape, int(self.prioritized), self.state_dim, self.sequence_length,
             self.burn_in, self.sequence_overlap],
            dtype=np.int64,
        )

    def _config_float(self) -> np.ndarray:
        return np.array(
            [self.gamma, self.priority_exponent, self.importance_exponent,
             *(self.policy_gammas if self.num_policies > 1 else [])], np.float64
        )

    def _refresh_recent(self, last: int) -> None:
        """Recompute eligibility of the training starts among steps ``(last - L, last]``."""
        c, length = self.capacity_per_env, self.sequence_length
        steps = np.arange(max(0, last - length + 1), last + 1)
        pos = steps % c
        valid = self.valid[:, pos]  # [B, K]
        start = valid & (self.episode_pos[:, pos] % self.period == 0)
        # ended[:, k]: an autoreset (invalid) slot lies in (steps[k], last].
        invalid = ~valid
        after = np.zeros_like(invalid)
        if steps.size > 1:
            after[:, :-1] = np.logical_or.accumulate(invalid[:, :0:-1], axis=1)[:, ::-1]
        complete = (steps + length - 1 <= last)[None, :] | after
        flags = start & complete
        envs = np.repeat(np.arange(self.num_envs), steps.size)
        self._set_eligible(envs * c + np.tile(pos, self.num_envs), flags.reshape(-1))

    def _gather(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        c, n_step = self.capacity_per_env, self.n_step
        bi, t_len = self.burn_in, self.window_length
        n = flat.shape[0]
        envs = flat // c
        u = self.step_of_index(flat)
        e = envs[:, None]
        e0 = u - self.episode_pos[envs, u % c]
        w = (u - bi)[:, None] + np.arange(t_len)[None, :]  # [N, T] absolute steps
        written = (w >= 0) & (w < self.num_added)
        wp = w % c
        later_first = self.first[e, wp] & (w > u[:, None]) & written
        in_ep = written & (w >= e0[:, None]) & ~np.logical_or.accumulate(later_first, axis=1)
        valid = in_ep & self.valid[e, wp]

        # Stacked observations (rule of FrameStacker, SlotRing._stack).
        obs = self._stack(np.repeat(envs, t_len), w.reshape(-1)).reshape(
            n, t_len, *self.stacked_shape)
        obs[~in_ep] = 0

        prev_in = in_ep & (w > e0[:, None])
        pp = (w - 1) % c
        prev_action = np.where(prev_in, self.actions[e, pp], -1).astype(np.int64)
        prev_reward = np.where(prev_in, self.prev_rewards_in[e, pp], 0.0).astype(np.float32)
        prev_int = np.where(prev_in, self.intrinsic_rewards[e, pp], 0.0).astype(np.float32)

        # NGU policy j per step (constant along an env's stream in the loop, but stored and
        # read per step); outside the episode the training start's j.
        j_start = self.policy_index[envs, u % c].astype(np.int64)
        pol = np.where(in_ep, self.policy_index[e, wp], j_start[:, None]).astype(np.int64)

        # n-step targets inside the window (discount gamma_j of each step's policy).
        rewards = np.where(valid, self.rewards[e, wp], 0.0).astype(np.float64)
        term = valid & self.terminated[e, wp]
        done = term | (valid & self.truncated[e, wp])
        pad = ((0, 0), (0, n_step))
        rewards_p, term_p, done_p = (np.pad(a, pad) for a in (rewards, term, done))
        visible_p = np.pad(np.ones((n, t_len), bool), pad)
        ks = np.arange(t_len)[:, None] + np.arange(n_step)[None, :]  # [T, n]
        d = done_p[:, ks]  # [N, T, n]
        m = np.where(d.any(axis=2), d.argmax(axis=2) + 1, n_step)  # [N, T]
        rows = np.arange(n)[:, None]
        idx_t = np.arange(t_len)[None, :]
        term_end = term_p[rows, idx_t + m - 1]
        seen = visible_p[:, ks]  # window steps k+j inside the window
        in_win = np.arange(n_step)[None, None, :] < m[:, :, None]
        if self.num_policies == 1:
            pows = self._gamma_pows[0][None, None, :]  # [1, 1, n + 1]
            boot_pows = self._gamma_pows[0][m]
        else:
            pows = self._gamma_pows[pol]  # [N, T, n + 1]
            boot_pows = np.take_along_axis(pows, m[:, :, None], axis=2)[:, :, 0]
        ret = (np.where(in_win, rewards_p[:, ks], 0.0) * pows[:, :, :n_step]).sum(axis=2)
        boot = idx_t + m
        boot_ok = (boot < t_len) & np.take_along_axis(
            np.pad(in_ep, pad), np.minimum(boot, t_len + n_step - 1), axis=1
        )
        lookahead_ok = np.all(seen | ~in_win, axis=2)
        loss_mask = (idx_t >= bi) & valid & lookahead_ok & (term_end | boot_ok)
        discount = np.where(term_end, 0.0, boot_pows)

        # Stored state at the window's first in-episode step.
        core_state = np.zeros((n, self.state_dim), dtype=np.float32)
        if self.state_dim:
            need = (u - bi) > e0
            if need.any():
                sp = (u[need] - bi) % c
                ev = envs[need]
                row = self.state_row[ev, sp]
                if np.any(row < 0) or np.any(self.state_step[ev, row] != u[need] - bi):
                    raise RuntimeError("sequence replay lost a stored state (internal error)")
                core_state[need] = self.states[ev, row]

        return {
            "obs": obs,
            "action": np.where(valid, self.actions[e, wp], 0).astype(np.int64),
            "agent_action": np.where(valid, self.agent_actions[e, wp], 0).astype(np.int64),
            "extra": valid & self.extra[e, wp],
            "reward": rewards.astype(np.float32),
            "prev_action": prev_action,
            "prev_reward": prev_reward,
            "prev_intrinsic_reward": prev_int,
            "in_episode": in_ep,
            "valid": valid,
            "n_step_return": np.where(loss_mask, ret, 0.0).astype(np.float32),
            "bootstrap_discount": np.where(loss_mask, discount, 0.0).astype(np.float32),
            "bootstrap_index": np.where(loss_mask & ~term_end, boot, idx_t).astype(np.int64),
            "loss_mask": loss_mask,
            "policy_index": pol,
            "core_state": core_state,
            "indices": flat.astype(np.int64),
        }


__all__ = ["SequenceReplay"]
