"""The EfficientZero training loop: batched self-play with MCTS, reanalysed targets, learning.

Acting is a :class:`~rltransfer.agents.efficientzero.actor.SelfPlayActor` (one batched search
per env step over ``B`` games, the temperature schedule of EfficientZero, uniform warm-up
actions until the first update; Ye et al. 2021). ``backend="local"`` steps it in this process
between updates; ``backend="ray"`` runs ``num_actors`` of them in Ray actor processes
(:mod:`rltransfer.distributed.selfplay`). Each step's frame, action, reward, end flags and
search statistics go into a :class:`~rltransfer.replay.game_segment.GameSegmentReplay`. After
``learning_starts_env_steps`` the learner
(:class:`~rltransfer.agents.efficientzero.learner.EfficientZeroLearner`) makes
``updates_per_env_step`` updates per env step from batches built by
:class:`~rltransfer.agents.efficientzero.reanalyse.Reanalyser` (target-network reanalysis),
and the sampled positions get the learner's new priorities. Self-play uses a copy of the
learner's network refreshed every ``selfplay_update_interval_updates`` updates (EZ: 100).

A run directory holds ``config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/step_*``
and, once finished, ``final/`` (the world model's weights, named by component:
``representation/``, ``dynamics/``, ``prediction/``, ``projection/``, with the architecture in
its ``meta.json``). Started again with the same directory a run resumes from its latest
checkpoint (learner, self-play network, replay, RNG states, counters); on a finished run it
does nothing, as :mod:`rltransfer.agents.r2d2.train` does.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from rltransfer.agents.efficientzero.actor import SearchPolicy, SelfPlayActor, discrete_actions
from rltransfer.agents.efficientzero.config import (
    RESUMABLE_ON_ANOTHER_BACKEND,
    EZTrainConfig,
    ez_env_kwargs,
    ez_net_config,
    importance_exponent_at,
    temperature_at,
)
from rltransfer.agents.efficientzero.learner import EfficientZeroLearner
from rltransfer.agents.efficientzero.networks import WorldModelConfig
from rltransfer.agents.efficientzero.reanalyse import Reanalyser
from rltransfer.agents.efficientzero.shared_space import GameAdapter, check_transfer_space
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.core.config import to_dict
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
from rltransfer.replay.game_segment import GameSegmentReplay

__all__ = ["MODEL_COMPONENTS", "EZRunResult", "EZTrainer", "RunConflictError",
           "train_efficientzero"]

MODEL_COMPONENTS = ("representation/", "dynamics/", "prediction/", "projection/")
"""Checkpoint tensor prefixes of the world model's components (h, g, f, SimSiam projection)."""

EZRunResult = RunResult
"""Kept for callers of earlier versions: :class:`rltransfer.core.run.RunResult`."""


class EZTrainer(TrainingLoop):
    """Owns the envs, learner, self-play network, replay and reanalyser of one run.

    Args:
        cfg: the run's config (see :class:`EZTrainConfig`).

    Raises:
        ConfigError: inconsistent config. RunConflictError: the run dir holds another run.
    """

    @closes_envs_on_failure
    def __init__(self, cfg: EZTrainConfig) -> None:
        cfg.validate()
        # Nothing is written to the run dir before the env and the rest are validated.
        self.open_run(cfg, ignore=RESUMABLE_ON_ANOTHER_BACKEND)
        self.open_pixel_envs(make_env, env_spec(cfg.env_id), self.env_kwargs())
        self.num_actions = discrete_actions(self.envs)
        self.adapter = GameAdapter.for_env(cfg.action_space, cfg.env_id, self.num_actions,
                                           self.frame_shape, self.frame_stack, cfg.pad_channels)
        self.net_obs_shape = self.adapter.obs_shape(self.frame_shape)
        self.net_config = self._net_config()
        self.learner = EfficientZeroLearner(cfg.learner, self.net_config, self.net_obs_shape,
                                            self.adapter.num_actions, device=cfg.device,
                                            seed=cfg.seed + 104_729,
                                            action_space=self.adapter.space)
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
            adapter=self.adapter,
        )
        # The acting half (the Ray backend's actors run the same SelfPlayActor).
        self.actor = SelfPlayActor(self.envs, self.selfplay_network, cfg, device=cfg.device,
                                   seed=cfg.seed + 7_919)
        self._selfplay_seconds = 0.0
        self.init_loop(LoopSchedule.from_config(
            cfg, ReplayRatio(cfg.updates_per_env_step, 1), cfg.learning_starts_env_steps,
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
            ActionSpaceMismatchError: ``dynamics`` or ``prediction`` from a model of another
                action union (when either side has a shared action space; games of one
                union share them, as XTRA transfers across games).
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
        check_transfer_space(self.learner.action_space, arch, self.cfg.transfer, str(ckpt))
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
            "action_space": self.adapter.space.to_json(),
            "net_obs_shape": list(self.net_obs_shape),
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
        policy = SearchPolicy(self.learner.network, self.cfg.mcts, self.adapter.num_actions,
                              device=self.cfg.device, deterministic=True, adapter=self.adapter)
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
        self.actor.begin(seed=self.cfg.seed + 31 * self.env_steps)
        self.replay.begin_stream()

    def warming_up(self) -> bool:
        """Whether self-play acts uniformly at random now (``random_warmup_actions`` and no
        learner update yet)."""
        return self.cfg.random_warmup_actions and self.num_updates == 0

    def collect_step(self, logger: MetricsLogger) -> None:
        """Self-play in this process: one :meth:`SelfPlayActor.step` written to replay."""
        tick = time.perf_counter()
        record, returns, lengths = self.actor.step(self.env_steps,
                                                   random_actions=self.warming_up())
        record.add_to(self.replay)
        self._log_episodes(logger, returns, lengths)
        self._selfplay_seconds += time.perf_counter() - tick

    def train_record_extras(self) -> dict[str, Any]:
        """Seconds spent in self-play and in learning, and the current temperature."""
        return {"selfplay_seconds": self._selfplay_seconds,
                "learn_seconds": self._learn_seconds,
                "temperature": temperature_at(self.cfg, self.env_steps)}

    def update(self) -> dict[str, float]:
        """One learner update from a reanalysed batch; priorities and networks refreshed
        (the self-play copy every ``selfplay_update_interval_updates`` updates)."""
        cfg = self.cfg
        batch = self.reanalyser.make_batch(
            self.learner.target_network, cfg.batch_size, self.rng,
            importance_exponent_at(cfg, self.env_steps),
        )
        result = self.learner.update(batch)
        if result.priorities is not None:  # always, for EfficientZero's prioritized replay
            self.replay.update_priorities(batch.indices, result.priorities)
        if (self.num_updates + 1) % cfg.selfplay_update_interval_updates == 0:
            self.selfplay_network.load_state_dict(self.learner.network.state_dict())
        return result.metrics


def train_efficientzero(cfg: EZTrainConfig) -> EZRunResult:
    """Build an :class:`EZTrainer` for ``cfg`` and run it to completion (resuming if possible)."""
    return EZTrainer(cfg).run()
