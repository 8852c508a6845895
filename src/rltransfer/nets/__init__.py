"""Network parts named for weight transfer: torso (encoder), core, head."""

from rltransfer.nets.cores import FeedforwardCore
from rltransfer.nets.encoders import (
    ENCODER_KINDS,
    NATURE_MIN_SIZE,
    EncoderKind,
    Torso,
    UnknownEncoderKindError,
    build_encoder,
    check_encoder_kind,
    encoder_body,
    make_torso,
    nature_cnn,
    resolve_encoder_kind,
    small_cnn,
)
from rltransfer.nets.heads import DuelingHead, QHead

__all__ = [
    "ENCODER_KINDS",
    "NATURE_MIN_SIZE",
    "DuelingHead",
    "EncoderKind",
    "FeedforwardCore",
    "QHead",
    "Torso",
    "UnknownEncoderKindError",
    "build_encoder",
    "check_encoder_kind",
    "encoder_body",
    "make_torso",
    "nature_cnn",
    "resolve_encoder_kind",
    "small_cnn",
]
