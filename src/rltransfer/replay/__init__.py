"""Replay buffers: frame-once n-step transition replay (uniform / prioritized) and
prioritized sequence replay with stored recurrent states (R2D2)."""

from rltransfer.replay.sequence import SequenceReplay
from rltransfer.replay.sum_tree import SumTree
from rltransfer.replay.transition import FrameStacker, TransitionReplay

__all__ = [
    "FrameStacker",
    "SequenceReplay",
    "SumTree",
    "TransitionReplay",
]
