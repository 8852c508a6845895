"""The acting process of the Ray backend: one :class:`Collector` over its own vector env.

:class:`CollectorWorker` is a plain class (testable without Ray); :mod:`.pool` wraps it with
``ray.remote`` so each instance lives in its own process. It holds a copy of the learner's
agent whose online network (and the intrinsic reward's acting parts) are refreshed from named
numpy arrays (:func:`rltransfer.agents.r2d2.actor.acting_tensors`), as Ape-X / R2D2 actors copy the
learner's parameters periodically (Horgan et al. 2018; Kapturowski et al. 2019).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rltransfer.agents.agent_policy import load_policy
from rltransfer.agents.r2d2.actor import (
    Collector,
    StepBatch,
    acting_tensors,
    epsilon_at,
    load_acting_tensors,
    make_explorer,
    make_intrinsic,
)
from rltransfer.agents.r2d2.config import TrainConfig, policy_family
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.config import from_dict
from rltransfer.core.records import ArrayRecord
from rltransfer.envs import env_spec, make_env
from rltransfer.methods.behavior_transfer import PriorPolicyDriver, validate_prior


def actor_env_slice(num_envs: int, num_actors: int, actor_index: int) -> slice:
    """The global env indices ``[lo, hi)`` of actor ``actor_index``: ``num_envs`` envs split
    evenly over ``num_actors`` actors (actor ``k`` holds envs ``k*b .. (k+1)*b - 1``,
    ``b = num_envs / num_actors``).

    Raises:
        ValueError: ``num_actors < 1`` or ``num_envs`` not a multiple of ``num_actors``.
    """
    if num_actors < 1 or num_envs % num_actors != 0 or not 0 <= actor_index < num_actors:
        raise ValueError(
            f"num_envs={num_envs} must be a positive multiple of num_actors={num_actors} "
            f"(actor_index={actor_index}); set --num-envs to num_actors x envs per actor"
        )
    b = num_envs // num_actors
    return slice(actor_index * b, (actor_index + 1) * b)


def collect_chunk(
    step: Callable[[int], tuple[ArrayRecord, dict[str, np.ndarray]]], num_steps: int
) -> dict[str, np.ndarray]:
    """One actor chunk: ``T = num_steps`` vector steps, as the plain arrays the
    :class:`~rltransfer.distributed.pool.ActorPool` joins into a round.

    Args:
        step: ``step(t)`` plays vector step ``t`` in ``[0, T)`` and returns its record
            (``obs`` is copied: envs may reuse their buffer) and the ``episode_*`` arrays of
            the ``k_t`` episodes that ended on it (``{"episode_return": float64[k_t], ...}``,
            the same keys every step).
        num_steps: ``T``.

    Returns:
        The record's fields stacked time-major ``[T, b, ...]``, each ``episode_*`` array
        concatenated over the steps ``[k]``, and ``episode_step`` ``int64[k]`` (the step
        ``t`` each episode ended on).

    Raises:
        ValueError: ``num_steps < 1``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    records: list[ArrayRecord] = []
    episodes: dict[str, list[np.ndarray]] = {}
    at: list[np.ndarray] = []
    for t in range(num_steps):
        record, ended = step(t)
        record.own("obs")
        records.append(record)
        for key, value in ended.items():
            episodes.setdefault(key, []).append(value)
        at.append(np.full(len(next(iter(ended.values()))), t, dtype=np.int64))
    out = type(records[0]).stack(records).to_arrays()
    out.update({key: np.concatenate(values) for key, values in episodes.items()})
    out["episode_step"] = np.concatenate(at)
    return out


def actor_device(gpus_per_actor: float) -> str:
    """The torch device an actor acts on: ``cuda`` when Ray gave it a GPU fraction
    (``gpus_per_actor > 0``; Ray sets ``CUDA_VISIBLE_DEVICES`` for it), else ``cpu`` (the
    learner's ``device`` may be a GPU the actor process cannot see)."""
    return "cuda" if gpus_per_actor > 0 else "cpu"


