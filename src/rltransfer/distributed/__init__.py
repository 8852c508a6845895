"""Distributed acting on Ray: N actor processes run the same :class:`~rltransfer.collector.
Collector` as the local loop and feed one learner's replay (``TrainConfig.backend="ray"``).

See :mod:`rltransfer.distributed.pool` for the design (rounds of ``T`` steps per actor,
weights as named numpy arrays, restart of failed actors).
"""

from rltransfer.distributed.pool import ActorFailureError, ActorPool, Round, init_ray
from rltransfer.distributed.worker import CollectorWorker, actor_env_slice

__all__ = [
    "ActorFailureError",
    "ActorPool",
    "CollectorWorker",
    "Round",
    "actor_env_slice",
    "init_ray",
]
