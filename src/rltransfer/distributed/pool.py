"""The learner's side of the Ray backend: N actor processes feeding the learner's replay.

Design (simplest that keeps the learner fast and the replay unchanged):

* ``N`` Ray actors, each a separate process with its own vector env of
  ``b = num_envs / N`` envs (distinct seeds) and a copy of the learner's acting network. The
  actor class is the agent's: :class:`~rltransfer.distributed.worker.CollectorWorker` (R2D2 /
  Behavior Transfer / NGU: a :class:`~rltransfer.agents.r2d2.actor.Collector` with its explorer) or
  :class:`~rltransfer.distributed.selfplay.SelfPlayWorker` (EfficientZero: batched MCTS
  self-play). Both follow :class:`Worker`; the pool does not know which it drives.
* The learner asks every actor for a chunk of ``T`` vector steps (a *round*), then, while the
  actors already act on the next round, writes the received round into its own replay (the
  same replay over all ``num_envs`` envs as the local loop, so checkpoints are
  interchangeable between backends) and does its updates. Chunks travel as numpy arrays
  through Ray's shared-memory object store.
* Weights: the learner puts its acting tensors (named CPU numpy arrays, never a pickled
  module: R2D2's ``online/<param>``, EfficientZero's ``<component>/<param>``) into the object
  store once and attaches the reference to the next round's requests.
* Failure: an actor whose chunk raises (process killed, exception in the env or network) is
  logged, killed if still alive, and restarted with a fresh env (new seed) and the current
  weights. The round it belonged to is dropped (the learner starts new replay streams there,
  as on resume); the learner never crashes on it. An actor slot failing
  ``max_consecutive_failures`` times in a row raises :class:`ActorFailureError` (a broken
  config, not bad luck).
* Cluster: :func:`init_ray` joins the Ray cluster at ``--ray-address`` (or ``RAY_ADDRESS``),
  or starts a local Ray instance when neither is set; each actor asks Ray for
  :class:`ActorResources` (1 CPU, no GPU by default).

Env steps are counted when a round reaches replay; steps of a dropped round are not counted.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rltransfer.distributed.worker import actor_env_slice
from rltransfer.errors import UserError

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"
"""The environment variable an unset ``--ray-address`` falls back to (Ray's own name)."""


class ActorFailureError(RuntimeError):
    """An actor slot kept failing right after restarts (the error names the cause)."""


class RayClusterError(UserError):
    """The Ray cluster named by ``--ray-address`` / ``RAY_ADDRESS`` cannot be joined, or
    cannot give the resources the run asks for (one line: the address and what to do)."""


class Worker(Protocol):
    """What :class:`ActorPool` drives in each actor process.

    Constructed as ``cls(config, num_actors, actor_index, env_seed, weights, incarnation)``
    with ``config`` the run's config as plain data; ``collect(num_steps, env_steps, weights,
    **options)`` returns a chunk: time-major arrays ``[T, b, ...]`` and finished-episode
    arrays ``[k]`` whose names start with ``episode_``.
    """

    def collect(self, num_steps: int, env_steps: int,
                weights: dict[str, np.ndarray] | None = None,
                **options: Any) -> dict[str, np.ndarray]: ...

    def pid(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ActorResources:
    """What each actor asks the Ray scheduler for.

    Attributes:
        num_cpus: logical CPUs per actor (default 1: one process stepping its envs with one
            torch thread).
        num_gpus: GPU fraction per actor (default 0: actors act on the CPU). With a fraction
            ``> 0`` Ray gives the actor a share of one GPU and the actor's network runs on
            ``cuda``.
        learner_gpus: GPU share the learner (this driver process, which Ray does not
            schedule) reserves on its own node so that GPU actors leave it that share
            (default 0: nothing reserved). Only meaningful when actors use GPUs on the
            learner's node.

    Raises:
        ValueError: a negative amount, or ``num_cpus == 0``.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    learner_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.num_cpus <= 0 or self.num_gpus < 0 or self.learner_gpus < 0:
            raise ValueError(f"actor resources must be cpus > 0 and gpus >= 0, got {self}")


@dataclass
class Round:
    """One round from all actors, in global env order.

    Attributes:
        steps: the chunks' time-major arrays joined on the env axis, ``[T, num_envs, ...]``.
        episodes: the ``episode_*`` arrays ``[k]`` of all actors; ``episode_step`` (int64) is
            the step ``t`` of the round each episode ended on.
    """

    steps: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray]

    @property
    def num_steps(self) -> int:
        """``T``, vector steps in the round."""
        return int(next(iter(self.steps.values())).shape[0])

    def ended_at(self, t: int) -> dict[str, np.ndarray]:
        """The ``episode_*`` arrays of the episodes that ended on step ``t``."""
        mask = self.episodes["episode_step"] == t
        return {k: v[mask] for k, v in self.episodes.items()}


def join_chunks(chunks: list[dict[str, np.ndarray]]) -> Round:
    """Join actor chunks (actor order = global env order) into one :class:`Round`: step
    arrays on axis 1 (the env axis of ``[T, b, ...]``), ``episode_*`` arrays on axis 0.

    Raises:
        ValueError: no chunks, or chunks with different keys.
    """
    if not chunks or any(c.keys() != chunks[0].keys() for c in chunks):
        raise ValueError("join_chunks needs at least one chunk, all with the same keys")
    steps = {k: np.concatenate([c[k] for c in chunks], axis=1)
             for k in chunks[0] if not k.startswith("episode_")}
    episodes = {k: np.concatenate([c[k] for c in chunks], axis=0)
                for k in chunks[0] if k.startswith("episode_")}
    return Round(steps=steps, episodes=episodes)


def resolve_ray_address(address: str | None) -> str | None:
    """The Ray cluster to join: ``address`` (``--ray-address``) if set, else the
    ``RAY_ADDRESS`` environment variable if set and not empty, else ``None`` (a local Ray
    instance). ``"local"`` also means a local instance."""
    if address:
        return None if address == "local" else address
    env = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    return None if env in ("", "local") else env


def _cluster_error(address: str, reason: str) -> RayClusterError:
    reason = " ".join(reason.split())[:200]
    return RayClusterError(
        f"cannot join the Ray cluster at {address!r} ({reason}); start one there with "
        "`ray start --head --port=PORT` and pass --ray-address HOST:PORT (or RAY_ADDRESS), "
        "or unset both to run a local Ray instance"
    )


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when a ``HOST:PORT`` (or ``ray://HOST:PORT``) address accepts no TCP
    connection; ``"auto"`` (Ray finds the cluster started on this machine) is left to Ray.

    Raises:
        RayClusterError: malformed address or nothing listening there.
    """
    if address == "auto":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise _cluster_error(address, "expected HOST:PORT, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise _cluster_error(address, f"{type(e).__name__}: {e}") from e


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray if it is not connected yet: join the cluster at
    :func:`resolve_ray_address` ``(address)``, or start a local instance (local resources
    only, no dashboard, no usage reporting) when there is none. Returns True when this call
    connected (the caller shuts it down).

    Args:
        address: ``HOST:PORT`` of a running cluster's head (``ray start --head``), ``"auto"``,
            a Ray client ``ray://HOST:PORT``, or ``None`` (``RAY_ADDRESS``, else local).
        num_cpus: logical CPUs a local instance schedules on (default: the machine's count);
            a joined cluster keeps its own.

    Raises:
        RayClusterError: the cluster cannot be reached or joined.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    resolved = resolve_ray_address(address)
    if resolved is None:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 include_dashboard=False, configure_logging=False, log_to_driver=True)
        return True
    check_reachable(resolved)
    try:
        ray.init(address=resolved, configure_logging=False, log_to_driver=True)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError,
            ray.exceptions.RayError) as e:
        reason = f"{type(e).__name__}: {e}"
        if isinstance(e, ray.exceptions.AuthenticationError):
            reason = ("the cluster uses token authentication: run with RAY_AUTH_MODE=token and "
                      "its token in RAY_AUTH_TOKEN or ~/.ray/auth_token")
        raise _cluster_error(resolved, reason) from e
    log.info("joined the Ray cluster at %s (%s)", resolved, ray.cluster_resources())
    return True


class ActorPool:
    """``num_actors`` Ray actors collecting for one learner (see the module docstring).

    Args:
        worker_cls: the actor class (a :class:`Worker`).
        config: the run's config as plain data (``to_dict``), passed to every actor.
        num_actors: ``N`` (``config["num_envs"]`` must be a multiple of it).
        chunk_steps: ``T``, vector steps per actor per round.
        weights: initial acting tensors (named numpy arrays).
        seed: base env seed; actor ``k`` (incarnation ``i``) seeds its envs with
            ``seed + k*b + 7_919_993*i``, so a restarted actor gets fresh episodes.
        address: Ray cluster to join (see :func:`init_ray`; ``None``: ``RAY_ADDRESS``, else
            a local instance).
        resources: what each actor asks Ray for.
        max_consecutive_failures: failures in a row of one slot before giving up.

    Raises:
        ValueError: bad counts (see :func:`actor_env_slice`).
        RayClusterError: the cluster cannot be joined, or has fewer CPUs / GPUs than
            ``num_actors`` actors (and the learner's reservation) ask for.
    """

    def __init__(self, worker_cls: type, config: dict[str, Any], num_actors: int,
                 chunk_steps: int, weights: dict[str, np.ndarray], *, seed: int,
                 address: str | None = None, resources: ActorResources | None = None,
                 max_consecutive_failures: int = 3) -> None:
        import ray

        if chunk_steps < 1:
            raise ValueError(f"chunk steps per actor must be >= 1, got {chunk_steps}")
        actor_env_slice(int(config["num_envs"]), num_actors, 0)  # validates the split
        self._ray = ray
        self.resources = resources or ActorResources()
        self.num_actors = int(num_actors)
        self.handles: list[Any] = []
        self._reservation: Any = None
        local_cpus = math.ceil(self.num_actors * self.resources.num_cpus)
        self.owns_ray = init_ray(address, max(local_cpus, os.cpu_count() or 1))
        try:
            self._check_capacity()
            self.config = config
            self.chunk_steps = int(chunk_steps)
            self.envs_per_actor = int(config["num_envs"]) // self.num_actors
            self.seed = int(seed)
            self.max_consecutive_failures = int(max_consecutive_failures)
            self.restarts = 0
            self.incarnation = [0] * self.num_actors
            self.failures_in_row = [0] * self.num_actors
            self._reserve_learner_gpus()
            self._remote_cls: Any = ray.remote(
                num_cpus=self.resources.num_cpus, num_gpus=self.resources.num_gpus,
                max_restarts=0)(worker_cls)
            self._weights_ref = ray.put(weights)
            self.handles = [self._spawn(k) for k in range(self.num_actors)]
            self._pending: list[Any] = []
        except BaseException:
            self.close()
            raise

    def _check_capacity(self) -> None:
        """A cluster that can never place all actors would leave them pending forever."""
        total = self._ray.cluster_resources()
        r = self.resources
        need = {"CPU": r.num_cpus * self.num_actors,
                "GPU": r.num_gpus * self.num_actors + r.learner_gpus}
        per_actor = {"CPU": r.num_cpus, "GPU": r.num_gpus}
        for kind, amount in need.items():
            have = float(total.get(kind, 0.0))
            if amount > have + 1e-9:
                learner = (f" + {r.learner_gpus:g} for the learner"
                           if kind == "GPU" and r.learner_gpus else "")
                raise RayClusterError(
                    f"{self.num_actors} actors x {per_actor[kind]:g} {kind}{learner} need "
                    f"{amount:g} {kind} but the Ray cluster has {have:g}; lower --num-actors "
                    "or the per-actor resources, or add nodes to the cluster"
                )

    def _reserve_learner_gpus(self) -> None:
        """Hold ``learner_gpus`` of a GPU on this node with a resource-only actor."""
        if self.resources.learner_gpus <= 0:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self._ray.get_runtime_context().get_node_id()

        class LearnerGPUReservation:
            def ready(self) -> bool:
                return True

        cls = self._ray.remote(num_cpus=0, num_gpus=self.resources.learner_gpus)(
            LearnerGPUReservation)
        self._reservation = cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
        try:
            self._ray.get(self._reservation.ready.remote(), timeout=60)
        except self._ray.exceptions.GetTimeoutError as e:
            raise RayClusterError(
                f"the learner's node has no free {self.resources.learner_gpus:g} GPU to "
                "reserve (--ray-learner-gpus); set it to 0 or run the learner on a GPU node"
            ) from e

    def _spawn(self, k: int) -> Any:
        env_seed = (self.seed + k * self.envs_per_actor + 7_919_993 * self.incarnation[k])
        return self._remote_cls.remote(self.config, self.num_actors, k, env_seed,
                                       self._weights_ref, self.incarnation[k])

    def request(self, env_steps: int, weights: dict[str, np.ndarray] | None = None,
                **options: Any) -> None:
        """Ask every actor for its next chunk (non-blocking); ``weights`` (new acting
        tensors) are loaded by each actor before it steps; ``options`` go to the worker's
        ``collect`` (e.g. EfficientZero's ``random_actions``)."""
        ref = None
        if weights is not None:
            self._weights_ref = self._ray.put(weights)
            ref = self._weights_ref
        self._pending = [h.collect.remote(self.chunk_steps, env_steps, ref, **options)
                         for h in self.handles]

    def gather(self) -> Round | None:
        """Wait for the requested round. Returns it, or ``None`` when an actor failed (it is
        restarted with the latest weights; the caller must start new replay streams).

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
        return join_chunks(chunks)

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
        """Kill the actors (and the learner's GPU reservation), and disconnect from Ray if
        this pool connected (a joined cluster keeps running; a local instance stops)."""
        for h in [*self.handles, self._reservation]:
            if h is None:
                continue
            try:
                self._ray.kill(h, no_restart=True)
            except Exception:  # already gone is fine
                pass
        self.handles = []
        self._reservation = None
        self._pending = []
        if self.owns_ray:
            self._ray.shutdown()
