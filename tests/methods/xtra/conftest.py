"""Tiny MinAtar-shaped offline datasets and stage configs for the XTRA pipeline tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.envs.shared_actions import MINATAR_CHANNELS, minatar_action_space
from rltransfer.methods.xtra.config import small_learner
from rltransfer.replay.offline import Episode, OfflineDataset

GAMES = {"breakout": "MinAtar/Breakout-v1", "asterix": "MinAtar/Asterix-v1",
         "freeway": "MinAtar/Freeway-v1"}


def random_dataset(env_id: str, seed: int = 0, lengths: tuple[int, ...] = (14, 11, 17),
                   ) -> OfflineDataset:
    """Random 0/1 frames in the game's channel count, random local actions and rewards,
    behaviour search statistics on every step."""
    space = minatar_action_space(env_id)
    game = env_id.split("/")[1].split("-")[0].lower().replace("spaceinvaders", "space_invaders")
    c, n_act = MINATAR_CHANNELS[game], space.num_legal
    rng = np.random.default_rng(seed)
    eps = []
    for i, n in enumerate(lengths):
        pol = rng.random((n, n_act)).astype(np.float32)
        eps.append(Episode(rng.integers(0, 2, (n + 1, c, 10, 10), dtype=np.uint8),
                           rng.integers(0, n_act, n), rng.integers(0, 2, n).astype(np.float32),
                           i != 1, i == 1, rng.normal(size=n).astype(np.float32),
                           pol / pol.sum(1, keepdims=True), np.ones(n, dtype=bool)))
    return OfflineDataset.from_episodes(env_id, space, eps, frame_stack=1,
                                        info={"source": "test"})


def save_dataset(tmp: Path, env_id: str, seed: int = 0) -> str:
    path = tmp / "data" / env_id.replace("/", "_")
    random_dataset(env_id, seed).save(path)
    return str(path)


def tiny_fields(**changes: Any) -> dict[str, Any]:
    """Offline-stage fields at smoke scale (2 simulations, batch 8, one evaluation episode,
    4 updates, a checkpoint every 2)."""
    learner = dataclasses.replace(small_learner(), lr_warmup_updates=1)
    fields: dict[str, Any] = dict(
        num_updates=4, batch_size=8, mcts=MCTSConfig(num_simulations=2, discount=0.99),
        learner=learner, eval_every_updates=1_000, eval_episodes=1, checkpoint_every_updates=2,
        progress=False, tensorboard=False)
    fields.update(changes)
    return fields
