"""The EfficientZero training loop: batched self-play with MCTS, reanalysed targets, learning.

One vector env of ``B`` games is stepped together: per env step the self-play network makes
one ``initial_inference`` for all ``B`` stacked observations and one
:class:`~rltransfer.agents.efficientzero.mcts.BatchedMCTS` search (with root Dirichlet noise)
covers all
``B`` roots; actions are sampled from the visit counts with the temperature schedule of
EfficientZero (1 -> 0.5 -> 0.25 at 50% / 75% of training, Ye et al. 2021 / XTRA Table 4).
Until the first learner update, actions are uniformly random instead, without a search, as
the public EfficientZero self-play acts there (``random_warmup_actions``). Each
step's frame, action, reward, end flags and search statistics go into a
:class:`~rltransfer.replay.game_segment.GameSegmentReplay`. After ``warmup_env_steps`` the
learner makes ``updates_per_env_step`` updates per env step from batches built by
:class:`~rltransfer.agents.efficientzero.reanalyse.Reanalyser` (target-network reanalysis), and the
sampled
positions get the learner's new priorities. Self-play uses a copy of the learner's network
refreshed every ``selfplay_update_interval_updates`` updates (EZ: 100).

A run directory holds ``config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/step_*``
and, once finished, ``final/`` (the world model's weights, named by component:
``representation/``, ``dynamics/``, ``prediction/``, ``projection/``, with the architecture in
its ``meta.json``). Started again with the same directory a run resumes from its latest
checkpoint (learner, self-play network, replay, RNG states, counters); on a finished run it
does nothing, as :mod:`rltransfer.agents.r2d2.train` does.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rltransfer.agents.efficientzero.agent import (
    COMPONENTS,
    EfficientZeroConfig,
    EfficientZeroLearner,
)
from rltransfer.agents.efficientzero.mcts import BatchedMCTS, MCTSConfig, select_action
from rltransfer.agents.efficientzero.networks import (
    EfficientZeroNet,
    WorldModelConfig,
    world_model_preset,
)
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig, Reanalyser
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.core.checkpoint_components import check_component_names
from rltransfer.core.config import ConfigError, to_dict
from rltransfer.core.episodes import EpisodeTracker
from rltransfer.core.loop import TrainingLoop, sub_tensors
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress
from rltransfer.core.run import RunResult, closes_envs_on_failure
from rltransfer.core.run_dir import RunConflictError as RunConflictError  # re-export
from rltransfer.core.run_dir import prepare_run_dir
from rltransfer.core.schedule import LoopSchedule, ReplayRatio
from rltransfer.core.seeding import generator_state, restore_generator
from rltransfer.envs import env_spec, make_env
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.methods.weight_transfer import (
    freeze_components,
    load_component_tensors,
    transfer_components,
)
from rltransfer.replay import FrameStacker
from rltransfer.replay.game_segment import GameSegmentReplay

MODEL_COMPONENTS = ("representation/", "dynamics/", "prediction/", "projection/")
"""Checkpoint tensor prefixes of the world model's components (h, g, f, SimSiam projection)."""


