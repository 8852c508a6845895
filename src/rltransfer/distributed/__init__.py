"""Distributed acting on Ray: N actor processes feed one learner's replay.

R2D2 / Behavior Transfer actors run the same :class:`~rltransfer.agents.r2d2.actor.Collector` as the
local loop (:class:`CollectorWorker`, ``TrainConfig.backend="ray"``); EfficientZero actors run
batched MCTS self-play (:class:`~rltransfer.distributed.selfplay.SelfPlayWorker`,
``EZTrainConfig.backend="ray"``). One :class:`ActorPool` drives either. See
:mod:`rltransfer.distributed.pool` for the design (joining a cluster, rounds of ``T`` steps
per actor, weights as named numpy arrays, restart of failed actors).
"""

from rltransfer.distributed.pool import (
    ActorFailureError,
    ActorPool,
    ActorResources,
    RayClusterError,
    Round,
    init_ray,
    join_chunks,
    resolve_ray_address,
)
from rltransfer.distributed.worker import CollectorWorker, actor_device, actor_env_slice

__all__ = [
    "ActorFailureError",
    "ActorPool",
    "ActorResources",
    "CollectorWorker",
    "RayClusterError",
    "Round",
    "actor_device",
    "actor_env_slice",
    "init_ray",
    "join_chunks",
    "resolve_ray_address",
]
