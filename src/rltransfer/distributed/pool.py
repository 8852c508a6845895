"""The learner's side of the Ray backend: N actor processes feeding the learner's replay.

Design (simplest that keeps the learner fast and the replay unchanged):

* ``N`` Ray actors (:class:`~rltransfer.distributed.worker.CollectorWorker`), each a separate
  process with its own vector env of ``b = num_envs / N`` envs (distinct seeds), its own
  explorer (Ape-X epsilons of its global env indices) and a copy of the learner's online
  network.
* The learner asks every actor for a chunk of ``T`` vector steps (a *round*), then, while the
  actors already act on the next round, writes the received round into its own replay (the
  same :class:`TransitionReplay` / :class:`SequenceReplay` over all ``num_envs`` envs as the
  local loop, so checkpoints are interchangeable between backends) and does its updates.
  Chunks travel as numpy arrays through Ray's shared-memory object store.
* Weights: every ``sync_period_updates`` updates the learner puts
  :func:`~rltransfer.collector.acting_tensors` (named CPU numpy arrays, never a pickled
  module) into the object store once and attaches the reference to the next round's requests.
* Failure: an actor whose chunk raises (process killed, exception in the env or network) is
  logged, killed if still alive, and restarted with a fresh env (new seed) and the current
  weights. The round it belonged to is dropped (the learner calls ``replay.begin_stream()``:
  every env's stream restarts there, as on resume); the learner never crashes on it. An actor
  slot failing ``max_consecutive_failures`` times in a row raises :class:`ActorFailureError`
  (a broken config, not bad luck).

Env steps are counted when a round reaches replay; steps of a dropped round are not counted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rltransfer.collector import StepBatch
from rltransfer.distributed.worker import CollectorWorker, actor_env_slice

log = logging.getLogger(__name__)


class ActorFailureError(RuntimeError):
    """An actor slot kept failing right after restarts (the error names the cause)."""


@dataclass
class Round:
    """One round from all actors, in global env order.

    Attributes:
        steps: time-major :class:`StepBatch` ``[T, num_envs, ...]``.
        episode_return / episode_length / episode_intrinsic: ``[k]`` finished episodes.
        episode_step: ``int64[k]`` the step ``t`` of the round each episode ended on.
    """

    steps: StepBatch
    episode_return: np.ndarray
    episode_length: np.ndarray
    episode_intrinsic: np.ndarray
    episode_step: np.ndarray


def init_ray(num_cpus: int | None = None) -> bool:
    """Start a local Ray instance if none is running: local resources only, no dashboard,
    no usage reporting. Returns True when this call started it (the caller shuts it down).

    Args:
        num_cpus: logical CPUs Ray schedules on (default: the machine's count).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
             include_dashboard=False, configure_logging=False, log_to_driver=True)
    return True


