"""EfficientZero's acting half: batched-MCTS self-play over a vector env.

One home for self-play (as :class:`rltransfer.agents.r2d2.actor.Collector` is R2D2's): the
local loop (:class:`rltransfer.agents.efficientzero.train.EZTrainer`) and the Ray actors
(:class:`rltransfer.distributed.selfplay.SelfPlayWorker`) run the same
:class:`SelfPlayActor`. Per env step the self-play network makes one ``initial_inference``
for all ``B`` stacked observations and one
:class:`~rltransfer.agents.efficientzero.mcts.BatchedMCTS` search (with root Dirichlet noise)
covers all ``B`` roots; actions are sampled from the visit counts with the temperature
schedule of EfficientZero (1 -> 0.5 -> 0.25 at 50% / 75% of training; Ye et al. 2021, XTRA
Table 4). Until the first learner update, actions are uniformly random instead, without a
search, as the public EfficientZero self-play acts there (:func:`random_warmup_actions`).

The network it acts with is the trainer's self-play copy (local loop) or an actor's copy
refreshed with :func:`selfplay_tensors` / :func:`load_selfplay_tensors` (Ray actors): plain
named CPU arrays, never pickled modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from rltransfer.agents.efficientzero.config import EZTrainConfig, temperature_at
from rltransfer.agents.efficientzero.mcts import (
    BatchedMCTS,
    MCTSConfig,
    SearchResult,
    select_action,
)
from rltransfer.agents.efficientzero.networks import EfficientZeroNet
from rltransfer.agents.efficientzero.shared_space import GameAdapter
from rltransfer.core.episodes import EpisodeTracker
from rltransfer.core.records import ArrayRecord
from rltransfer.envs import env_spec
from rltransfer.replay import FrameStacker

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

    from rltransfer.replay.game_segment import GameSegmentReplay

__all__ = [
    "SearchPolicy",
    "SelfPlayActor",
    "SelfPlayStep",
    "discrete_actions",
    "load_selfplay_tensors",
    "random_warmup_actions",
    "selfplay_tensors",
]


def discrete_actions(envs: VectorEnv) -> int:
    """``A``, the number of actions of a vector env with a ``Discrete`` action space.

    Raises:
        ValueError: another action space (EfficientZero searches over discrete actions).
    """
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"EfficientZero needs a Discrete action space, got {space}")
    return int(space.n)


def random_warmup_actions(rng: np.random.Generator, num_envs: int,
                          num_actions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warm-up acting before learning starts (``random_warmup_actions``): actions
    ``int64[B]`` uniform over ``A`` (drawn from ``rng``), root values ``float32[B]`` = 0 and
    policy targets ``float32[B, A]`` = ``1 / A`` (the public EfficientZero self-play worker
    before its start signal)."""
    b, a = num_envs, num_actions
    actions = rng.integers(0, a, size=b).astype(np.int64)
    return (actions, np.zeros(b, dtype=np.float32),
            np.full((b, a), 1.0 / a, dtype=np.float32))


class SearchPolicy:
    """A world model acting by batched MCTS, as a :class:`~rltransfer.core.policy.Policy`.

    Greedy (``deterministic``): no root noise, action = argmax of visit counts (ties to the
    lowest index). Otherwise root Dirichlet noise and sampling with ``temperature``.

    In a shared action space (``adapter``) the search runs over the network's union width
    with the game's legal ids masked at every node, observations are channel-padded first, and
    :meth:`act` picks among the legal ids and returns the game's local ids.

    Args:
        network: an ``EfficientZeroNet`` (used in eval mode, without gradients).
        mcts_config: search settings.
        num_actions: ``A``, the network's action width (``U`` with an adapter).
        device: torch device of ``network``.
        deterministic: greedy evaluation (True) or exploratory self-play (False).
        temperature: sampling temperature (when not deterministic).
        seed: seed of the noise and sampling.
        adapter: the game inside a shared action space
            (:class:`~rltransfer.agents.efficientzero.shared_space.GameAdapter`; None: the
            env's own actions).

    Raises:
        ValueError: ``adapter`` is not ``num_actions`` wide.
    """

    def __init__(self, network: EfficientZeroNet, mcts_config: MCTSConfig, num_actions: int,
                 device: str = "cpu", deterministic: bool = True, temperature: float = 1.0,
                 seed: int = 0, adapter: GameAdapter | None = None) -> None:
        if adapter is not None and adapter.num_actions != int(num_actions):
            raise ValueError(f"the adapter's action space has {adapter.num_actions} actions, "
                             f"the search {num_actions}")
        self.network = network
        self.mcts = BatchedMCTS(mcts_config, num_actions)
        self.adapter = adapter if adapter is not None and not adapter.is_identity else None
        self.num_actions = int(num_actions) if adapter is None else adapter.num_legal
        """The env's action count (what :meth:`act` returns ids of)."""
        self.device = torch.device(device)
        self.deterministic = deterministic
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        return None

    @torch.no_grad()
    def search(self, obs: np.ndarray, rng: np.random.Generator | None = None,
               noise: bool | None = None) -> SearchResult:
        """One batched search from stacked ``uint8[B, C*S, H, W]`` (the env's frames); the
        result is in the network's width (zeros at ids the adapter masks)."""
        self.network.eval()
        mask = None
        if self.adapter is not None:
            obs = self.adapter.network_obs(obs)
            mask = self.adapter.search_mask(int(obs.shape[0]))
        root = self.network.initial_inference(torch.from_numpy(obs).to(self.device))
        add_noise = (not self.deterministic) if noise is None else noise
        return self.mcts.search(self.network, root, rng if rng is not None else self.rng,
                                add_exploration_noise=add_noise, action_mask=mask)

    def local(self, result: SearchResult) -> SearchResult:
        """``result`` over the game's local ids: visit counts and policy ``[B, L]`` (the
        network-width result itself without an adapter)."""
        if self.adapter is None:
            return result
        return SearchResult(visit_counts=self.adapter.local(result.visit_counts),
                            root_values=result.root_values,
                            policy=self.adapter.local(result.policy))

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """The env's actions ``int64[B]`` for stacked ``uint8[B, C*S, H, W]`` (the ``Policy``
        call)."""
        result = self.local(self.search(obs))
        actions = select_action(result.visit_counts, self.temperature, self.rng,
                                deterministic=self.deterministic)
        return actions, state


