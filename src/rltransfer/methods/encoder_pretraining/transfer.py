"""Encoder transfer: save a pretrained :class:`PixelEncoder` and load it into an RL encoder.

Kadavath et al. 2021 (Sec. 3.4) pretrain a conv feature extractor (inverse dynamics or
grouped-conv image classification) and load "our feature extractor's weights" - the conv
layers - into the SAC encoder before RL training. This module is that seam.

Checkpoint format (a :mod:`rltransfer.core.checkpoint` directory):

* tensors ``encoder/convs/<name>`` for every entry of ``encoder.convs.state_dict()`` (conv
  weights and biases, BatchNorm weights, biases and running statistics), and optionally
  ``encoder/head/<name>`` (the ``Linear -> LayerNorm -> tanh`` head);
* meta ``{"architecture": {"kind": "pixel_encoder", "encoder_config": {...},
  "obs_shape": [C, H, W], "source": "inverse_dynamics" | "image_classification",
  "has_head": bool, "frame_stack": S | null, "render_size": R | null,
  "crop_size": K | null}, ...extra_meta}``: ``frame_stack`` images of ``C / S`` channels are
  stacked; frames were rendered at ``R x R`` and centre-cropped to ``K x K`` (null: not
  cropped / unknown). :func:`read_pretrained_architecture` reads it back, so that an RL agent
  can be built to fit a checkpoint (``train-sac --init-encoder-from``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.core.checkpoint import META, load_checkpoint, read_meta, save_checkpoint
from rltransfer.core.config import to_dict
from rltransfer.errors import UserError
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig

ENCODER_SOURCES: tuple[str, ...] = ("inverse_dynamics", "image_classification")
"""Pretraining methods that write encoder checkpoints (``architecture.source``)."""

ARCHITECTURE_KIND = "pixel_encoder"
CONVS_PREFIX = "encoder/convs/"
HEAD_PREFIX = "encoder/head/"


class EncoderMismatchError(UserError):
    """A pretrained encoder checkpoint does not fit the encoder it is loaded into (kind,
    filters, groups, observation shape or tensor names/shapes differ, or a head is asked for
    that the checkpoint lacks). The message names both sides and the fix."""


def save_encoder(
    encoder: PixelEncoder,
    path: str | Path,
    obs_shape: tuple[int, int, int] | list[int],
    source: str,
    extra_meta: dict[str, Any] | None = None,
    *,
    include_head: bool = True,
    geometry: Mapping[str, int | None] | None = None,
) -> Path:
    """Write ``encoder``'s conv layers (and head) as a pretrained-encoder checkpoint.

    Args:
        encoder: the pretrained encoder.
        path: checkpoint directory to create (replaced atomically if it exists).
        obs_shape: ``(C, H, W)`` the encoder was trained on; must equal ``encoder.obs_shape``.
        source: the pretraining method, one of :data:`ENCODER_SOURCES`.
        extra_meta: more JSON-serialisable metadata (metrics, data set, config); may not
            contain the key ``"architecture"``.
        include_head: also save ``encoder.head`` (False when the head was not trained, as in
            image-classification and inverse-dynamics pretraining, whose heads read the conv
            features).
        geometry: how the training images were made, recorded in the architecture:
            ``frame_stack`` (images stacked on channels), ``render_size`` (side of the
            rendered frames) and ``crop_size`` (side of their centre crop, the encoder's input;
            None = not cropped). Missing keys are recorded as null.

    Returns:
        The checkpoint directory.

    Raises:
        ValueError: ``obs_shape`` differs from the encoder's, unknown ``source``,
            ``extra_meta`` has an ``"architecture"`` key, unknown ``geometry`` keys, or a
            ``frame_stack`` that does not divide the channels.
    """
    shape = tuple(int(s) for s in obs_shape)
    if shape != tuple(encoder.obs_shape):
        raise ValueError(
            f"save_encoder: obs_shape {shape} differs from the encoder's {encoder.obs_shape}"
        )
    if source not in ENCODER_SOURCES:
        raise ValueError(
            f"save_encoder: unknown source {source!r}; choose one of {', '.join(ENCODER_SOURCES)}"
        )
    extra = dict(extra_meta or {})
    if "architecture" in extra:
        raise ValueError("save_encoder: extra_meta may not override 'architecture'")
    geo: dict[str, int | None] = {key: None for key in GEOMETRY_KEYS}
    unknown = sorted(set(geometry or {}) - set(GEOMETRY_KEYS))
    if unknown:
        raise ValueError(f"save_encoder: unknown geometry keys {unknown}; use {GEOMETRY_KEYS}")
    geo.update({k: None if v is None else int(v) for k, v in (geometry or {}).items()})
    if geo["frame_stack"] is not None and (
        geo["frame_stack"] < 1 or shape[0] % geo["frame_stack"]
    ):
        raise ValueError(
            f"save_encoder: frame_stack {geo['frame_stack']} does not divide the {shape[0]} "
            "channels"
        )
    tensors: dict[str, torch.Tensor | np.ndarray] = {
        CONVS_PREFIX + name: value for name, value in encoder.convs.state_dict().items()
    }
    if include_head:
        tensors.update(
            {HEAD_PREFIX + name: value for name, value in encoder.head.state_dict().items()}
        )
    meta = {
        "architecture": {
            "kind": ARCHITECTURE_KIND,
            "encoder_config": to_dict(encoder.config),
            "obs_shape": list(shape),
            "source": source,
            "has_head": bool(include_head),
            **geo,
        },
        **extra,
    }
    return save_checkpoint(path, tensors, meta)


GEOMETRY_KEYS: tuple[str, ...] = ("frame_stack", "render_size", "crop_size")
"""Image-geometry fields of a pretrained encoder's ``architecture`` (see :func:`save_encoder`)."""


