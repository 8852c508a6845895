"""EfficientZero self-play on Ray: actors search with a synced copy of the self-play network
and send game steps to the learner's :class:`~rltransfer.replay.game_segment.GameSegmentReplay`.

The same :class:`~rltransfer.distributed.pool.ActorPool` as R2D2's actors drives them
(rounds of ``T`` vector steps, weights as named numpy arrays, restart of a dead actor); only
the worker differs. Each :class:`SelfPlayWorker` runs the local loop's acting code, a
:class:`~rltransfer.agents.efficientzero.actor.SelfPlayActor`, over ``b = num_envs / N`` games
(one batched search per step, root Dirichlet noise, the temperature schedule of the run's
env-step counter; Ye et al. 2021; the public EfficientZero runs its self-play workers as Ray
actors the same way, with the learner's weights pulled periodically).

Weights are the self-play network's ``state_dict`` named by component
(``representation/<name>``, ``dynamics/<name>``, ``prediction/<name>``, ``projection/<name>``,
the names of the checkpoints). The learner sends them when its own self-play copy is
refreshed (every ``selfplay_update_interval_updates`` updates), so actors act with the same
network as the local loop, one round later at most. Likewise the random warm-up actions
(``random_warmup_actions``) stop with the first request after the first update.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rltransfer.agents.efficientzero.actor import (
    SelfPlayActor,
    SelfPlayStep,
    discrete_actions,
    load_selfplay_tensors,
    selfplay_tensors,
)
from rltransfer.agents.efficientzero.config import EZTrainConfig, ez_env_kwargs, ez_net_config
from rltransfer.agents.efficientzero.networks import EfficientZeroNet
from rltransfer.agents.efficientzero.shared_space import GameAdapter
from rltransfer.core.config import from_dict, to_dict
from rltransfer.distributed.worker import actor_device, actor_env_slice, collect_chunk
from rltransfer.envs import env_spec, make_env

if TYPE_CHECKING:
    from rltransfer.agents.efficientzero.train import EZTrainer
    from rltransfer.core.metrics import MetricsLogger
    from rltransfer.core.progress import RunProgress


class SelfPlayWorker:
    """One EfficientZero self-play actor over games ``actor_env_slice(...)`` of the run: a
    :class:`~rltransfer.agents.efficientzero.actor.SelfPlayActor` with its own copy of the
    self-play network.

    Args:
        config: ``to_dict(EZTrainConfig)`` of the run.
        num_actors: ``N`` actors sharing ``config["num_envs"]`` games.
        actor_index: ``k`` in ``[0, N)``.
        env_seed: seed of this actor's envs (env ``i`` of the actor gets ``env_seed + i``).
        weights: :func:`selfplay_tensors` of the learner's self-play network (``None``: keep
            this copy's initialisation).
        incarnation: restarts of this actor slot so far (varies the search's RNG stream).

    Raises:
        ConfigError: bad config. ValueError: bad actor counts.
    """

    def __init__(self, config: dict[str, Any], num_actors: int, actor_index: int,
                 env_seed: int, weights: dict[str, np.ndarray] | None,
                 incarnation: int = 0) -> None:
        cfg = from_dict(EZTrainConfig, config)
        torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        device = actor_device(cfg.ray_gpus_per_actor)
        envs_slice = actor_env_slice(cfg.num_envs, num_actors, actor_index)
        b = envs_slice.stop - envs_slice.start
        envs = make_env(cfg.env_id, b, env_seed, **ez_env_kwargs(cfg))
        shape = envs.single_observation_space.shape
        assert shape is not None and len(shape) == 3, shape
        frame_stack = cfg.frame_stack or env_spec(cfg.env_id).frame_stack
        frame_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        # The run's action space (a shared one pads channels and widens the network).
        adapter = GameAdapter.for_env(cfg.action_space, cfg.env_id, discrete_actions(envs),
                                      frame_shape, frame_stack, cfg.pad_channels)
        torch.manual_seed(cfg.seed + 1_000 * (1 + actor_index) + incarnation)
        network = EfficientZeroNet(ez_net_config(cfg), adapter.obs_shape(frame_shape),
                                   adapter.num_actions)
        network.to(device).eval().requires_grad_(False)
        if weights is not None:
            load_selfplay_tensors(network, weights)
        self.actor = SelfPlayActor(
            envs, network, cfg, device=device,
            seed=int(np.random.SeedSequence([cfg.seed, 7_919, 1 + actor_index, incarnation])
                     .generate_state(1)[0]),
        )
        self.actor.begin(env_seed)

    @property
    def network(self) -> EfficientZeroNet:
        """This actor's copy of the self-play network."""
        return self.actor.network

    def pid(self) -> int:
        """The process id (tests kill it)."""
        return os.getpid()

    def collect(self, num_steps: int, env_steps: int,
                weights: dict[str, np.ndarray] | None = None, *,
                random_actions: bool = False) -> dict[str, np.ndarray]:
        """Load ``weights`` if given, then play ``num_steps`` vector steps.

        Args:
            num_steps: ``T`` vector steps (``T * b`` env steps).
            env_steps: the run's env-step counter when this chunk starts (temperature).
            weights: new :func:`selfplay_tensors`, or ``None`` to keep the current network.
            random_actions: act uniformly without a search (the run's warm-up before the
                first update; uniform policy targets, root values 0).

        Returns:
            Time-major ``[T, b, ...]`` arrays, the fields of
            :class:`~rltransfer.agents.efficientzero.actor.SelfPlayStep` (the arguments of
            ``GameSegmentReplay.add``): ``obs`` (uint8 frames), ``actions`` int64,
            ``reward`` float64 (the learner's, clipped if ``clip_rewards``), ``terminated`` /
            ``truncated`` bool, ``root_values`` float32, ``policy`` float32 ``[T, b, A]``;
            and per finished episode ``episode_return`` float64 (game reward),
            ``episode_length`` int64, ``episode_step`` int64 (the step ``t`` it ended on).

        Raises:
            ValueError: ``num_steps < 1``.
        """
        if weights is not None:
            load_selfplay_tensors(self.actor.network, weights)

        def step(t: int) -> tuple[SelfPlayStep, dict[str, np.ndarray]]:
            record, returns, lengths = self.actor.step(env_steps + t * self.cfg.num_envs,
                                                       random_actions=random_actions)
            return record, {"episode_return": returns, "episode_length": lengths}

        return collect_chunk(step, num_steps)

    def close(self) -> None:
        """Close the envs."""
        self.actor.close()


def selfplay_on_ray(trainer: EZTrainer, logger: MetricsLogger, progress: RunProgress) -> None:
    """The Ray loop of an :class:`~rltransfer.agents.efficientzero.train.EZTrainer`: while the
    actors play round ``k+1``, the learner writes round ``k`` into its replay step by step,
    learning, checkpointing and evaluating after each vector step exactly as the local loop
    does.

    A round lost to a dead actor is dropped (the actor is restarted with the current
    self-play weights and new games; replay starts new game streams there) and logged as an
    ``actors`` record with the restart count.
    """
    from rltransfer.distributed.pool import ActorPool, ActorResources

    cfg = trainer.cfg
    if trainer.env_steps >= cfg.total_env_steps:
        return
    trainer.replay.begin_stream()
    interval = cfg.selfplay_update_interval_updates
    pool = ActorPool(
        SelfPlayWorker, to_dict(cfg), cfg.num_actors, cfg.actor_chunk_steps,
        selfplay_tensors(trainer.selfplay_network), seed=cfg.seed + 31 * trainer.env_steps,
        address=cfg.ray_address,
        resources=ActorResources(cfg.ray_cpus_per_actor, cfg.ray_gpus_per_actor,
                                 cfg.ray_learner_gpus),
    )

    round_env_steps = cfg.actor_chunk_steps * cfg.num_envs
    synced = trainer.num_updates // interval
    try:
        pool.request(trainer.env_steps, random_actions=trainer.warming_up())
        while trainer.env_steps < cfg.total_env_steps:
            tick = time.perf_counter()
            got = pool.gather()
            trainer._selfplay_seconds += time.perf_counter() - tick  # waiting for actors
            weights = None
            if got is None or trainer.num_updates // interval != synced:
                weights = selfplay_tensors(trainer.selfplay_network)
                synced = trainer.num_updates // interval
            if got is None:  # an actor failed and was restarted: its round is dropped
                logger.log("actors", trainer.env_steps, restarts=pool.restarts)
                trainer.replay.begin_stream()
                pool.request(trainer.env_steps, weights, random_actions=trainer.warming_up())
                continue
            if trainer.env_steps + round_env_steps < cfg.total_env_steps:
                pool.request(trainer.env_steps + round_env_steps, weights,
                             random_actions=trainer.warming_up())
            steps = SelfPlayStep.from_arrays(got.steps)
            for t in range(got.num_steps):
                if trainer.env_steps >= cfg.total_env_steps:
                    break
                steps.at(t).add_to(trainer.replay)
                ended = got.ended_at(t)
                trainer._log_episodes(logger, ended["episode_return"], ended["episode_length"])
                trainer.env_steps += cfg.num_envs
                trainer._after_env_steps(logger, progress)
    finally:
        pool.close()


__all__ = ["SelfPlayWorker", "load_selfplay_tensors", "selfplay_on_ray", "selfplay_tensors"]
