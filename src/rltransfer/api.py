"""The public Python API: ``import rltransfer`` re-exports what is defined or named here.

Configs (:class:`TrainConfig`, :class:`SACTrainConfig`, :class:`EZTrainConfig`), the training
entry points (:func:`train` accepts any :class:`~rltransfer.core.policy.Policy` as pi_p,
:func:`train_sac`, :func:`train_efficientzero`), :func:`load_policy`, :func:`evaluate` and the
recipes (:data:`RECIPES`, :func:`build_recipe`, :func:`run_recipe`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.agents.agent_policy import load_policy, resolve_checkpoint
from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.agents.r2d2.train import train_env_kwargs
from rltransfer.core.checkpoint import CheckpointError, read_meta
from rltransfer.core.config import ConfigError, from_dict
from rltransfer.core.policy import Policy
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy


def trained_env_settings(
    policy_path: str | Path, env_id: str | None, task: str | None
) -> tuple[str, dict[str, Any], int | None]:
    """The env to evaluate a saved R2D2 policy on: ``(env_id, make_env settings, frame_stack)``.

    On the env the policy was trained on (``env_id`` None or equal to it) the settings are the
    run's training env settings (:func:`rltransfer.agents.r2d2.train.train_env_kwargs` of the
    config in the
    checkpoint: sticky actions, episode cap, ...), to be passed through
    :func:`rltransfer.evaluation.protocol.eval_env_kwargs`; on another env only ``task``.
    ``task`` (if given) replaces the run's task. ``frame_stack`` is the checkpoint's.

    Raises:
        CheckpointError: no readable checkpoint there, or its config is unusable.
        ConfigError: the checkpoint does not name its env and ``env_id`` is None.
    """
    ckpt = resolve_checkpoint(policy_path)
    meta = read_meta(ckpt)
    arch = meta.get("architecture") or {}
    trained_on = arch.get("env_id")
    target = env_id or trained_on
    if target is None:
        raise ConfigError(f"{ckpt} does not say which env it was trained on; pass --env-id")
    settings: dict[str, Any] = {}
    config = meta.get("config")
    if target == trained_on and isinstance(config, dict):
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        try:
            cfg = from_dict(TrainConfig, {k: v for k, v in config.items() if k in known},
                            where=f"{ckpt}/meta.json config")
        except ConfigError as e:
            raise CheckpointError(f"{ckpt}: the run config in meta.json is unusable: {e}") from e
        settings = train_env_kwargs(cfg)
    if task is not None:
        settings["task"] = task
    stack = arch.get("frame_stack")
    return str(target), settings, None if stack is None else int(stack)


def evaluate(
    policy: str | Path | Policy,
    env_id: str | None = None,
    *,
    task: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    epsilon: float = 0.0,
    frame_stack: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Task returns of ``episodes`` evaluation episodes of a saved or in-memory policy.

    A saved policy (a run or checkpoint directory) is evaluated on its training env's
    settings (:func:`trained_env_settings`) through the evaluation protocol
    (:func:`~rltransfer.evaluation.protocol.eval_env_kwargs`: life-loss terminals and
    reward-free off, unclipped task reward), unless ``env_id`` names another env. A
    :class:`~rltransfer.core.policy.Policy` object needs ``env_id`` and is evaluated with
    ``env_kwargs`` (the training env's ``make_env`` settings) through the same protocol.

    Args:
        policy: run/checkpoint directory, or a Policy acting on stacked ``uint8[B, C*S, H, W]``.
        env_id: environment to evaluate on (``None``: the saved policy's own).
        task: task variant whose reward is summed (``None``: the run's).
        episodes: number of episodes (>= 1).
        seed: seed of the evaluation envs and of the policy's epsilon draws.
        epsilon: probability of a uniformly random action (saved policies only).
        frame_stack: frames per observation for a Policy object (``None``: suite default).
        env_kwargs: training env settings for a Policy object.

    Returns:
        ``float64[episodes]`` undiscounted task returns.

    Raises:
        ConfigError: ``episodes < 1``; a Policy object without ``env_id``.
        CheckpointError: an unreadable checkpoint.
        ValueError: the policy's action count differs from the env's.
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if isinstance(policy, (str, Path)):
        loaded = load_policy(policy, epsilon=epsilon, seed=seed)
        target, settings, stack = trained_env_settings(policy, env_id, task)
        return evaluate_policy(loaded, target, episodes, seed=seed, frame_stack=stack,
                               env_kwargs=eval_env_kwargs(settings))
    if env_id is None:
        raise ConfigError("evaluate(policy_object, ...) needs env_id")
    settings = dict(env_kwargs or {})
    if task is not None:
        settings["task"] = task
    return evaluate_policy(policy, env_id, episodes, seed=seed, frame_stack=frame_stack,
                           env_kwargs=eval_env_kwargs(settings))