@dataclass(frozen=True)
class PretrainedArchitecture:
    """What a pretrained-encoder checkpoint says about the encoder and its images.

    Attributes:
        path: the checkpoint directory.
        encoder_config: the encoder's :class:`PixelEncoderConfig` (kind, filters, feature
            size, groups).
        obs_shape: ``(C, H, W)`` of the encoder's input (stacked frames).
        source: the pretraining method (:data:`ENCODER_SOURCES`).
        has_head: whether the head was saved.
        frame_stack: images stacked on channels (None: not recorded).
        render_size: side of the rendered frames in pixels (None: not recorded).
        crop_size: side of the centre crop the encoder saw (None: frames were not cropped,
            or not recorded).
    """

    path: Path
    encoder_config: PixelEncoderConfig
    obs_shape: tuple[int, int, int]
    source: str
    has_head: bool
    frame_stack: int | None
    render_size: int | None
    crop_size: int | None


def read_pretrained_architecture(path: str | Path) -> PretrainedArchitecture:
    """Read the architecture of a pretrained-encoder checkpoint (no tensors are loaded).

    Args:
        path: a checkpoint written by :func:`save_encoder`, or a pretraining output directory
            holding one under ``encoder/``.

    Raises:
        EncoderMismatchError: no checkpoint there, or not a pretrained pixel encoder.
        CheckpointError: unreadable ``meta.json``.
    """
    ckpt = resolve_encoder_checkpoint(path)
    arch = read_meta(ckpt).get("architecture", {})
    if arch.get("kind") != ARCHITECTURE_KIND:
        raise EncoderMismatchError(
            f"{ckpt} is not a pretrained pixel encoder (architecture kind {arch.get('kind')!r},"
            f" expected {ARCHITECTURE_KIND!r})"
        )
    fields = {f.name for f in dataclasses.fields(PixelEncoderConfig)}
    config = PixelEncoderConfig(
        **{k: v for k, v in dict(arch.get("encoder_config", {})).items() if k in fields}
    )
    shape = tuple(int(s) for s in arch.get("obs_shape", ()))
    if len(shape) != 3:
        raise EncoderMismatchError(f"{ckpt}: architecture.obs_shape must be [C, H, W]")

    def optional(key: str) -> int | None:
        value = arch.get(key)
        return None if value is None else int(value)

    return PretrainedArchitecture(
        path=ckpt, encoder_config=config, obs_shape=(shape[0], shape[1], shape[2]),
        source=str(arch.get("source")), has_head=bool(arch.get("has_head")),
        frame_stack=optional("frame_stack"), render_size=optional("render_size"),
        crop_size=optional("crop_size"),
    )