class CollectorWorker:
    """One actor: a :class:`Collector` over envs ``actor_env_slice(...)`` of the run.

    Args:
        config: ``to_dict(TrainConfig)`` of the run (plain data; rebuilt with ``from_dict``).
        num_actors: ``N`` actors sharing ``config["num_envs"]`` envs.
        actor_index: ``k`` in ``[0, N)``; its envs get the Ape-X epsilons of global indices
            ``k*b .. (k+1)*b - 1`` (:func:`rltransfer.agents.r2d2.actor.epsilon_at`).
        env_seed: seed of this actor's envs (env ``i`` of the actor gets ``env_seed + i``).
        weights: :func:`rltransfer.agents.r2d2.actor.acting_tensors` of the learner (``None``: keep
            this copy's own initialisation, seeded by ``config["seed"]``).
        incarnation: how many times this actor slot was restarted (varies the RNG stream).

    Raises:
        ValueError / ConfigError: bad config; ``SpaceMismatchError`` for a prior that does
            not fit the env.
    """

    def __init__(self, config: dict[str, Any], num_actors: int, actor_index: int,
                 env_seed: int, weights: dict[str, np.ndarray] | None,
                 incarnation: int = 0) -> None:
        cfg = from_dict(TrainConfig, config)
        cfg = dataclasses.replace(cfg, device=actor_device(cfg.ray_gpus_per_actor))
        torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        self.actor_index = int(actor_index)
        envs_slice = actor_env_slice(cfg.num_envs, num_actors, actor_index)
        b = envs_slice.stop - envs_slice.start
        spec = env_spec(cfg.env_id)
        from rltransfer.agents.r2d2.train import train_env_kwargs  # the learner's env settings

        envs = make_env(cfg.env_id, b, env_seed, **train_env_kwargs(cfg))
        shape = envs.single_observation_space.shape
        assert shape is not None and len(shape) == 3, shape
        frame_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        frame_stack = cfg.frame_stack or spec.frame_stack
        obs_shape = (frame_shape[0] * frame_stack, frame_shape[1], frame_shape[2])
        num_env_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]
        rng = np.random.default_rng([cfg.seed, 1 + self.actor_index, incarnation])
        prior_driver = None
        if cfg.explore == "bt" and cfg.prior is not None:
            prior = load_policy(cfg.prior, epsilon=cfg.prior_epsilon,
                                seed=cfg.seed + 7_919 + 1_000 * (1 + self.actor_index)
                                + incarnation)
            validate_prior(prior, num_env_actions, obs_shape)
            prior_driver = PriorPolicyDriver(prior)
        use_extra = cfg.explore == "bt" and cfg.extra_action
        self.agent = R2D2Agent(cfg.agent, obs_shape=obs_shape, obs_scale=spec.obs_scale,
                               num_actions=num_env_actions + (1 if use_extra else 0),
                               device=cfg.device, num_env_actions=num_env_actions)
        self.agent.online.requires_grad_(False)
        intrinsic = make_intrinsic(cfg, frame_shape, spec.obs_scale, num_env_actions,
                                   num_envs=b)

        family = policy_family(cfg)  # NGU: env i of the run acts as policy j = i mod N

        def linear_epsilon(env_steps: int) -> np.ndarray:
            return epsilon_at(cfg, env_steps)[envs_slice]

        self.collector = Collector(
            envs, self.agent, make_explorer(cfg, num_env_actions, rng, envs_slice),
            frame_shape=frame_shape, frame_stack=frame_stack, rng=rng, intrinsic=intrinsic,
            intrinsic_scale=family.env_betas[envs_slice],
            policy_index=family.env_policy[envs_slice], prior_driver=prior_driver,
            epsilon_fn=linear_epsilon if cfg.epsilon_schedule == "linear" else None,
        )
        if weights is not None:
            load_acting_tensors(self.agent, intrinsic, weights)
        self.collector.begin(env_seed)

    def acting_tensors(self) -> dict[str, np.ndarray]:
        """This actor's current acting weights
        (:func:`rltransfer.agents.r2d2.actor.acting_tensors`)."""
        return acting_tensors(self.agent, self.collector.intrinsic)

    def pid(self) -> int:
        """The process id (tests kill it; the pool logs it)."""
        return os.getpid()

    def collect(self, num_steps: int, env_steps: int,
                weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Load ``weights`` if given, then step the envs ``num_steps`` times.

        Args:
            num_steps: ``T`` vector steps (``T * b`` env steps).
            env_steps: the run's env-step counter when this chunk starts (epsilon schedule).
            weights: new :func:`acting_tensors`, or ``None`` to keep acting with the current.

        Returns:
            Plain arrays: the :class:`StepBatch` fields stacked time-major ``[T, b, ...]``,
            and ``episode_return`` ``float64[k]``, ``episode_length`` ``int64[k]``,
            ``episode_intrinsic`` ``float64[k]``, ``episode_step`` ``int64[k]`` (the step
            ``t`` in ``[0, T)`` each episode ended on).

        Raises:
            ValueError: ``num_steps < 1``.
        """
        if weights is not None:
            load_acting_tensors(self.agent, self.collector.intrinsic, weights)

        def step(t: int) -> tuple[StepBatch, dict[str, np.ndarray]]:
            record, episodes = self.collector.step(env_steps + t * self.cfg.num_envs)
            return record, {"episode_return": episodes.returns,
                            "episode_length": episodes.lengths,
                            "episode_intrinsic": episodes.intrinsic}

        return collect_chunk(step, num_steps)

    def close(self) -> None:
        """Close the envs."""
        self.collector.close()
