"""Intrinsic rewards for reward-free pretraining: RND, constant reward (NGU next)."""

from rltransfer.intrinsic.base import IntrinsicInputError, IntrinsicReward, check_frames
from rltransfer.intrinsic.constant import ConstantReward
from rltransfer.intrinsic.normalizer import RunningMeanStd
from rltransfer.intrinsic.rnd import RND, build_rnd_torso

__all__ = [
    "RND",
    "ConstantReward",
    "IntrinsicInputError",
    "IntrinsicReward",
    "RunningMeanStd",
    "build_rnd_torso",
    "check_frames",
]