def resolve_encoder_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory for ``path``: ``path`` itself if it holds ``meta.json``, else
    ``path/encoder`` (the output directory of a pretraining run).

    Raises:
        EncoderMismatchError: neither is a checkpoint.
    """
    base = Path(path)
    if (base / META).is_file():
        return base
    if (base / "encoder" / META).is_file():
        return base / "encoder"
    raise EncoderMismatchError(
        f"no pretrained encoder checkpoint at {base} (no {META} there or in {base / 'encoder'});"
        " pass the directory written by pretrain_inverse_dynamics / "
        "pretrain_image_classification or save_encoder"
    )


def _check_architecture(
    encoder: PixelEncoder, arch: Mapping[str, Any], source: str, include_head: bool
) -> None:
    if arch.get("kind") != ARCHITECTURE_KIND:
        raise EncoderMismatchError(
            f"{source} is not a pretrained pixel encoder (architecture kind "
            f"{arch.get('kind')!r}, expected {ARCHITECTURE_KIND!r}); for agent checkpoints use "
            "rltransfer.agents.r2d2.transfer"
        )
    theirs = dict(arch.get("encoder_config", {}))
    ours = dataclasses.asdict(encoder.config)
    keys = ["kind", "num_filters", "groups"] + (["feature_dim"] if include_head else [])
    problems = [
        f"{key} {theirs.get(key)!r} (pretrained) vs {ours[key]!r} (this encoder)"
        for key in keys
        if theirs.get(key) != ours[key]
    ]
    their_shape = tuple(int(s) for s in arch.get("obs_shape", ()))
    our_shape = tuple(encoder.obs_shape)
    if their_shape != our_shape:
        what = "channels" if their_shape[:1] != our_shape[:1] else "image size"
        problems.append(
            f"observation shape {their_shape} (pretrained) vs {our_shape} (this encoder) "
            f"[{what} differ: match frame_stack x channels and render size]"
        )
    if problems:
        raise EncoderMismatchError(
            f"the pretrained encoder {source} does not fit this encoder: "
            + "; ".join(problems)
            + ". Build the RL encoder with the pretraining run's encoder config and "
            "observation shape, or pretrain again with this one."
        )


def _load_block(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, source: str
) -> list[str]:
    """Copy ``prefix``-named tensors into ``module`` exactly (names and shapes must match)."""
    expected = module.state_dict()
    given = {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{name}: {tuple(given[name].shape)} (pretrained) vs {tuple(t.shape)} (this encoder)"
        for name, t in expected.items()
        if name in given and tuple(given[name].shape) != tuple(t.shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if wrong:
            parts.append(f"shape mismatch {wrong}")
        raise EncoderMismatchError(
            f"tensors {prefix}* of {source} do not match this encoder: " + "; ".join(parts)
        )
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(given[name].to(dtype=target.dtype))
    return sorted(prefix + name for name in expected)


def _keep_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of frozen BatchNorm layers: always use the running statistics."""
    module.training = False


def freeze_module(module: nn.Module) -> None:
    """Stop ``module`` from learning: ``requires_grad=False`` on its parameters, and its
    BatchNorm layers use (and never update) their running statistics, even after a later
    ``.train()`` call (a forward pre-hook keeps them in eval mode)."""
    for param in module.parameters():
        param.requires_grad_(False)
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.eval()
            if _keep_eval not in sub._forward_pre_hooks.values():  # hooked once
                sub.register_forward_pre_hook(_keep_eval)


def load_pretrained_encoder(
    encoder: PixelEncoder,
    path: str | Path,
    *,
    freeze: bool = False,
    include_head: bool = False,
) -> list[str]:
    """Load a pretrained encoder's conv layers (and optionally its head) into ``encoder``.

    Exactly the tensors of ``encoder.convs`` (conv weights/biases, BatchNorm affine
    parameters and running statistics) are copied; the head keeps its own initialisation
    unless ``include_head``. Kadavath et al. 2021, Sec. 3.4.

    Args:
        encoder: the RL agent's encoder (e.g. SAC's critic encoder, whose convs the actor
            shares).
        path: a checkpoint written by :func:`save_encoder`, or a pretraining output directory
            holding one under ``encoder/``.
        freeze: stop the loaded layers from learning (``requires_grad=False``; BatchNorm uses
            its running statistics from then on, see :func:`freeze_module`).
        include_head: also load ``encoder.head`` (needs a checkpoint saved with a head and the
            same ``feature_dim``).

    Returns:
        The checkpoint tensor names loaded, sorted (``encoder/convs/...``, ``encoder/head/...``).

    Raises:
        EncoderMismatchError: not an encoder checkpoint; kind, ``num_filters``, ``groups``
            (or, with a head, ``feature_dim``) or observation shape differ; tensor names or
            shapes differ; ``include_head`` on a checkpoint without a head.
        CheckpointError: the checkpoint is missing, truncated or corrupt.
    """
    ckpt = resolve_encoder_checkpoint(path)
    meta = read_meta(ckpt)
    arch = meta.get("architecture", {})
    _check_architecture(encoder, arch, str(ckpt), include_head)
    tensors, _ = load_checkpoint(ckpt)
    if include_head and not any(name.startswith(HEAD_PREFIX) for name in tensors):
        raise EncoderMismatchError(
            f"{ckpt} has no encoder head (source {arch.get('source')!r} saves the conv layers "
            "only); load with include_head=False"
        )
    loaded = _load_block(encoder.convs, tensors, CONVS_PREFIX, str(ckpt))
    if include_head:
        loaded += _load_block(encoder.head, tensors, HEAD_PREFIX, str(ckpt))
    if freeze:
        freeze_module(encoder.convs)
        if include_head:
            freeze_module(encoder.head)
    return loaded


__all__ = [
    "ENCODER_SOURCES",
    "GEOMETRY_KEYS",
    "EncoderMismatchError",
    "PretrainedArchitecture",
    "freeze_module",
    "load_pretrained_encoder",
    "read_pretrained_architecture",
    "resolve_encoder_checkpoint",
    "save_encoder",
]
