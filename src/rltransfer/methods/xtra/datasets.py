"""Offline datasets from finished EfficientZero runs (XTRA's pretraining data, Xu et al. 2023
Sec. 3.1: "a fixed dataset ... of trajectories from an unknown behavior policy").

A run trained with ``checkpoint_replay=True`` saves its
:class:`~rltransfer.replay.game_segment.GameSegmentReplay` under ``replay/`` in every
checkpoint; :func:`dataset_from_efficientzero_run` turns the latest one into an
:class:`~rltransfer.replay.offline.OfflineDataset` (the run directory is only read).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from rltransfer.agents.efficientzero.config import EZTrainConfig, ez_env_kwargs
from rltransfer.core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from rltransfer.envs.shared_actions import action_space_for
from rltransfer.replay.offline import (
    OfflineDataset,
    OfflineDatasetError,
    dataset_from_game_segments,
)

__all__ = ["ENV_SETTINGS", "dataset_from_efficientzero_run"]

ENV_SETTINGS = ("frame_size", "grayscale", "sticky_action_prob", "terminal_on_life_loss",
                "max_episode_frames")
"""The :class:`EZTrainConfig` fields that shape the training env (:func:`ez_env_kwargs`)."""


def dataset_from_efficientzero_run(path: str | Path) -> OfflineDataset:
    """The offline dataset of a finished (or running) EfficientZero run: the complete
    episodes of the replay saved in its latest checkpoint (``checkpoint_replay=True``).

    Rewards are those the learner saw (sign-clipped when the run clipped them; an episode
    ends at a life loss when the run used ``terminal_on_life_loss``); both are recorded in
    ``info``, and so are the run's training-env settings (``info["env_kwargs"]``,
    :func:`~rltransfer.agents.efficientzero.config.ez_env_kwargs`: frame size, grayscale,
    sticky actions, life-loss terminals, episode cap), so that the offline stages evaluate on
    the env the data came from (Atari: EfficientZero's 96x96 RGB, not the suite's 84x84 gray).
    Steps of the uniform warm-up (``random_warmup_actions``: acting without a search
    until the first update) get ``search_mask`` False, conservatively: the first update comes
    ``ceil(1 / updates_per_env_step)`` env steps or less after ``learning_starts_env_steps``
    (``warmup_env_steps`` in runs from before its rename), and one
    more vector step is masked as slack (``info["no_search_before_env_step"]``).

    Args:
        path: the run directory (its ``checkpoints/`` latest) or one checkpoint directory.

    Raises:
        CheckpointError: no readable checkpoint there.
        OfflineDatasetError: not an EfficientZero run, or its checkpoint holds no replay.
    """
    root = Path(path)
    ckpt = latest_checkpoint(root / "checkpoints") if (root / "checkpoints").is_dir() else root
    if ckpt is None:
        raise CheckpointError(f"{root} has no checkpoint under checkpoints/")
    tensors, meta = load_checkpoint(ckpt)
    arch = meta.get("architecture") or {}
    if arch.get("kind") != "efficientzero":
        raise OfflineDatasetError(
            f"{ckpt} is not an EfficientZero checkpoint (architecture kind "
            f"{arch.get('kind')!r}); datasets come from train-ez runs")
    if not meta.get("replay_saved"):
        raise OfflineDatasetError(
            f"{ckpt} holds no replay (the run used checkpoint_replay=False); rerun with "
            "checkpoint_replay=True")
    replay = {k[len("replay/"):]: v.numpy() for k, v in tensors.items()
              if k.startswith("replay/")}
    cfg = meta.get("config") or {}
    env_id = str(arch["env_id"])
    info: dict[str, Any] = {"source": "efficientzero-run", "checkpoint": str(ckpt),
            "env_steps": int(meta.get("env_steps", 0)),
            "rewards_clipped": bool(cfg.get("clip_rewards", False)),
            "terminal_on_life_loss": bool(cfg.get("terminal_on_life_loss", False)),
            "seed": cfg.get("seed")}
    settings = {k: cfg[k] for k in ENV_SETTINGS if k in cfg}
    info["env_kwargs"] = ez_env_kwargs(dataclasses.replace(EZTrainConfig(env_id=env_id),
                                                           **settings))
    no_search = 0
    if cfg.get("random_warmup_actions", False):
        # Acting is uniform until the first update: after learning_starts_env_steps, once the
        # update debt (updates_per_env_step per env step) reaches 1. Masking a few searched steps
        # more (one vector step of slack) loses targets but never keeps a placeholder.
        ratio = float(cfg.get("updates_per_env_step", 1.0))
        starts = cfg.get("learning_starts_env_steps", cfg.get("warmup_env_steps", 0))
        no_search = (int(starts) + int(cfg.get("num_envs", 1))
                     + (math.ceil(1.0 / ratio) if ratio > 0 else 0))
    info["no_search_before_env_step"] = no_search
    return dataset_from_game_segments(
        replay, env_id=env_id, action_space=action_space_for(env_id, int(arch["num_actions"])),
        no_search_before_env_step=no_search, frame_stack=int(arch.get("frame_stack", 1)),
        info=info)