@dataclass
class EZTrainConfig:
    """One EfficientZero run (defaults: a small MinAtar run; see recipes/efficientzero.py).

    Attributes:
        env_id: ``ALE/<Game>-v5`` or ``MinAtar/<Game>-v1`` (any id ``make_env`` knows).
        num_envs: ``B`` games stepped together (one batched search per env step).
        total_env_steps: env steps of all envs together (EZ Atari100k: 100k agent steps).
        seed: seed of envs, networks, search noise and sampling.
        run_dir: run directory (resumed if it holds this run).
        frame_stack: frames per observation (None = the suite's default; EZ Atari: 4).
        frame_size: ALE only: square frame size passed to ``make_env`` (EZ: 96; None = the
            suite default).
        grayscale: ALE only: grayscale frames (EZ: False, RGB; None = the suite default).
        sticky_action_prob: sticky actions (None = the suite default; EZ: 0).
        terminal_on_life_loss: Atari training episodes end at each life loss (EZ: True);
            evaluation never does.
        max_episode_frames: episode cap (Atari: emulator frames, EZ 108k).
        clip_rewards: the learner sees ``sign(r)`` (Atari reward clipping); returns logged
            and evaluated are unclipped.
        net_preset: world-model size preset (``"small"`` for MinAtar-sized inputs,
            ``"atari"`` for the paper's 96x96 network, ``"atari-l"`` with 4 representation
            blocks as in XTRA); see ``nets.world_model.world_model_preset``.
        mcts: search settings (``num_simulations`` etc.); ``discount`` and
            ``value_prefix_horizon`` must match the learner's (default: EZ's search with the
            learner's default discount 0.997^4 per agent step).
        learner: learner hyperparameters (unroll steps, TD steps, discount, losses, SGD;
            the default has ``augmentation="none"``, as these defaults are a MinAtar run;
            ``ez-atari100k`` turns EZ's shift + intensity augmentation on).
        reanalyse: target reanalysis settings.
        replay_capacity_env_steps: replay size in env steps (all envs together).
        batch_size: positions per learner update (EZ: 256).
        updates_per_env_step: learner updates per env step (EZ Atari100k: 1).
        warmup_env_steps: env steps collected before the first update (EZ: 2000).
        random_warmup_actions: until the first learner update, act uniformly at random
            without a search and store a uniform policy target and root value 0 (the public
            EfficientZero self-play worker: uniform ``distributions`` before its start
            signal; its stored root value is that of the untrained network, 0 with the
            zero-initialised heads). Turn off when the network starts pretrained (the
            public XTRA code searches from the start when it loads a model).
        priority_exponent: alpha (EZ: 0.6).
        importance_exponent_start: beta at the start, annealed linearly to 1 (EZ: 0.4).
        temperatures: action-sampling temperatures of the three training phases.
        temperature_milestones: fractions of ``total_env_steps`` where the phases change.
        selfplay_update_interval_updates: updates between refreshes of the self-play network.
        eval_every_env_steps / eval_episodes: greedy evaluation (deterministic search, argmax
            of visit counts, no noise), on the unclipped game reward.
        checkpoint_every_env_steps / keep_checkpoints / checkpoint_replay: checkpointing
            (with the replay, resuming continues exactly; without it, learning restarts
            after another ``warmup_env_steps``).
        init_from: run directory or checkpoint directory of an EfficientZero run whose
            components start this run (a run dir resolves to its ``final/``, else its latest
            checkpoint), as XTRA (Xu et al. 2023) transfers h, h+g or h+g+f. The source
            must have the same network sizes and observation scale (and, for
            ``prediction``, the same number of actions).
        transfer: components loaded from ``init_from``, among ``representation``,
            ``dynamics``, ``prediction``, ``projection`` (online and target networks).
        freeze: components kept fixed during training (no SGD step; BatchNorm statistics
            kept); needs ``init_from``.
        device: torch device of the learner and the networks.
        torch_threads: ``torch.set_num_threads``.
        progress: rich progress bar; tensorboard: also write TensorBoard events.
        backend: ``local`` (self-play in this process) or ``ray``: ``num_actors`` Ray actor
            processes (:class:`~rltransfer.distributed.selfplay.SelfPlayWorker`) each play
            ``num_envs / num_actors`` of the games with a copy of the self-play network
            (refreshed by name as the local one is, every
            ``selfplay_update_interval_updates``) and send ``actor_chunk_steps`` vector steps
            per round to this process's replay and learner.
        num_actors / actor_chunk_steps: Ray actors and vector steps per actor per round.
        ray_address / ray_cpus_per_actor / ray_gpus_per_actor / ray_learner_gpus: as in
            :class:`~rltransfer.agents.r2d2.config.TrainConfig` (cluster to join, else
            ``RAY_ADDRESS``,
            else a local Ray; per-actor CPUs and GPU fraction; learner GPU reservation).
    """

    env_id: str = "MinAtar/Breakout-v1"
    num_envs: int = 8
    total_env_steps: int = 50_000
    seed: int = 0
    run_dir: str = "runs/efficientzero"
    frame_stack: int | None = None
    frame_size: int | None = None
    grayscale: bool | None = None
    sticky_action_prob: float | None = None
    terminal_on_life_loss: bool = False
    max_episode_frames: int = 108_000
    clip_rewards: bool = False
    net_preset: Literal["small", "atari", "atari-l"] = "small"
    mcts: MCTSConfig = field(default_factory=lambda: MCTSConfig(discount=0.997**4))
    learner: EfficientZeroConfig = field(
        default_factory=lambda: EfficientZeroConfig(augmentation="none"))
    reanalyse: ReanalyseConfig = field(default_factory=ReanalyseConfig)
    replay_capacity_env_steps: int = 100_000
    batch_size: int = 256
    updates_per_env_step: float = 1.0
    warmup_env_steps: int = 2_000
    random_warmup_actions: bool = True
    priority_exponent: float = 0.6
    importance_exponent_start: float = 0.4
    temperatures: tuple[float, float, float] = (1.0, 0.5, 0.25)
    temperature_milestones: tuple[float, float] = (0.5, 0.75)
    selfplay_update_interval_updates: int = 100
    eval_every_env_steps: int = 10_000
    eval_episodes: int = 8
    checkpoint_every_env_steps: int = 10_000
    keep_checkpoints: int = 2
    checkpoint_replay: bool = True
    init_from: str | None = None
    transfer: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    device: str = "cpu"
    torch_threads: int = 1
    progress: bool = True
    tensorboard: bool = True
    backend: Literal["local", "ray"] = "local"
    num_actors: int = 2
    actor_chunk_steps: int = 16
    ray_address: str | None = None
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0
    ray_learner_gpus: float = 0.0


