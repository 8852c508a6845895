"""A rich progress bar for long runs, showing the count (env steps, updates, ...), its rate
and recent metrics."""

from __future__ import annotations

import sys
import time
from types import TracebackType

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


class RunProgress:
    """Context manager around a rich progress bar counting ``unit``: env steps of a training
    run (the default), gradient updates of a supervised pretraining, collected transitions.
    Shows the count out of ``total``, the rate per second, a free-text ``info`` (recent
    metrics) and the elapsed / remaining time.

    Disabled (no output) when ``enabled`` is false or stderr is not a terminal; then
    :meth:`update` and :meth:`advance` are nearly free.
    """

    def __init__(self, description: str, total: int, start: int = 0, enabled: bool = True,
                 unit: str = "env steps") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.completed = start
        self.unit = unit
        self._start_time = time.perf_counter()
        self._start_count = start
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.description = description

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TextColumn("{task.fields[rate]:>8.0f} " + self.unit.split()[-1] + "/s"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, completed=self.completed, rate=0.0, info=""
            )
        return self

    @property
    def per_second(self) -> float:
        """Units counted since the start (``completed - start``) per wall-clock second."""
        elapsed = time.perf_counter() - self._start_time
        return (self.completed - self._start_count) / max(elapsed, 1e-9)

    @property
    def env_steps_per_second(self) -> float:
        """:attr:`per_second` of a bar counting env steps (the training loop's metric)."""
        return self.per_second

    def update(self, completed: int, info: str = "") -> None:
        """Set the count to ``completed`` (absolute) and the text to ``info``."""
        self.completed = completed
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=completed, rate=self.per_second, info=info
            )

    def advance(self, count: int = 1, info: str | None = None) -> None:
        """Add ``count`` to the count; ``info`` replaces the text (None keeps it)."""
        self.completed += count
        if self._progress is not None and self._task is not None:
            if info is None:
                self._progress.update(self._task, completed=self.completed,
                                      rate=self.per_second)
            else:
                self._progress.update(self._task, completed=self.completed,
                                      rate=self.per_second, info=info)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
