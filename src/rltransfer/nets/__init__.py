"""Network parts named for weight transfer: torso (encoder), core, head."""

from rltransfer.nets.cores import FeedforwardCore
from rltransfer.nets.encoders import Torso, make_torso, nature_cnn, small_cnn
from rltransfer.nets.heads import DuelingHead, QHead

__all__ = [
    "DuelingHead",
    "FeedforwardCore",
    "QHead",
    "Torso",
    "make_torso",
    "nature_cnn",
    "small_cnn",
]