RESUMABLE_ON_ANOTHER_BACKEND: frozenset[str] = frozenset(
    {"backend", "num_actors", "actor_chunk_steps", "ray_address", "ray_cpus_per_actor",
     "ray_gpus_per_actor", "ray_learner_gpus"})
"""Config fields a resumed run may change (a run may resume on another backend)."""

EZRunResult = RunResult
"""Kept for callers of earlier versions: :class:`rltransfer.core.loop.RunResult`."""


def ez_env_kwargs(cfg: EZTrainConfig) -> dict[str, Any]:
    """The :func:`~rltransfer.envs.make_env` settings of ``cfg``'s training env (after
    ``env_id, num_envs, seed``): episode cap, life-loss terminals, and the sticky actions,
    frame size and grayscale ``cfg`` sets (unset ones: the suite default). Evaluation uses
    :func:`~rltransfer.evaluation.protocol.eval_env_kwargs` of these."""
    kwargs: dict[str, Any] = {"max_episode_frames": cfg.max_episode_frames,
                              "terminal_on_life_loss": cfg.terminal_on_life_loss}
    if cfg.sticky_action_prob is not None:
        kwargs["sticky_action_prob"] = cfg.sticky_action_prob
    if cfg.frame_size is not None:
        kwargs["frame_size"] = cfg.frame_size
    if cfg.grayscale is not None:
        kwargs["grayscale"] = cfg.grayscale
    return kwargs


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


def ez_net_config(cfg: EZTrainConfig) -> WorldModelConfig:
    """The world model of ``cfg``: the preset's sizes with the suite's observation scale
    (255 for pixels, 1 for MinAtar)."""
    return dataclasses.replace(world_model_preset(cfg.net_preset),
                               obs_scale=float(env_spec(cfg.env_id).obs_scale))


def temperature_at(cfg: EZTrainConfig, env_steps: int) -> float:
    """Action-sampling temperature at ``env_steps`` (EZ: 1, then 0.5 after 50% of training,
    then 0.25 after 75%)."""
    frac = env_steps / max(1, cfg.total_env_steps)
    first, second = cfg.temperature_milestones
    if frac < first:
        return cfg.temperatures[0]
    if frac < second:
        return cfg.temperatures[1]
    return cfg.temperatures[2]


