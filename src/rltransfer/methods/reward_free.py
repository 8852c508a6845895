"""Reward-free pretraining (Campos et al. 2021, Sec. 4): learn a policy from an intrinsic
reward alone, with the task reward hidden from the learner (it is still logged, and the
greedy policy's task return is evaluated: its zero-shot score).

The learner is the ordinary Q-learning agent of :mod:`rltransfer.agents.r2d2.train`; only the reward
differs. Intrinsic rewards: RND (Burda et al. 2019) and a constant reward (the paper's
baseline that rewards staying alive). NGU is the next step (see the issue tracker).
"""

from __future__ import annotations

import dataclasses

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.agents.r2d2.train import RunResult, train
from rltransfer.core.config import ConfigError

PRETRAIN_DEFAULTS = dataclasses.replace(
    TrainConfig(), reward_free=True, intrinsic="rnd", run_dir="runs/pretrain"
)
"""Defaults of ``rltransfer pretrain``: reward-free, RND."""


def pretrain_reward_free(cfg: TrainConfig) -> RunResult:
    """Train ``cfg`` without task reward; its ``final/`` checkpoint is the pretrained policy.

    Raises:
        ConfigError: if ``cfg`` would let the task reward in or has no intrinsic reward, or
            asks for Behavior Transfer (pretraining starts from nothing).
    """
    problems = []
    if not cfg.reward_free:
        problems.append("reward_free must be true (the task reward stays hidden)")
    if cfg.intrinsic == "none":
        problems.append("choose an intrinsic reward: --intrinsic rnd or constant")
    if cfg.explore == "bt" or cfg.init != "none":
        problems.append("pretraining starts from scratch: drop --explore bt / --init")
    if problems:
        raise ConfigError("reward-free pretraining: " + "; ".join(problems))
    return train(cfg)
