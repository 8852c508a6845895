"""Intrinsic rewards for reward-free pretraining: RND, NGU, constant reward."""

from rltransfer.intrinsic.base import IntrinsicInputError, IntrinsicReward, check_frames
from rltransfer.intrinsic.constant import ConstantReward
from rltransfer.intrinsic.episodic_memory import EpisodicMemory
from rltransfer.intrinsic.ngu import (
    NGUConfig,
    NGUReward,
    lifelong_multiplier,
    ngu_betas,
    ngu_gammas,
)
from rltransfer.intrinsic.normalizer import RunningMeanStd
from rltransfer.intrinsic.rnd import RND, build_rnd_torso

__all__ = [
    "RND",
    "ConstantReward",
    "EpisodicMemory",
    "IntrinsicInputError",
    "IntrinsicReward",
    "NGUConfig",
    "NGUReward",
    "RunningMeanStd",
    "build_rnd_torso",
    "check_frames",
    "lifelong_multiplier",
    "ngu_betas",
    "ngu_gammas",
]