def importance_exponent_at(cfg: EZTrainConfig, env_steps: int) -> float:
    """beta annealed linearly from ``importance_exponent_start`` to 1 over the run."""
    frac = min(1.0, env_steps / max(1, cfg.total_env_steps))
    return cfg.importance_exponent_start + frac * (1.0 - cfg.importance_exponent_start)


def validate(cfg: EZTrainConfig) -> None:
    """Check an :class:`EZTrainConfig` for inconsistent values.

    Raises:
        ConfigError: every problem found, with the field to fix.
    """
    problems = []
    if cfg.num_envs < 1:
        problems.append("num_envs must be >= 1")
    if cfg.total_env_steps < 1:
        problems.append("total_env_steps must be >= 1")
    if cfg.batch_size < 1:
        problems.append("batch_size must be >= 1")
    if cfg.updates_per_env_step <= 0:
        problems.append("updates_per_env_step must be > 0")
    if cfg.warmup_env_steps < 0:
        problems.append("warmup_env_steps must be >= 0")
    if not 0 <= cfg.importance_exponent_start <= 1:
        problems.append("importance_exponent_start must be in [0, 1]")
    if min(cfg.temperatures) <= 0:
        problems.append("temperatures must be > 0")
    m1, m2 = cfg.temperature_milestones
    if not 0 <= m1 <= m2 <= 1:
        problems.append("temperature_milestones must satisfy 0 <= first <= second <= 1")
    if cfg.selfplay_update_interval_updates < 1:
        problems.append("selfplay_update_interval_updates must be >= 1")
    if cfg.eval_every_env_steps < 1 or cfg.checkpoint_every_env_steps < 1:
        problems.append("eval_every_env_steps and checkpoint_every_env_steps must be >= 1")
    if cfg.eval_episodes < 1:
        problems.append("eval_episodes must be >= 1")
    discount = cfg.learner.discount
    if abs(cfg.mcts.discount - discount) > 1e-12:
        problems.append(
            f"mcts.discount ({cfg.mcts.discount}) must equal learner.discount ({discount})"
        )
    horizon = cfg.learner.value_prefix_horizon
    if cfg.mcts.value_prefix_horizon != horizon:
        problems.append(
            f"mcts.value_prefix_horizon ({cfg.mcts.value_prefix_horizon}) must equal the "
            f"learner's ({horizon})"
        )
    if cfg.backend == "ray":
        if cfg.num_actors < 1 or cfg.num_envs % cfg.num_actors != 0:
            problems.append(
                f"backend=ray splits num_envs={cfg.num_envs} over num_actors={cfg.num_actors}: "
                "num_envs must be a positive multiple of num_actors"
            )
        if cfg.actor_chunk_steps < 1:
            problems.append("actor_chunk_steps must be >= 1")
    if not cfg.env_id.startswith("ALE/"):
        for name in ("frame_size", "grayscale"):
            if getattr(cfg, name) is not None:
                problems.append(f"{name} applies to ALE games only; leave it None")
        if cfg.terminal_on_life_loss:
            problems.append("terminal_on_life_loss applies to ALE games only")
    check_component_names(cfg.transfer, COMPONENTS, "transfer", "EfficientZero")
    check_component_names(cfg.freeze, COMPONENTS, "freeze", "EfficientZero")
    if cfg.init_from is None and (cfg.transfer or cfg.freeze):
        problems.append("transfer / freeze need init_from (--init-from RUN)")
    if cfg.init_from is not None and not cfg.transfer:
        problems.append("init_from needs the components to load (--transfer representation "
                        "dynamics ...)")
    if problems:
        raise ConfigError("EZTrainConfig: " + "; ".join(problems))


