"""Replay buffers: frame-once n-step transition replay (uniform / prioritized),
prioritized sequence replay with stored recurrent states (R2D2) and game-segment replay
(EfficientZero, :mod:`rltransfer.replay.game_segment`), all layers on one frame-once slot
ring (:class:`SlotRing`)."""

from rltransfer.replay.ring import BatchRing, SlotRing
from rltransfer.replay.sequence import SequenceReplay
from rltransfer.replay.sum_tree import SumTree
from rltransfer.replay.transition import FrameStacker, TransitionReplay

__all__ = [
    "BatchRing",
    "FrameStacker",
    "SequenceReplay",
    "SlotRing",
    "SumTree",
    "TransitionReplay",
]