# ---------------------------------------------------------------------- weight sync
def selfplay_tensors(network: EfficientZeroNet) -> dict[str, np.ndarray]:
    """The self-play network's parameters and BatchNorm buffers as named CPU numpy arrays:
    ``<component>/<name>`` for each of ``representation``, ``dynamics``, ``prediction``,
    ``projection``."""
    return {f"{comp}/{name}": v.detach().cpu().numpy().copy()
            for comp in EfficientZeroNet.COMPONENTS
            for name, v in getattr(network, comp).state_dict().items()}


def load_selfplay_tensors(network: EfficientZeroNet, tensors: dict[str, np.ndarray]) -> None:
    """Load :func:`selfplay_tensors` output into an actor's network copy (by name).

    Raises:
        RuntimeError: a missing, unexpected or mis-shaped tensor (another architecture).
    """
    for comp in EfficientZeroNet.COMPONENTS:
        prefix = f"{comp}/"
        getattr(network, comp).load_state_dict(
            {k[len(prefix):]: torch.from_numpy(np.array(v, copy=True))
             for k, v in tensors.items() if k.startswith(prefix)})


# ---------------------------------------------------------------------- records
@dataclass
class SelfPlayStep(ArrayRecord):
    """One vector-env step of ``B`` games (or ``T`` steps, time-major, after :meth:`stack`):
    the arguments of :meth:`GameSegmentReplay.add`.

    Attributes (shapes for one step; a stacked record has a leading ``T``):
        obs: ``uint8[B, C, H, W]``, the single frame seen before the action.
        actions: ``int64[B]``, executed.
        reward: ``float64[B]``, the learner's reward (``sign(r)`` when ``clip_rewards``).
        terminated, truncated: ``bool[B]``, end flags returned by this step.
        root_values: ``float32[B]``, the search's root values (0 for warm-up actions).
        policy: ``float32[B, A]``, the visit distributions (uniform for warm-up actions).
    """

    obs: np.ndarray
    actions: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    root_values: np.ndarray
    policy: np.ndarray

    def add_to(self, replay: GameSegmentReplay) -> None:
        """Append this (single) step to ``replay`` (``replay.num_envs`` must be ``B``).

        Raises:
            ValueError: from ``replay.add`` on wrong shapes or non-finite values.
        """
        replay.add(self.obs, self.actions, self.reward, self.terminated, self.truncated,
                   self.root_values, self.policy)