class SearchPolicy:
    """A world model acting by batched MCTS, as a :class:`~rltransfer.core.policy.Policy`.

    Greedy (``deterministic``): no root noise, action = argmax of visit counts (ties to the
    lowest index). Otherwise root Dirichlet noise and sampling with ``temperature``.

    Args:
        network: an ``EfficientZeroNet`` (used in eval mode, without gradients).
        mcts_config: search settings.
        num_actions: ``A``.
        device: torch device of ``network``.
        deterministic: greedy evaluation (True) or exploratory self-play (False).
        temperature: sampling temperature (when not deterministic).
        seed: seed of the noise and sampling.
    """

    def __init__(self, network: EfficientZeroNet, mcts_config: MCTSConfig, num_actions: int,
                 device: str = "cpu", deterministic: bool = True, temperature: float = 1.0,
                 seed: int = 0) -> None:
        self.network = network
        self.mcts = BatchedMCTS(mcts_config, num_actions)
        self.num_actions = int(num_actions)
        self.device = torch.device(device)
        self.deterministic = deterministic
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        return None

    @torch.no_grad()
    def search(self, obs: np.ndarray, rng: np.random.Generator | None = None,
               noise: bool | None = None) -> Any:
        """One batched search from stacked ``uint8[B, C*S, H, W]``; returns ``SearchResult``."""
        self.network.eval()
        root = self.network.initial_inference(torch.from_numpy(obs).to(self.device))
        add_noise = (not self.deterministic) if noise is None else noise
        return self.mcts.search(self.network, root, rng if rng is not None else self.rng,
                                add_exploration_noise=add_noise)

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        result = self.search(obs)
        actions = select_action(result.visit_counts, self.temperature, self.rng,
                                deterministic=self.deterministic)
        return actions, state


