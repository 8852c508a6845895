"""The collector: steps a vector env with an agent's online network plus an explorer.

One home for the acting half of training (docs/architecture.md, "Collector"): the local loop
(:class:`rltransfer.agents.r2d2.train.Trainer`) and the Ray actors (:mod:`rltransfer.distributed`)
run the
same :class:`Collector`. A collector owns a vector env, a frame stacker, an explorer (epsilon-
greedy, ez-greedy or Behavior Transfer, Campos et al. 2021 Algorithm 1), an optional prior
driver (pi_p), an optional intrinsic reward (RND / NGU / constant) and the recurrent acting
state of R2D2 (Kapturowski et al. 2019: LSTM state, previous action and rewards). Each
:meth:`Collector.step` returns one :class:`StepBatch`, exactly what ``replay.add`` consumes,
and the episodes that ended on that step; it never learns.

The agent it acts with is either the learner itself (local loop) or a copy whose online
network is refreshed with :func:`acting_tensors` / :func:`load_acting_tensors` (Ray actors):
plain named CPU arrays, never pickled modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.records import ArrayRecord
from rltransfer.explore import (
    BehaviorTransferExplorer,
    EpsilonGreedy,
    Explorer,
    EZGreedy,
    actor_epsilons,
)
from rltransfer.intrinsic.base import IntrinsicReward
from rltransfer.intrinsic.constant import ConstantReward
from rltransfer.intrinsic.ngu import NGUReward
from rltransfer.intrinsic.rnd import RND
from rltransfer.methods.behavior_transfer import PriorPolicyDriver
from rltransfer.replay import FrameStacker, SequenceReplay, TransitionReplay

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

    from rltransfer.agents.r2d2.config import TrainConfig


# ---------------------------------------------------------------------- builders
def epsilon_at(cfg: TrainConfig, env_steps: int) -> np.ndarray:
    """Per-env exploration epsilon ``float64[cfg.num_envs]`` at ``env_steps`` (see
    :attr:`TrainConfig.epsilon_schedule`).

    ``ape_x``: env ``i`` of ``N = cfg.num_envs`` (all envs of all actors) gets
    ``0.4^(1 + 7 i / (N - 1))`` (Horgan et al. 2018, Ape-X); ``constant``: ``cfg.epsilon``;
    ``linear``: ``epsilon_start -> epsilon`` over ``epsilon_decay_env_steps`` (DQN).
    """
    if cfg.epsilon_schedule == "ape_x":
        return actor_epsilons(cfg.num_envs)
    if cfg.epsilon_schedule == "constant":
        return np.full(cfg.num_envs, cfg.epsilon)
    frac = min(1.0, env_steps / max(1, cfg.epsilon_decay_env_steps))
    return np.full(cfg.num_envs, cfg.epsilon_start + frac * (cfg.epsilon - cfg.epsilon_start))


def make_explorer(cfg: TrainConfig, num_env_actions: int, rng: np.random.Generator,
                  envs: slice = slice(None)) -> Explorer:
    """The run's explorer for the envs ``envs`` (a slice of the ``cfg.num_envs`` global env
    indices; a Ray actor gets its own slice, so Ape-X epsilons span all actors' envs).

    Raises:
        ValueError: from the explorer on bad settings (e.g. epsilon outside ``[0, 1]``).
    """
    eps = epsilon_at(cfg, 0)[envs]
    if cfg.explore == "epsilon_greedy":
        return EpsilonGreedy(eps, num_env_actions, extra_action=False, rng=rng)
    if cfg.explore == "ez_greedy":
        return EZGreedy(eps, num_env_actions, mu=cfg.ez_mu, max_length=cfg.max_flight_env_steps,
                        rng=rng)
    return BehaviorTransferExplorer(
        epsilon=eps,
        epsilon_levy=cfg.epsilon_levy,
        num_env_actions=num_env_actions,
        flights=cfg.flights,
        extra_action=cfg.extra_action,
        mu=cfg.ez_mu,
        max_flight_length=cfg.max_flight_env_steps,
        rng=rng,
    )


def make_intrinsic(cfg: TrainConfig, frame_shape: tuple[int, int, int], obs_scale: float,
                   num_env_actions: int, num_envs: int | None = None) -> IntrinsicReward | None:
    """The run's intrinsic reward (``None`` for ``intrinsic="none"``) for ``num_envs`` envs
    (default ``cfg.num_envs``). Networks are seeded by ``cfg.seed``, so every copy built from
    one config has the same (fixed) RND target network."""
    if cfg.intrinsic == "none":
        return None
    if cfg.intrinsic == "constant":
        return ConstantReward()
    b = cfg.num_envs if num_envs is None else int(num_envs)
    if cfg.intrinsic == "ngu":
        return NGUReward(frame_shape, num_env_actions, b, config=cfg.ngu,
                         obs_scale=obs_scale, device=cfg.device, seed=cfg.seed)
    return RND(frame_shape, obs_scale=obs_scale, learning_rate=cfg.intrinsic_lr, seed=cfg.seed,
               device=cfg.device, torso=cfg.rnd_torso, feature_dim=cfg.rnd_feature_dim,
               hidden=cfg.rnd_hidden)


# ---------------------------------------------------------------------- records
@dataclass
class StepBatch(ArrayRecord):
    """One vector-env step of ``B`` envs (or ``T`` steps, time-major, after :meth:`stack`).

    Attributes (shapes for one step; a stacked batch has a leading ``T``):
        obs: ``uint8[B, C, H, W]``, the single frame seen *before* the action.
        env_actions: ``int64[B]`` in ``A``, executed.
        agent_actions: ``int64[B]`` in ``A+``, credited to the learner.
        extra: ``bool[B]``, the agent chose Behavior Transfer's ``a+``.
        reward: ``float64[B]``, the learner's reward ``r_e + beta * r_i`` (``r_e`` is 0 when
            reward-free).
        terminated, truncated: ``bool[B]``, end flags returned by this step.
        extrinsic_reward: ``float64[B]``, the env's returned reward.
        intrinsic_reward: ``float32[B]``, ``r_i`` (0 on autoreset steps and without one).
        core_state: ``float32[B, D]``, the LSTM state fed into this step (``D = 0``:
            feedforward).
        policy_index: ``int64[B]``, the NGU policy ``j`` each env acted as (Badia et al.
            2020; all 0 for a single policy).
    """

    obs: np.ndarray
    env_actions: np.ndarray
    agent_actions: np.ndarray
    extra: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    extrinsic_reward: np.ndarray
    intrinsic_reward: np.ndarray
    core_state: np.ndarray
    policy_index: np.ndarray

    def add_to(self, replay: TransitionReplay | SequenceReplay) -> None:
        """Append this (single) step to ``replay`` (``replay.num_envs`` must be ``B``).

        Raises:
            ValueError: from ``replay.add`` on wrong shapes or non-finite rewards.
        """
        if isinstance(replay, SequenceReplay):
            replay.add(self.obs, self.env_actions, self.agent_actions, self.extra, self.reward,
                       self.terminated, self.truncated, core_state=self.core_state,
                       extrinsic_reward=self.extrinsic_reward,
                       intrinsic_reward=self.intrinsic_reward, policy_index=self.policy_index)
        else:
            replay.add(self.obs, self.env_actions, self.agent_actions, self.extra, self.reward,
                       self.terminated, self.truncated)


@dataclass
class FinishedEpisodes:
    """Episodes that ended on one step: ``returns`` ``float64[k]`` (task reward, the env's
    ``info["task_reward"]``), ``lengths`` ``int64[k]`` (env steps), ``intrinsic``
    ``float64[k]`` (summed ``r_i``), ``envs`` ``int64[k]`` (local env indices)."""

    returns: np.ndarray
    lengths: np.ndarray
    intrinsic: np.ndarray
    envs: np.ndarray


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


_NO_EPISODES = FinishedEpisodes(
    returns=_read_only(np.zeros(0)), lengths=_read_only(np.zeros(0, dtype=np.int64)),
    intrinsic=_read_only(np.zeros(0)), envs=_read_only(np.zeros(0, dtype=np.int64)),
)
"""What :meth:`Collector.step` returns when no episode ended (shared, read-only)."""


# ---------------------------------------------------------------------- weight sync
def _intrinsic_acting_parts(intrinsic: IntrinsicReward | None) -> dict[str, Any]:
    """The trained parts of an intrinsic reward that acting reads: networks (``nn.Module``)
    and observation statistics (``RunningMeanStd``) by name. Per-env state (RND's running
    returns and reward std, NGU's episodic memories and error statistics) is actor-local."""
    if isinstance(intrinsic, RND):
        return {"rnd.predictor": intrinsic.predictor, "rnd.obs_rms": intrinsic.obs_rms}
    if isinstance(intrinsic, NGUReward):
        return {"embedding": intrinsic.embedding, "rnd.predictor": intrinsic.rnd.predictor,
                "rnd.obs_rms": intrinsic.rnd.obs_rms}
    return {}


def acting_tensors(agent: R2D2Agent,
                   intrinsic: IntrinsicReward | None = None) -> dict[str, np.ndarray]:
    """What an actor needs to act like the learner, as named CPU numpy arrays.

    Keys: ``online/<module>.<param>`` (the agent's online network, Ape-X / R2D2 actors copy
    it periodically) and ``intrinsic/<part>.<name>`` (RND predictor and observation
    statistics; NGU's embedding too). The RND target is not sent: it is fixed by the seed.
    """
    out = {f"online/{k}": v.detach().cpu().numpy().copy()
           for k, v in agent.online.state_dict().items()}
    for name, part in _intrinsic_acting_parts(intrinsic).items():
        if isinstance(part, torch.nn.Module):
            for k, v in part.state_dict().items():
                out[f"intrinsic/{name}.{k}"] = v.detach().cpu().numpy().copy()
        else:
            for k, v in part.state_tensors().items():
                out[f"intrinsic/{name}.{k}"] = v.numpy().copy()
    return out


def load_acting_tensors(agent: R2D2Agent, intrinsic: IntrinsicReward | None,
                        tensors: dict[str, np.ndarray]) -> None:
    """Load :func:`acting_tensors` output into an actor's agent copy and intrinsic reward.

    Raises:
        RuntimeError / KeyError: missing or mismatched tensors (another architecture).
    """
    online = {k[len("online/"):]: torch.from_numpy(np.array(v, copy=True))
              for k, v in tensors.items() if k.startswith("online/")}
    agent.online.load_state_dict(online)
    for name, part in _intrinsic_acting_parts(intrinsic).items():
        prefix = f"intrinsic/{name}."
        sub = {k[len(prefix):]: torch.from_numpy(np.array(v, copy=True))
               for k, v in tensors.items() if k.startswith(prefix)}
        if isinstance(part, torch.nn.Module):
            part.load_state_dict(sub)
        else:
            part.load_state_tensors(sub)
    rnd = intrinsic.rnd if isinstance(intrinsic, NGUReward) else intrinsic
    if isinstance(rnd, RND):
        rnd._refresh_obs_stats()  # the cached normalisation tensors follow obs_rms


# ---------------------------------------------------------------------- collector
class Collector:
    """Steps ``envs`` with ``agent`` and ``explorer``; returns what replay stores.

    Per step (one call of :meth:`step`): stack the newest frame (:class:`FrameStacker`), get
    Q-values (recurrent: ``agent.act_q`` with the LSTM state and the previous action,
    extrinsic and intrinsic rewards, R2D2), ask pi_p for its actions (Behavior Transfer),
    select actions (:class:`Explorer`), step the env, compute ``r_i`` (zero on autoreset
    steps), tell pi_p the executed actions and the step's env reward and ``r_i``
    (:meth:`PriorPolicyDriver.observe`), and track episode returns of the task reward.

    Args:
        envs: a gymnasium ``VectorEnv`` (NEXT_STEP autoreset, ``info["task_reward"]``), as
            :func:`rltransfer.envs.make_env` builds; ``B = envs.num_envs``.
        agent: the acting network (the learner itself, or an actor's copy).
        explorer: behaviour policy over Q-values for ``B`` envs.
        frame_shape: ``(C, H, W)`` of one frame.
        frame_stack: ``S``, frames stacked into the agent's input.
        rng: random generator for warm-up actions (the explorer holds its own reference).
        intrinsic: intrinsic reward for ``B`` envs, or ``None``.
        intrinsic_scale: ``beta`` in ``r = r_e + beta r_i``, a scalar or ``float[B]`` (NGU's
            policy family: ``beta_j`` of each env's policy).
        policy_index: ``int[B]`` NGU policy ``j`` of each env (fed to the recurrent core and
            stored in replay), or ``None`` for a single policy.
        prior_driver: runs pi_p every step (Behavior Transfer), or ``None``.
        epsilon_fn: ``env_steps -> float[B]`` epsilons set before each step (the ``linear``
            schedule), or ``None`` to keep the explorer's.

    Raises:
        ValueError: frame shape not 3-D, ``frame_stack < 1``, or ``intrinsic_scale`` /
            ``policy_index`` of the wrong shape.
    """

    def __init__(
        self,
        envs: VectorEnv,
        agent: R2D2Agent,
        explorer: Explorer,
        *,
        frame_shape: tuple[int, int, int],
        frame_stack: int,
        rng: np.random.Generator,
        intrinsic: IntrinsicReward | None = None,
        intrinsic_scale: float | np.ndarray = 1.0,
        policy_index: np.ndarray | None = None,
        prior_driver: PriorPolicyDriver | None = None,
        epsilon_fn: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        if len(frame_shape) != 3 or frame_stack < 1:
            raise ValueError(f"frame_shape must be (C, H, W) and frame_stack >= 1, got "
                             f"{frame_shape}, {frame_stack}")
        self.envs = envs
        self.agent = agent
        self.explorer = explorer
        self.frame_shape = frame_shape
        self.rng = rng
        self.intrinsic = intrinsic
        self.num_envs = int(envs.num_envs)
        b = self.num_envs
        scale = np.asarray(intrinsic_scale, dtype=np.float64)
        pol = np.zeros(b, np.int64) if policy_index is None else np.asarray(policy_index)
        if scale.shape not in ((), (b,)) or pol.shape != (b,):
            raise ValueError(f"intrinsic_scale must be a scalar or float[{b}] and policy_index "
                             f"int[{b}]; got shapes {scale.shape}, {pol.shape}")
        self.intrinsic_scale = scale if scale.shape else float(scale)
        self.policy_index = pol.astype(np.int64)
        self._act_policy = None if policy_index is None else self.policy_index
        self.prior_driver = prior_driver
        self.epsilon_fn = epsilon_fn
        self.num_env_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]
        self.stacker = FrameStacker(self.num_envs, frame_shape, frame_stack)
        self.recurrent = agent.recurrent
        self._started = False

    def warm_up_intrinsic(self, num_env_steps: int, seed: int) -> int:
        """Feed random-action frames into RND's (or NGU's RND's) observation statistics
        (Burda et al. 2019) before training. Returns the env steps taken (0 when there is no
        RND). Call before :meth:`begin`; the frames are not returned for replay."""
        if not isinstance(self.intrinsic, (RND, NGUReward)) or num_env_steps <= 0:
            return 0
        b = self.num_envs
        self.envs.reset(seed=seed)
        steps = 0
        while steps < num_env_steps:
            actions = self.rng.integers(0, self.num_env_actions, size=b)
            frames, *_ = self.envs.step(actions)
            self.intrinsic.update_obs_stats(frames)
            steps += b
        return steps

    def begin(self, seed: int) -> None:
        """Start fresh env streams: ``envs.reset(seed=seed)`` (env ``i`` gets ``seed + i``),
        and reset the explorer, intrinsic reward, frame stack and recurrent state. The replay
        side must call ``replay.begin_stream()`` too."""
        b = self.num_envs
        self.obs, _ = self.envs.reset(seed=seed)
        self.first = np.ones(b, dtype=bool)
        self.autoreset = np.zeros(b, dtype=bool)
        self.episode_return = np.zeros(b)
        self.episode_intrinsic = np.zeros(b)
        self.episode_length = np.zeros(b, dtype=np.int64)
        self.explorer.reset(b)
        if self.intrinsic is not None:
            self.intrinsic.reset(np.ones(b, dtype=bool))
            # x_0 enters the intrinsic reward's state (NGU's episodic memory, RND's
            # statistics) as a later episode's x_0 does on its autoreset step: scored, with
            # the reward discarded (issue 10 item 10).
            self.intrinsic.compute(self.obs, np.zeros(b, dtype=np.int64), self.obs)
        self.core_state = self.agent.initial_state(b)
        self.prev_action = np.full(b, -1, dtype=np.int64)
        self.prev_reward = np.zeros(b, dtype=np.float32)
        self.prev_intrinsic = np.zeros(b, dtype=np.float32)
        self._started = True

    def step(self, env_steps: int = 0) -> tuple[StepBatch, FinishedEpisodes]:
        """Act and step all ``B`` envs once.

        Args:
            env_steps: the run's env-step counter (for ``epsilon_fn``).

        Returns:
            ``(the step for replay, the episodes that ended on it)``.

        Raises:
            RuntimeError: :meth:`begin` was not called.
        """
        if not self._started:
            raise RuntimeError("Collector.step before Collector.begin(seed)")
        b = self.num_envs
        obs, first, autoreset = self.obs, self.first, self.autoreset
        if self.epsilon_fn is not None:
            self.explorer.epsilon = self.epsilon_fn(env_steps)  # type: ignore[attr-defined]
        stacked = self.stacker.push(obs, first)
        if self.recurrent:
            q_values, next_core_state = self.agent.act_q(
                stacked, self.core_state, first, self.prev_action, self.prev_reward,
                self.prev_intrinsic, policy_index=self._act_policy,
            )
        else:
            q_values = self.agent.q_values(stacked)
            next_core_state = self.core_state
        prior_actions = (self.prior_driver.act(stacked, first)
                         if self.prior_driver is not None else None)
        selection = self.explorer.select(q_values, stacked, first, prior_actions)
        next_obs, reward, terminated, truncated, info = self.envs.step(selection.env_actions)
        task_reward = np.asarray(info["task_reward"], dtype=np.float64)
        learner_reward = np.asarray(reward, dtype=np.float64)
        r_int = np.zeros(b, dtype=np.float32)
        if self.intrinsic is not None:
            r_int = self.intrinsic.compute(obs, selection.env_actions, next_obs)
            r_int = np.where(autoreset, 0.0, r_int).astype(np.float32)
            learner_reward = learner_reward + self.intrinsic_scale * r_int
            self.episode_intrinsic += r_int
        if self.prior_driver is not None:
            # A recurrent pi_p's previous action is the executed one (not its proposal).
            self.prior_driver.observe(selection.env_actions, reward, r_int)
        record = StepBatch(
            obs=obs, env_actions=selection.env_actions, agent_actions=selection.agent_actions,
            extra=selection.extra, reward=learner_reward, terminated=terminated,
            truncated=truncated, extrinsic_reward=np.asarray(reward, dtype=np.float64),
            intrinsic_reward=r_int, core_state=self.core_state, policy_index=self.policy_index,
        )
        if self.recurrent:
            self.core_state = next_core_state
            self.prev_action = selection.env_actions.astype(np.int64)
            self.prev_reward = np.asarray(reward, dtype=np.float32)
            self.prev_intrinsic = r_int
        valid = ~autoreset
        self.episode_return += np.where(valid, task_reward, 0.0)
        self.episode_length += valid
        done = (terminated | truncated) & valid
        ended = np.flatnonzero(done)
        if ended.size:
            episodes = FinishedEpisodes(
                returns=self.episode_return[ended].copy(),
                lengths=self.episode_length[ended].copy(),
                intrinsic=self.episode_intrinsic[ended].copy(), envs=ended,
            )
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.episode_intrinsic[done] = 0.0
        else:  # most steps: nothing ended, nothing to copy or clear
            episodes = _NO_EPISODES
        if self.intrinsic is not None:
            self.intrinsic.reset(done)
        self.first = autoreset
        self.autoreset = terminated | truncated
        self.obs = next_obs
        return record, episodes

    def close(self) -> None:
        """Close the vector env."""
        self.envs.close()
