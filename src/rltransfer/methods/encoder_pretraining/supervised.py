"""Shared pieces of the supervised encoder-pretraining loops (inverse dynamics, grouped-conv
image classification): train/validation splits, device and thread setup, and an epoch
progress bar."""

from __future__ import annotations

import sys
from types import TracebackType

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rltransfer.core.config import ConfigError


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


class EpochProgress:
    """A rich bar counting gradient updates over all epochs, with the last metrics.

    Silent when ``enabled`` is false or stderr is not a terminal.
    """

    def __init__(self, description: str, total_updates: int, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.total = total_updates
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("updates"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, updates: int = 1, info: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            if info is None:
                self._progress.advance(self._task, updates)
            else:
                self._progress.update(self._task, advance=updates, info=info)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


__all__ = ["EpochProgress", "resolve_device", "set_torch_threads", "train_validation_split"]
