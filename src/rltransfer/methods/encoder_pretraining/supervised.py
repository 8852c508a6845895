"""Shared pieces of the supervised encoder-pretraining loops (inverse dynamics, grouped-conv
image classification): train/validation splits, device and thread setup, and the one epoch
loop both pretrainings run (:func:`fit_epochs`, advancing a
:class:`~rltransfer.core.progress.RunProgress` counting updates)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from rltransfer.core.config import ConfigError
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress

V = TypeVar("V")
"""Value type of the validation metrics (``float``, or ``float | list[float]`` for
per-head accuracies)."""


def train_validation_split(
    num_items: int, validation_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random split of ``range(num_items)`` into train and validation indices.

    The validation set holds ``max(1, round(validation_fraction * num_items))`` items (0 when
    ``validation_fraction`` is 0); both index arrays are int64 and sorted.

    Raises:
        ValueError: ``validation_fraction`` outside ``[0, 1)`` or no training item left.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    num_val = 0 if validation_fraction == 0 else max(1, round(validation_fraction * num_items))
    if num_items - num_val < 1:
        raise ValueError(
            f"{num_items} items leave nothing to train on with validation_fraction "
            f"{validation_fraction}; collect more data"
        )
    perm = rng.permutation(num_items)
    return np.sort(perm[num_val:]).astype(np.int64), np.sort(perm[:num_val]).astype(np.int64)


def resolve_device(device: str) -> torch.device:
    """``torch.device(device)``; ``"auto"`` picks CUDA when available.

    Raises:
        ConfigError: unknown device string, or CUDA asked for but unavailable.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}: {e}; use 'cpu', 'cuda' or 'auto'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use 'cpu'")
    return dev


def set_torch_threads(num_threads: int) -> None:
    """``torch.set_num_threads(num_threads)`` when positive (0 keeps torch's default)."""
    if num_threads < 0:
        raise ConfigError(f"torch_threads must be >= 0 (0 = torch default), got {num_threads}")
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def fit_epochs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    epoch_batches: Callable[[], Iterable[Any]],
    batch_loss: Callable[[Any], torch.Tensor],
    validate: Callable[[], Mapping[str, V]] | None,
    progress: RunProgress,
    logger: MetricsLogger | None = None,
    log_step: int = 0,
) -> list[dict[str, float | V]]:
    """Minimise ``batch_loss`` with ``optimizer`` for ``epochs`` passes; validate after each.

    Every epoch: ``model.train()``, then ``epoch_batches()`` (called once per epoch, so it can
    draw a new shuffle) yields the batches; for each, ``batch_loss(batch)`` (a scalar with
    gradient), ``zero_grad(set_to_none=True)``, ``backward``, ``step``. Then ``validate()``
    (when given) adds its metrics with a ``val_`` prefix.

    Args:
        model: the network being trained (put in training mode every epoch).
        optimizer: its optimizer.
        epochs: number of passes (0: nothing happens).
        epoch_batches: the batches of one epoch, called at the start of each epoch.
        batch_loss: the loss of one batch (mean over its items).
        validate: metrics on held-out data (None: no validation).
        progress: the bar, advanced once per update and given the epoch's ``val_loss`` /
            ``val_accuracy``.
        logger: each record is also logged as kind ``"pretrain"`` at ``log_step``.
        log_step: the step the records are logged at (e.g. env steps of the data).

    Returns:
        One record per epoch: ``epoch``, ``train_loss`` (mean over the epoch's updates), the
        ``val_*`` metrics, and ``seconds`` (wall-clock time of the epoch).
    """
    history: list[dict[str, float | V]] = []
    for epoch in range(1, epochs + 1):
        start_time = time.perf_counter()
        model.train()
        losses = []
        for batch in epoch_batches():
            loss = batch_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            progress.advance()
        record: dict[str, float | V] = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if validate is not None:
            record.update({f"val_{k}": v for k, v in validate().items()})
        record["seconds"] = time.perf_counter() - start_time
        history.append(record)
        if logger is not None:
            logger.log("pretrain", log_step, **record)
        shown = ", ".join(
            f"{k}={v:.4g}"
            for k, v in record.items()
            if k in ("val_loss", "val_accuracy") and isinstance(v, float)
        )
        progress.advance(0, info=f"epoch {epoch}: {shown}")
    return history


__all__ = [
    "fit_epochs",
    "resolve_device",
    "set_torch_threads",
    "train_validation_split",
]
