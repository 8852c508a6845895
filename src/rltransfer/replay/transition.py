"""Frame-once n-step transition replay (uniform or prioritized) and the matching frame stacker.

Every environment step is stored once per environment, as one slot of a circular buffer
holding the single frame observed *before* the action, the action, the reward and the end
flags of that step. Stacked observations, n-step returns, bootstrap observations and their
discounts are rebuilt at sample time, so no frame is stored twice.

Stream semantics (gymnasium ``NEXT_STEP`` autoreset): after a step returns ``terminated`` or
``truncated`` for env ``i``, the next step of env ``i`` is an *autoreset* step: its observation
is the final observation of the ended episode, its action is ignored and it returns the reset
observation with reward 0. That slot's transition is never sampled, but its frame is the
bootstrap observation of a truncated episode. The slot after it starts the next episode.

Sources: n-step double-Q targets of R2D2 (Kapturowski et al. 2019) / Ape-X (Horgan et al.
2018); proportional prioritized replay with importance sampling (Schaul et al. 2016, Sec.
3.3-3.4), priority exponent 0.9 and importance exponent 0.6 as in R2D2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from rltransfer.replay.ring import BatchRing


@njit(cache=True)
def _eligible_flags(terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray,
                    envs: np.ndarray, steps: np.ndarray, n_step: int, num_added: int,
                    out: np.ndarray) -> None:
    """Whether the transitions at absolute ``steps >= 0`` of ``envs`` are sampleable: the
    slot is not an autoreset slot and its n-step window is written (it ends in a written
    termination, or its bootstrap slot exists). The rule of :meth:`TransitionReplay._window`'s
    ``complete``, one loop per transition instead of a dozen numpy calls per
    :meth:`TransitionReplay.add`."""
    c = terminated.shape[1]
    for i in range(steps.shape[0]):
        e = envs[i]
        st = steps[i]
        m = n_step
        term_end = False
        for k in range(n_step):
            s = st + k
            if s >= num_added:  # this and later steps are not written: no end in the window
                break
            p = s % c
            if terminated[e, p] or truncated[e, p]:
                m = k + 1
                term_end = terminated[e, p]
                break
        out[i] = valid[e, st % c] and (term_end or st + m < num_added)


@njit(cache=True)
def _refresh_eligible(terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray,
                      eligible: np.ndarray, nodes: np.ndarray, size: int, first_step: int,
                      last: int, n_step: int, num_added: int, fresh: float) -> int:
    """:func:`_eligible_flags` for steps ``first_step .. last`` of every env, written into
    ``eligible`` (flat ``bool[B * capacity_per_env]``) and the sum tree ``nodes`` (a newly
    eligible slot's leaf gets ``fresh``, a newly ineligible one 0, ancestors refreshed as
    :func:`~rltransfer.replay.sum_tree._set_leaves` does): the per-step work of
    :meth:`TransitionReplay._refresh_recent` (with :func:`~rltransfer.replay.slots.
    set_eligible`) in one call. The slots must be distinct (``last - first_step`` below the
    capacity per env). Returns the change of the number of eligible slots."""
    num_envs, c = terminated.shape
    change = 0
    for e in range(num_envs):
        for st in range(first_step, last + 1):
            m = n_step
            term_end = False
            for k in range(n_step):
                s = st + k
                if s >= num_added:
                    break
                p = s % c
                if terminated[e, p] or truncated[e, p]:
                    m = k + 1
                    term_end = terminated[e, p]
                    break
            flag = valid[e, st % c] and (term_end or st + m < num_added)
            flat = e * c + st % c
            if eligible[flat] != flag:
                eligible[flat] = flag
                pos = flat + size
                nodes[pos] = fresh if flag else 0.0
                pos >>= 1
                while pos >= 1:
                    nodes[pos] = nodes[2 * pos] + nodes[2 * pos + 1]
                    pos >>= 1
                change += 1 if flag else -1
    return change


class FrameStacker:
    """Stacks the last ``frame_stack`` frames per env at acting time, as replay rebuilds them.

    Rule (shared with :class:`TransitionReplay`): the stack at a step holds that step's frame
    and the ``S-1`` frames before it in the same env, oldest first; frames from before the
    episode's first step are zeros. The episode's first step is the one whose ``first`` flag
    is set, i.e. the step after an autoreset step (and the first step after ``env.reset()``).

    Args:
        num_envs: ``B``.
        frame_shape: one frame, ``(C, H, W)``.
        frame_stack: ``S >= 1``.

    Raises:
        ValueError: bad sizes; (push) an observation or ``first`` of the wrong shape/dtype.
    """

    def __init__(self, num_envs: int, frame_shape: tuple[int, ...], frame_stack: int) -> None:
        if num_envs < 1 or frame_stack < 1 or len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(
                f"FrameStacker needs num_envs >= 1, frame_stack >= 1 and frame_shape (C, H, W); "
                f"got {num_envs}, {frame_stack}, {frame_shape}"
            )
        self.num_envs = int(num_envs)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.frame_stack = int(frame_stack)
        self._frames = np.zeros((self.num_envs, self.frame_stack, *self.frame_shape), np.uint8)

    @property
    def stacked_shape(self) -> tuple[int, int, int]:
        """``(C*S, H, W)``: the agent's observation shape."""
        c, h, w = self.frame_shape
        return (c * self.frame_stack, h, w)

    def reset(self) -> None:
        """Forget every env's history (``push`` with ``first`` all true does the same)."""
        self._frames[:] = 0

    def push(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Add this step's frames and return the stacks.

        Args:
            obs: ``uint8[B, C, H, W]``, the frame observed at this step.
            first: ``bool[B]``, true where ``obs`` is the first observation of an episode
                (the step after an autoreset step, or right after ``env.reset()``).

        Returns:
            A new array ``uint8[B, C*S, H, W]``, oldest frame first.
        """
        obs = np.asarray(obs)
        if obs.dtype != np.uint8 or obs.shape != (self.num_envs, *self.frame_shape):
            raise ValueError(
                f"FrameStacker.push expects uint8{[self.num_envs, *self.frame_shape]}, got "
                f"{obs.dtype}{list(obs.shape)}"
            )
        first = np.asarray(first, dtype=bool).reshape(-1)
        if first.shape != (self.num_envs,):
            raise ValueError(f"first must be bool[{self.num_envs}], got shape {first.shape}")
        if self.frame_stack == 1:
            self._frames[:, 0] = obs
        else:
            self._frames[first] = 0
            self._frames[:, :-1] = self._frames[:, 1:].copy()
            self._frames[:, -1] = obs
        return self._frames.reshape(self.num_envs, *self.stacked_shape).copy()


class TransitionReplay(BatchRing):
    """Frame-once circular replay of n-step transitions, one buffer per env.

    ``add`` is called once per vector-env step for all ``B`` envs; ``sample`` returns n-step
    transitions (Kapturowski et al. 2019: n = 5, gamma = 0.997):

    * ``n_step_return = sum_{k<m} gamma^k r_{t+k}`` with ``m = n``, or fewer when the episode
      ends (terminated or truncated) at step ``t+m-1``;
    * ``bootstrap_discount = 0`` if the window ends in a termination, else ``gamma^m`` with the
      bootstrap observation at slot ``t+m`` (for a truncation at ``t+j`` that is the autoreset
      slot ``t+j+1`` holding the final observation, discount ``gamma^(j+1)``);
    * a transition is sampled only when its window is written: the bootstrap slot exists, or
      the window ends in a written termination. Autoreset slots are never sampled.

    Prioritized mode (Schaul et al. 2016, proportional): ``P(i) = p_i^alpha / sum_k p_k^alpha``;
    new transitions get the largest priority seen so far (initially 1); importance weights
    ``w_i = (N P(i))^-beta / max_batch w`` with ``N`` the number of sampleable transitions.
    Uniform mode: ``P(i) = 1/N``, weights 1.

    Memory per stored transition (slot): ``C*H*W`` bytes of frame + 18 bytes (action and
    agent action int32, reward float32, six bool flags) + the sum tree's 16 to 32 bytes
    (float64 leaves and inner nodes, rounded up to a power of two), i.e. about
    ``C*H*W + 34..50`` bytes. Atari (1x84x84): ~7.1 kB, 1M transitions ~7.1 GB; MinAtar
    (4..10 x 10x10): ~0.45-1.05 kB; MiniGrid 3x7x7: ~0.2 kB. :attr:`nbytes` gives the exact
    total. ``capacity_per_env`` slots per env, so ``num_envs * capacity_per_env`` in all.

    Continuous actions (SAC): pass ``action_shape=(A,)`` and a floating ``action_dtype``;
    actions are stored as ``float32[A]`` per slot (no separate agent action, no ``extra``
    semantics: ``agent_action`` must be ``None`` and sampled ``agent_action`` is ``action``).
    DMC pixels (3x84x84 RGB, stack 3, A = 6): 21,168 frame bytes + 24 action bytes + 14
    (reward, flags) + 16..32 (sum tree), about 21.2 kB per transition, against ~180 kB in the
    public PAD / Kadavath code, which stores ``obs`` and ``next_obs`` as 9x100x100 stacks.

    Args:
        num_envs: ``B``.
        capacity_per_env: slots per env; must be >= ``n_step + frame_stack + 1``.
        frame_shape: one frame ``(C, H, W)``.
        frame_stack: ``S``, frames stacked into an observation (1 for MiniGrid/MinAtar, 4 for
            Atari).
        n_step: ``n``.
        gamma: discount per env step.
        prioritized: proportional prioritized sampling, else uniform.
        priority_exponent: alpha (R2D2: 0.9).
        importance_exponent: beta (R2D2: 0.6).
        min_priority: floor applied to priorities in :meth:`update_priorities` so no sampleable
            transition gets probability 0.
        action_shape: ``()`` for discrete actions (default), ``(A,)`` for continuous actions.
        action_dtype: an integer dtype (discrete; stored as int32, sampled as int64) or a
            floating dtype (continuous; stored and sampled as float32).

    Batches: ``sample(batch_size, rng)`` draws ``N = batch_size`` transitions with
    replacement (proportionally to priority when prioritized); ``gather(indices)`` returns the
    transitions at given flat ids with weights 1 (both
    :class:`~rltransfer.replay.ring.BatchRing`; ``ValueError`` for ``batch_size < 1``,
    nothing sampleable yet, or ids out of range or not sampleable). A batch is a dict of
    numpy arrays with leading dimension ``N``: ``obs`` / ``next_obs`` ``uint8[N, C*S, H, W]``
    (``next_obs`` zeros after a termination whose final frame is not stored yet), ``action``
    ``int64`` (in A), ``agent_action`` ``int64`` (in A+), ``extra`` ``bool``, ``reward``
    ``float32`` (first reward), ``n_step_return`` ``float32``, ``bootstrap_discount``
    ``float32`` (continuous mode: ``action`` and ``agent_action`` are ``float32[N, A]``),
    ``weights`` ``float32`` (importance weights, max 1; all 1 if uniform), ``indices``
    ``int64`` (flat ids for :meth:`update_priorities`), ``next_frame`` ``uint8[N, C, H, W]``
    (the single frame one step later, ``x_{t+1}``; zeros where not stored yet) and
    ``next_frame_valid`` ``bool[N]`` (it is stored).

    The ring (write cursor, stream flags, eligibility, sum tree, sampling, checkpoints) is
    :class:`~rltransfer.replay.ring.BatchRing`; this class adds the actions, rewards and
    ``extra`` flags per slot and the n-step window rule.

    Raises:
        ValueError: invalid sizes or exponents (the message names the fix).
    """

    _item = "transition"
    _config_fields = ("(num_envs, capacity_per_env, frame_stack, n_step, frame shape / "
                      "gamma, exponents, prioritized)")

    _fused_refresh = True
    """Refresh the eligibility of recent steps in one kernel (:func:`_refresh_eligible`);
    false: the numpy path (the reference, for tests)."""

    def __init__(
        self,
        num_envs: int,
        capacity_per_env: int,
        frame_shape: tuple[int, ...],
        *,
        frame_stack: int = 1,
        n_step: int = 5,
        gamma: float = 0.997,
        prioritized: bool = True,
        priority_exponent: float = 0.9,
        importance_exponent: float = 0.6,
        min_priority: float = 1e-6,
        action_shape: tuple[int, ...] = (),
        action_dtype: Any = np.int64,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if frame_stack < 1 or n_step < 1:
            raise ValueError(f"frame_stack and n_step must be >= 1, got {frame_stack}, {n_step}")
        if capacity_per_env < n_step + frame_stack + 1:
            raise ValueError(
                f"capacity_per_env={capacity_per_env} is too small for n_step={n_step} and "
                f"frame_stack={frame_stack}; use at least {n_step + frame_stack + 1}"
            )
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(
                f"frame_shape must be (C, H, W) with positive sizes, got {frame_shape}"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if priority_exponent < 0 or importance_exponent < 0 or not min_priority > 0:
            raise ValueError(
                "priority_exponent and importance_exponent must be >= 0 and min_priority > 0, "
                f"got {priority_exponent}, {importance_exponent}, {min_priority}"
            )
        super().__init__(
            num_envs, capacity_per_env, frame_shape, frame_stack=frame_stack,
            prioritized=prioritized, priority_exponent=priority_exponent,
            importance_exponent=importance_exponent, min_priority=min_priority,
            overwrite_reach=frame_stack,
        )
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.action_shape = tuple(int(a) for a in action_shape)
        kind = np.dtype(action_dtype).kind
        if kind not in "iuf":
            raise ValueError(
                f"action_dtype must be an integer (discrete) or float (continuous) dtype, got "
                f"{np.dtype(action_dtype)}"
            )
        self.continuous = kind == "f"
        if self.continuous and (len(self.action_shape) != 1 or self.action_shape[0] < 1):
            raise ValueError(
                f"continuous actions need action_shape=(A,) with A >= 1, got {action_shape}"
            )
        if not self.continuous and self.action_shape != ():
            raise ValueError(
                f"discrete actions are scalars: use action_shape=() (got {action_shape}) or a "
                "float action_dtype for continuous actions"
            )

        shape = (self.num_envs, self.capacity_per_env)
        if self.continuous:
            self.actions = np.zeros((*shape, *self.action_shape), dtype=np.float32)
            self.agent_actions = self.actions  # one array: no separate agent action
        else:
            self.actions = np.zeros(shape, dtype=np.int32)
            self.agent_actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.extra = np.zeros(shape, dtype=bool)
        no_ids = np.zeros(0, dtype=np.int64)  # load the eligibility kernel now (see SumTree)
        _eligible_flags(self.terminated, self.truncated, self.valid, no_ids, no_ids, 1, 0,
                        np.zeros(0, dtype=bool))
        _refresh_eligible(self.terminated, self.truncated, self.valid, self.eligible.reshape(-1),
                          self.tree.nodes, self.tree._size, 0, -1, 1, 0, 1.0)
        self._gamma_pows = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)

    # ------------------------------------------------------------------ ring hooks
    def _empty_hint(self) -> str:
        return f"a transition needs its {self.n_step}-step window written"

    def _slot_arrays(self) -> tuple[str, ...]:
        if self.continuous:  # agent_actions is actions: stored once
            return ("actions", "rewards", "extra")
        return ("actions", "agent_actions", "rewards", "extra")

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
    ) -> None:
        """Append one vector-env step for all envs.

        Args:
            obs: ``uint8[B, C, H, W]``, the single frame observed *before* ``action``.
            action: ``int[B]``, the env action executed (in A); continuous mode:
                ``float[B, A]``, finite.
            agent_action: ``int[B]`` in A+ (the learner's action; a+ when ``extra``), or
                ``None`` for ``action`` (must be ``None`` in continuous mode).
            extra: ``bool[B]``, the agent chose the extra action a+, or ``None`` (all false).
            reward: ``float[B]``, reward of this step (finite).
            terminated, truncated: ``bool[B]``, end flags returned by this step.

        Raises:
            ValueError: wrong shape/dtype, negative actions, non-finite rewards.
        """
        x = self._check_step(obs, action, agent_action, extra, reward, terminated, truncated)
        t, p, _ = self._append(x.obs, x.terminated, x.truncated)
        self.actions[:, p] = x.action
        if not self.continuous:
            self.agent_actions[:, p] = x.agent_action
        self.extra[:, p] = x.extra
        self.rewards[:, p] = x.reward
        self._refresh_recent(t)

    # ------------------------------------------------------------------ internals
    def _config_int(self) -> np.ndarray:
        # Continuous replays append their action shape; discrete ones keep the original
        # layout so checkpoints written before continuous actions existed still load.
        extra = [1, *self.action_shape] if self.continuous else []
        return np.array(
            [self.num_envs, self.capacity_per_env, self.frame_stack, self.n_step,
             *self.frame_shape, int(self.prioritized), *extra],
            dtype=np.int64,
        )

    def _check_actions(self, action: Any,
                       agent_action: Any | None) -> tuple[np.ndarray, np.ndarray]:
        """Discrete: as :meth:`BatchRing._check_actions`. Continuous: ``action`` finite
        ``float[B, A]`` (as ``float32``), ``agent_action`` must be ``None`` (it is
        ``action``). Raises ValueError otherwise."""
        if not self.continuous:
            return super()._check_actions(action, agent_action)
        a = np.asarray(action)
        want = (self.num_envs, *self.action_shape)
        if a.shape != want or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"replay.add: continuous action must be float{list(want)}, got "
                f"{a.dtype}{list(a.shape)}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError("replay.add: non-finite continuous action; check the policy output")
        if agent_action is not None:
            raise ValueError("replay.add: continuous-action replay has no agent_action; pass None")
        action_a = a.astype(np.float32, copy=False)
        return action_a, action_a

    def _config_float(self) -> np.ndarray:
        return np.array(
            [self.gamma, self.priority_exponent, self.importance_exponent], dtype=np.float64
        )

    def _refresh_recent(self, last: int) -> None:
        """Recompute eligibility of the steps ``last - n .. last`` in every env (the ones
        whose n-step window step ``last`` may complete)."""
        c = self.capacity_per_env
        first_step = max(0, last - self.n_step)
        if self._fused_refresh and last - first_step < c and self.eligible.flags.c_contiguous:
            fresh = self.max_priority**self.priority_exponent if self.prioritized else 1.0
            self.num_eligible += _refresh_eligible(
                self.terminated, self.truncated, self.valid, self.eligible.reshape(-1),
                self.tree.nodes, self.tree._size, first_step, last, self.n_step,
                self.num_added, float(fresh))
            return
        steps = np.arange(first_step, last + 1)
        if self.num_envs == 1:
            envs, st = np.zeros(steps.shape[0], dtype=np.int64), steps
        else:
            envs = np.repeat(np.arange(self.num_envs), steps.shape[0])
            st = np.tile(steps, self.num_envs)
        flags = np.empty(st.shape[0], dtype=bool)
        _eligible_flags(self.terminated, self.truncated, self.valid, envs, st, self.n_step,
                        self.num_added, flags)
        self._set_eligible(envs * c + st % c, flags)

    def _window(self, envs: np.ndarray, steps: np.ndarray) -> dict[str, np.ndarray]:
        """n-step window quantities for transitions starting at absolute ``steps``."""
        n, c = self.n_step, self.capacity_per_env
        ks = np.arange(n)
        st = steps[:, None] + ks[None, :]
        pos = st % c
        written = st < self.num_added
        e = envs[:, None]
        term = self.terminated[e, pos] & written
        done = (term | self.truncated[e, pos]) & written
        m = np.where(done.any(axis=1), done.argmax(axis=1) + 1, n)
        rows = np.arange(steps.shape[0])
        term_end = term[rows, m - 1]
        in_window = ks[None, :] < m[:, None]
        rewards = np.where(in_window, self.rewards[e, pos].astype(np.float64), 0.0)
        ret = rewards @ self._gamma_pows[:n] if rewards.size else np.zeros(0)
        boot = steps + m
        boot_written = boot < self.num_added
        return {
            "m": m,
            "return": ret,
            "discount": np.where(term_end, 0.0, self._gamma_pows[m]),
            "boot_step": boot,
            "boot_written": boot_written,
            "complete": term_end | boot_written,
        }

    def _gather(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        c = self.capacity_per_env
        envs, pos = flat // c, flat % c
        steps = self.step_of_index(flat)
        win = self._window(envs, steps)
        boot = np.minimum(win["boot_step"], self.num_added - 1)
        next_obs = self._stack(envs, boot)
        next_obs[~win["boot_written"]] = 0
        # One-step successor frame x_{t+1} (slot t+1: the next step, or the autoreset slot
        # holding the final observation), for one-step models such as NGU's inverse dynamics.
        next_written = steps + 1 < self.num_added
        next_frame = self.frames[envs, (steps + 1) % c]
        next_frame[~next_written] = 0
        if self.continuous:
            action = self.actions[envs, pos].astype(np.float32)
            agent_action = action
        else:
            action = self.actions[envs, pos].astype(np.int64)
            agent_action = self.agent_actions[envs, pos].astype(np.int64)
        return {
            "obs": self._stack(envs, steps),
            "action": action,
            "agent_action": agent_action,
            "extra": self.extra[envs, pos].copy(),
            "reward": self.rewards[envs, pos].copy(),
            "n_step_return": win["return"].astype(np.float32),
            "bootstrap_discount": win["discount"].astype(np.float32),
            "next_obs": next_obs,
            "next_frame": next_frame,
            "next_frame_valid": next_written,
            "indices": flat.astype(np.int64),
        }