# ---------------------------------------------------------------------- actor
class SelfPlayActor:
    """Plays ``B = envs.num_envs`` games with batched MCTS; returns what replay stores.

    Per :meth:`step`: stack the newest frame (:class:`FrameStacker`), search (or, while
    warming up, draw uniform actions), sample actions with the run's temperature at the given
    env-step counter, step the env, clip the learner's reward if ``cfg.clip_rewards``, and
    track episode returns of the task reward (``info["task_reward"]``, unclipped).

    Args:
        envs: a gymnasium ``VectorEnv`` (NEXT_STEP autoreset, ``info["task_reward"]``), as
            :func:`rltransfer.envs.make_env` builds with
            :func:`~rltransfer.agents.efficientzero.config.ez_env_kwargs`.
        network: the self-play world model (eval mode, no gradients); ``A`` actions, or the
            union width ``U`` of ``cfg.action_space``.
        cfg: the run's config (search, temperatures, ``total_env_steps``, reward clipping,
            frame stack, ``action_space`` and ``pad_channels``: the actor acts and stores in
            the game's local ids, searching over the union width with illegal ids masked).
        device: torch device of ``network``.
        seed: seed of the search noise, the action sampling and the warm-up actions.

    Raises:
        ValueError: the envs' observations are not ``(C, H, W)`` frames, the action space
            is not discrete, or ``network`` is not as wide as the run's action space.
    """

    def __init__(self, envs: VectorEnv, network: EfficientZeroNet, cfg: EZTrainConfig, *,
                 device: str = "cpu", seed: int = 0) -> None:
        shape = envs.single_observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"self-play needs (C, H, W) frames, got {shape}")
        self.envs = envs
        self.cfg = cfg
        self.num_envs = int(envs.num_envs)
        self.num_actions = discrete_actions(envs)
        self.frame_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        frame_stack = cfg.frame_stack or env_spec(cfg.env_id).frame_stack
        self.adapter = GameAdapter.for_env(cfg.action_space, cfg.env_id, self.num_actions,
                                           self.frame_shape, frame_stack, cfg.pad_channels)
        if network.num_actions != self.adapter.num_actions:
            raise ValueError(f"the self-play network has {network.num_actions} actions, the "
                             f"run's action space {self.adapter.num_actions}")
        self.policy = SearchPolicy(network, cfg.mcts, self.adapter.num_actions, device=device,
                                   deterministic=False, seed=seed, adapter=self.adapter)
        self.stacker = FrameStacker(self.num_envs, self.frame_shape, frame_stack)
        self.episodes = EpisodeTracker(self.num_envs)
        self._started = False

    @property
    def rng(self) -> np.random.Generator:
        """The generator of search noise, sampling and warm-up actions (checkpointed)."""
        return self.policy.rng

    @property
    def network(self) -> EfficientZeroNet:
        """The world model acting."""
        return self.policy.network

    def search(self, stacked: np.ndarray) -> SearchResult:
        """One noisy batched search from stacked ``uint8[B, C*S, H, W]``, over the game's
        local ids (:meth:`SearchPolicy.local`)."""
        return self.policy.local(self.policy.search(stacked))

    def begin(self, seed: int) -> None:
        """Start fresh games: ``envs.reset(seed=seed)`` (env ``i`` gets ``seed + i``); every
        env starts an episode. The replay side must call ``replay.begin_stream()`` too."""
        self.obs, _ = self.envs.reset(seed=seed)
        self.episodes.reset()
        self._started = True

    def step(self, env_steps: int, random_actions: bool = False,
             ) -> tuple[SelfPlayStep, np.ndarray, np.ndarray]:
        """Act and step all ``B`` games once.

        Args:
            env_steps: the run's env-step counter (all envs of all actors) at this step; sets
                the temperature (:func:`~rltransfer.agents.efficientzero.config.temperature_at`).
            random_actions: act uniformly without a search (the warm-up before the first
                learner update; uniform policy targets, root values 0).

        Returns:
            ``(the step for replay, returns float64[E], lengths int64[E])`` of the ``E``
            episodes that ended on this step (task reward, env steps), in env order.

        Raises:
            RuntimeError: :meth:`begin` was not called.
        """
        if not self._started:
            raise RuntimeError("SelfPlayActor.step before SelfPlayActor.begin(seed)")
        obs = self.obs
        stacked = self.stacker.push(obs, self.episodes.first)
        if random_actions:
            actions, root_values, policy = random_warmup_actions(
                self.rng, self.num_envs, self.num_actions)
        else:
            result = self.search(stacked)
            actions = select_action(result.visit_counts, temperature_at(self.cfg, env_steps),
                                    self.rng)
            root_values, policy = result.root_values, result.policy
        next_obs, reward, terminated, truncated, info = self.envs.step(actions)
        learner_reward = np.asarray(reward, dtype=np.float64)
        if self.cfg.clip_rewards:
            learner_reward = np.sign(learner_reward)
        record = SelfPlayStep(obs=obs, actions=actions, reward=learner_reward,
                              terminated=terminated, truncated=truncated,
                              root_values=root_values, policy=policy)
        returns, lengths = self.episodes.record(
            np.asarray(info["task_reward"], dtype=np.float64), terminated, truncated)
        self.obs = next_obs
        return record, returns, lengths

    def close(self) -> None:
        """Close the vector env."""
        self.envs.close()