class EZTrainer(TrainingLoop):
    """Owns the envs, learner, self-play network, replay and reanalyser of one run.

    Args:
        cfg: the run's config (see :class:`EZTrainConfig`).

    Raises:
        ConfigError: inconsistent config. RunConflictError: the run dir holds another run.
    """

    @closes_envs_on_failure
    def __init__(self, cfg: EZTrainConfig) -> None:
        validate(cfg)
        # Nothing is written to the run dir before the env and the rest are validated.
        self.open_run(cfg, ignore=RESUMABLE_ON_ANOTHER_BACKEND)
        self.open_pixel_envs(make_env, env_spec(cfg.env_id), self.env_kwargs())
        self.num_actions = int(self.envs.single_action_space.n)  # type: ignore[attr-defined]
        self.net_config = self._net_config()
        self.learner = EfficientZeroLearner(cfg.learner, self.net_config, self.obs_shape,
                                            self.num_actions, device=cfg.device,
                                            seed=cfg.seed + 104_729)
        if cfg.init_from is not None:
            self.initialise_from(cfg.init_from)
        self.selfplay_network = copy.deepcopy(self.learner.network).eval()
        for p in self.selfplay_network.parameters():
            p.requires_grad_(False)
        k, td = cfg.learner.unroll_steps, cfg.learner.td_steps
        capacity = max(k + td + self.frame_stack + 1,
                       cfg.replay_capacity_env_steps // cfg.num_envs)
        self.replay = GameSegmentReplay(
            cfg.num_envs, capacity, self.frame_shape, self.num_actions,
            frame_stack=self.frame_stack, unroll_steps=k, td_steps=td,
            priority_exponent=cfg.priority_exponent,
        )
        self.reanalyser = Reanalyser(
            self.replay, cfg.mcts, discount=float(cfg.learner.discount),
            value_prefix_horizon=cfg.mcts.value_prefix_horizon,
            total_env_steps=cfg.total_env_steps, config=cfg.reanalyse, device=cfg.device,
        )
        self.actor = SearchPolicy(self.selfplay_network, cfg.mcts, self.num_actions,
                                  device=cfg.device, deterministic=False, seed=cfg.seed + 7_919)
        self.stacker = FrameStacker(cfg.num_envs, self.frame_shape, self.frame_stack)
        self.episode_tracker = EpisodeTracker(cfg.num_envs)
        self._selfplay_seconds = 0.0
        self.init_loop(LoopSchedule.from_config(
            cfg, ReplayRatio(cfg.updates_per_env_step, 1), cfg.warmup_env_steps,
        ), tensorboard=cfg.tensorboard)
        prepare_run_dir(cfg, cfg.run_dir, ignore=RESUMABLE_ON_ANOTHER_BACKEND)

    # ------------------------------------------------------------------ setup helpers
    def env_kwargs(self) -> dict[str, Any]:
        """The training env's ``make_env`` settings (:func:`ez_env_kwargs`)."""
        return ez_env_kwargs(self.cfg)

    def _net_config(self) -> WorldModelConfig:
        """The preset's sizes with this suite's observation scale (255 pixels, 1 MinAtar)."""
        return ez_net_config(self.cfg)

    def initialise_from(self, path: str) -> None:
        """Load ``cfg.transfer`` components of another EfficientZero run into the learner
        (online and target) and freeze ``cfg.freeze``, before self-play copies the network.

        Raises:
            CheckpointError: nothing loadable at ``path``, not an EfficientZero model, or
                one with another observation scale.
            ComponentMismatchError: tensors of another shape (named, with both shapes).
        """
        components, meta, ckpt = load_component_tensors(path)
        arch = meta.get("architecture") or {}
        if arch.get("kind") != "efficientzero":
            raise CheckpointError(
                f"{ckpt} does not hold an EfficientZero model (architecture kind "
                f"{arch.get('kind')!r}); --init-from needs a train-ez run or checkpoint"
            )
        theirs = (arch.get("net_config") or {}).get("obs_scale")
        if theirs is not None and float(theirs) != self.net_config.obs_scale:
            raise CheckpointError(
                f"{ckpt} was trained on observations scaled by 1/{theirs}, this run scales by "
                f"1/{self.net_config.obs_scale} ({self.cfg.env_id}); transfer within a suite"
            )
        transfer_components(self.learner, components, self.cfg.transfer, source=str(ckpt))
        freeze_components(self.learner, self.cfg.freeze)

    # ------------------------------------------------------------------ checkpoints
    def architecture(self) -> dict[str, Any]:
        """What a reader needs to rebuild the world model and check spaces."""
        return {
            "kind": "efficientzero",
            "env_id": self.cfg.env_id,
            "obs_shape": list(self.obs_shape),
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "obs_scale": self.spec.obs_scale,
            "num_actions": self.num_actions,
            "net_preset": self.cfg.net_preset,
            "net_config": to_dict(self.net_config),
            "learner_config": to_dict(self.cfg.learner),
            "mcts_config": to_dict(self.cfg.mcts),
        }

    def final_tensors(self) -> dict[str, Any]:
        """The world model's components (``representation/`` ... ``projection/``)."""
        return {k: v for k, v in self.learner.state_tensors().items()
                if k.startswith(MODEL_COMPONENTS)}

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        if final:
            return {}
        return {"learner_state": self.learner.state_meta(),
                "actor_rng": generator_state(self.actor.rng)}

    def state_tensors(self) -> dict[str, Any]:
        """The learner's state (networks, targets, optimizer) and the self-play network
        (``selfplay/``)."""
        tensors: dict[str, Any] = dict(self.learner.state_tensors())
        tensors.update({f"selfplay/{k}": v for k, v in self.selfplay_network.state_dict().items()})
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        skip = ("selfplay/", "replay/", "rng/")
        self.learner.load_state_tensors(
            {k: v for k, v in tensors.items() if not k.startswith(skip)}, meta["learner_state"]
        )
        self.selfplay_network.load_state_dict(sub_tensors(tensors, "selfplay/"))
        restore_generator(self.actor.rng, meta["actor_rng"])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, logger: MetricsLogger) -> float:
        """Greedy search with the learner's current network (eval mode) on the unclipped game
        reward, on the training env except the protocol's differences (no life-loss terminals;
        :func:`~rltransfer.evaluation.protocol.eval_env_kwargs`); logs and returns the mean."""
        policy = SearchPolicy(self.learner.network, self.cfg.mcts, self.num_actions,
                              device=self.cfg.device, deterministic=True)
        returns = evaluate_policy(
            policy, self.cfg.env_id, num_episodes=self.cfg.eval_episodes,
            seed=self.cfg.seed + 1_000_003 + self.env_steps, frame_stack=self.frame_stack,
            num_envs=min(self.cfg.eval_episodes, 8),
            env_kwargs=eval_env_kwargs(self.env_kwargs()),
        )
        return self.log_eval(logger, returns)

    # ------------------------------------------------------------------ self-play
    def before_loop(self) -> None:
        self._selfplay_seconds = 0.0

    def drive(self, logger: MetricsLogger, progress: RunProgress) -> None:
        if self.cfg.backend == "ray":
            from rltransfer.distributed.selfplay import selfplay_on_ray

            selfplay_on_ray(self, logger, progress)
        else:
            super().drive(logger, progress)

    def start_collecting(self) -> None:
        self._obs, _ = self.envs.reset(seed=self.cfg.seed + 31 * self.env_steps)
        self.episode_tracker.reset()
        self.replay.begin_stream()

    def collect_step(self, logger: MetricsLogger) -> None:
        """Self-play in this process: one batched search (or, while warming up, uniform
        actions) and env step, written to replay."""
        cfg = self.cfg
        tick = time.perf_counter()
        stacked = self.stacker.push(self._obs, self.episode_tracker.first)
        if cfg.random_warmup_actions and self.num_updates == 0:
            actions, root_values, policy = self._random_actions()
        else:
            result = self.actor.search(stacked)
            actions = select_action(result.visit_counts,
                                    temperature_at(cfg, self.env_steps), self.actor.rng)
            root_values, policy = result.root_values, result.policy
        next_obs, reward, terminated, truncated, info = self.envs.step(actions)
        game_reward = np.asarray(info["task_reward"], dtype=np.float64)
        learner_reward = np.asarray(reward, dtype=np.float64)
        if cfg.clip_rewards:
            learner_reward = np.sign(learner_reward)
        self.replay.add(self._obs, actions, learner_reward, terminated, truncated,
                        root_values, policy)
        returns, lengths = self.episode_tracker.record(game_reward, terminated, truncated)
        self._log_episodes(logger, returns, lengths)
        self._obs = next_obs
        self._selfplay_seconds += time.perf_counter() - tick

    def train_record_extras(self) -> dict[str, Any]:
        """Seconds spent in self-play and in learning, and the current temperature."""
        return {"selfplay_seconds": self._selfplay_seconds,
                "learn_seconds": self._learn_seconds,
                "temperature": temperature_at(self.cfg, self.env_steps)}

    def _random_actions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warm-up acting before learning starts (see ``random_warmup_actions``): actions
        ``int64[B]`` uniform over ``A`` (from the actor's generator), root values
        ``float32[B]`` = 0 and policy targets ``float32[B, A]`` = ``1 / A``."""
        return random_warmup_actions(self.actor.rng, self.cfg.num_envs, self.num_actions)

    def update(self) -> dict[str, float]:
        """One learner update from a reanalysed batch; priorities and networks refreshed
        (the self-play copy every ``selfplay_update_interval_updates`` updates)."""
        cfg = self.cfg
        batch = self.reanalyser.make_batch(
            self.learner.target_network, cfg.batch_size, self.rng,
            importance_exponent_at(cfg, self.env_steps),
        )
        metrics, priorities = self.learner.update(batch)
        self.replay.update_priorities(batch.indices, priorities)
        if (self.num_updates + 1) % cfg.selfplay_update_interval_updates == 0:
            self.selfplay_network.load_state_dict(self.learner.network.state_dict())
        return metrics


def train_efficientzero(cfg: EZTrainConfig) -> EZRunResult:
    """Build an :class:`EZTrainer` for ``cfg`` and run it to completion (resuming if possible)."""
    return EZTrainer(cfg).run()