class ActorPool:
    """``num_actors`` Ray actors collecting for one learner (see the module docstring).

    Args:
        config: ``to_dict(TrainConfig)`` of the run.
        num_actors: ``N`` (``config["num_envs"]`` must be a multiple of it).
        chunk_steps: ``T``, vector steps per actor per round.
        weights: initial :func:`~rltransfer.collector.acting_tensors`.
        seed: base env seed; actor ``k`` (incarnation ``i``) seeds its envs with
            ``seed + k*b + 7_919_993*i``, so a restarted actor gets fresh episodes.
        max_consecutive_failures: failures in a row of one slot before giving up.

    Raises:
        ValueError: bad counts (see :func:`actor_env_slice`).
    """

    def __init__(self, config: dict[str, Any], num_actors: int, chunk_steps: int,
                 weights: dict[str, np.ndarray], *, seed: int,
                 max_consecutive_failures: int = 3) -> None:
        import ray

        if chunk_steps < 1:
            raise ValueError(f"chunk steps per actor must be >= 1, got {chunk_steps}")
        actor_env_slice(int(config["num_envs"]), num_actors, 0)  # validates the split
        self._ray = ray
        self.owns_ray = init_ray(max(num_actors, os.cpu_count() or 1))
        self.config = config
        self.num_actors = int(num_actors)
        self.chunk_steps = int(chunk_steps)
        self.envs_per_actor = int(config["num_envs"]) // self.num_actors
        self.seed = int(seed)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.restarts = 0
        self.incarnation = [0] * self.num_actors
        self.failures_in_row = [0] * self.num_actors
        self._remote_cls = ray.remote(num_cpus=1, max_restarts=0)(CollectorWorker)
        self._weights_ref = ray.put(weights)
        self.handles = [self._spawn(k) for k in range(self.num_actors)]
        self._pending: list[Any] = []

    def _spawn(self, k: int) -> Any:
        env_seed = (self.seed + k * self.envs_per_actor + 7_919_993 * self.incarnation[k])
        return self._remote_cls.remote(self.config, self.num_actors, k, env_seed,
                                       self._weights_ref, self.incarnation[k])

    def request(self, env_steps: int, weights: dict[str, np.ndarray] | None = None) -> None:
        """Ask every actor for its next chunk (non-blocking); ``weights`` (new acting
        tensors) are loaded by each actor before it steps."""
        ref = None
        if weights is not None:
            self._weights_ref = self._ray.put(weights)
            ref = self._weights_ref
        self._pending = [h.collect.remote(self.chunk_steps, env_steps, ref)
                         for h in self.handles]

    def gather(self) -> Round | None:
        """Wait for the requested round. Returns it, or ``None`` when an actor failed (it is
        restarted with the latest weights; the caller must call ``replay.begin_stream()``).

        Raises:
            RuntimeError: no round was requested.
            ActorFailureError: an actor failed ``max_consecutive_failures`` times in a row.
        """
        if not self._pending:
            raise RuntimeError("ActorPool.gather without a pending request")
        pending, self._pending = self._pending, []
        chunks: list[dict[str, np.ndarray]] = []
        failed: list[tuple[int, BaseException]] = []
        for k, ref in enumerate(pending):
            try:
                chunks.append(self._ray.get(ref))
                self.failures_in_row[k] = 0
            except self._ray.exceptions.RayError as e:
                failed.append((k, e))
        if failed:
            for k, error in failed:
                self._restart(k, error)
            return None
        steps = StepBatch.concat_envs([StepBatch.from_arrays(c) for c in chunks], axis=1)
        return Round(
            steps=steps,
            episode_return=np.concatenate([c["episode_return"] for c in chunks]),
            episode_length=np.concatenate([c["episode_length"] for c in chunks]),
            episode_intrinsic=np.concatenate([c["episode_intrinsic"] for c in chunks]),
            episode_step=np.concatenate([c["episode_step"] for c in chunks]),
        )

    def _restart(self, k: int, error: BaseException) -> None:
        self.failures_in_row[k] += 1
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        if self.failures_in_row[k] > self.max_consecutive_failures:
            raise ActorFailureError(
                f"actor {k} failed {self.failures_in_row[k]} times in a row; last error: "
                f"{type(error).__name__}: {first_line}. Check the config with --backend local."
            ) from error
        log.warning("actor %d failed (%s: %s); restarting it with a fresh env", k,
                    type(error).__name__, first_line)
        try:
            self._ray.kill(self.handles[k], no_restart=True)
        except Exception:  # already gone is fine
            pass
        self.incarnation[k] += 1
        self.restarts += 1
        self.handles[k] = self._spawn(k)

    def kill_actor(self, k: int) -> None:
        """Kill actor ``k``'s process now (fault injection for tests and drills); the pool
        notices at the next :meth:`gather` and restarts it."""
        self._ray.kill(self.handles[k], no_restart=True)

    def close(self) -> None:
        """Kill the actors, and shut Ray down if this pool started it."""
        for h in self.handles:
            try:
                self._ray.kill(h, no_restart=True)
            except Exception:  # already gone is fine
                pass
        self.handles = []
        self._pending = []
        if self.owns_ray:
            self._ray.shutdown()
