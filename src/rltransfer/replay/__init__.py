"""Replay buffers: frame-once n-step transition replay (uniform / prioritized)."""

from rltransfer.replay.sum_tree import SumTree
from rltransfer.replay.transition import FrameStacker, TransitionReplay

__all__ = ["FrameStacker", "SumTree", "TransitionReplay"]
