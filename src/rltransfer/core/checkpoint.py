"""Checkpoints: tensors in safetensors plus JSON metadata, written atomically, never unpickled.

Layout of one checkpoint (a directory)::

    step_000012345/
        tensors.safetensors   every tensor (networks, optimizer moments, RNG states, replay)
        meta.json             {"format": "rltransfer-checkpoint", "version": 1,
                               "sha256": <of tensors.safetensors>, "kind": ..., ...}

The directory is first written as ``.tmp-step_...`` and then renamed, so a reader sees a whole
checkpoint or none; a run killed mid-write leaves only a temporary directory that the next
save removes. ``meta.json`` records the SHA-256 of the tensor file, so truncation or
corruption is detected before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import save_file

from rltransfer.errors import UserError

FORMAT = "rltransfer-checkpoint"
VERSION = 1
TENSORS = "tensors.safetensors"
META = "meta.json"


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, corrupt, foreign, or does not fit the task."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path, tensors: dict[str, torch.Tensor | np.ndarray], meta: dict[str, Any]
) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        path: final directory, e.g. ``run/checkpoints/step_000001000``. Its parent is created.
        tensors: flat name -> tensor (torch or numpy); made contiguous and saved on CPU.
        meta: JSON-serialisable metadata (architecture, spaces, counters, config).

    Returns:
        The final path.

    Raises:
        TypeError: if ``meta`` is not JSON-serialisable.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    as_torch = {
        k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
        .detach()
        .cpu()
        .contiguous()
        for k, v in tensors.items()
    }
    tensor_file = tmp / TENSORS
    save_file(as_torch, str(tensor_file))
    full_meta = {"format": FORMAT, "version": VERSION, "sha256": _sha256(tensor_file), **meta}
    text = json.dumps(full_meta, indent=2, sort_keys=True)
    with (tmp / META).open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    with tensor_file.open("rb+") as f:
        os.fsync(f.fileno())
    if final.exists():
        old = final.parent / f".old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync_dir(final.parent)
    return final


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint's ``meta.json`` (not the tensors).

    Raises:
        CheckpointError: missing directory or file, invalid JSON, or a foreign format.
    """
    ckpt = Path(path)
    meta_file = ckpt / META
    if not ckpt.is_dir():
        raise CheckpointError(f"no checkpoint directory at {ckpt}")
    if not meta_file.is_file():
        raise CheckpointError(
            f"{ckpt} has no {META}: not an rltransfer checkpoint (or an interrupted write)"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_file} is not valid JSON ({e}); the file is corrupt") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{ckpt} is not an rltransfer checkpoint (format tag {meta.get('format')!r} "
            f"where {FORMAT!r} was expected)"
            if isinstance(meta, dict)
            else f"{meta_file} does not hold a JSON object"
        )
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{ckpt} has checkpoint version {meta.get('version')}; this rltransfer reads "
            f"version {VERSION}"
        )
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`, verifying its integrity.

    Returns:
        ``(tensors, meta)``; tensors on CPU.

    Raises:
        CheckpointError: missing, truncated, corrupt (hash mismatch) or foreign checkpoint.
    """
    ckpt = Path(path)
    meta = read_meta(ckpt)
    tensor_file = ckpt / TENSORS
    if not tensor_file.is_file():
        raise CheckpointError(f"{ckpt} has no {TENSORS}")
    digest = _sha256(tensor_file)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"{tensor_file} does not match the hash in {META}: the file is truncated or "
            "corrupt. Delete this checkpoint directory to resume from the previous one."
        )
    try:
        arrays = np_load_file(str(tensor_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {tensor_file}: {e}") from e
    return {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, meta


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root`` (``step_*``), oldest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [p for p in base.glob("step_*") if p.is_dir() and (p / META).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or ``None``."""
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints under ``root`` (and stale temporaries)."""
    base = Path(root)
    for stale in list(base.glob(".tmp-*")) + list(base.glob(".old-*")):
        shutil.rmtree(stale, ignore_errors=True)
    dirs = checkpoint_dirs(root)
    for old in dirs[: max(0, len(dirs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def step_dirname(env_steps: int) -> str:
    """Directory name for a checkpoint at ``env_steps`` (zero-padded so names sort)."""
    return f"step_{env_steps:012d}"
