"""A rich progress bar for long runs, showing env steps, env steps/s and recent metrics."""

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
    """Context manager around a rich progress bar counting env steps.

    Disabled (no output) when ``enabled`` is false or stderr is not a terminal and
    ``force`` is false; then :meth:`update` is nearly free.
    """

    def __init__(
        self, description: str, total_env_steps: int, start_env_steps: int = 0,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total_env_steps
        self.completed = start_env_steps
        self._start_time = time.perf_counter()
        self._start_steps = start_env_steps
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.description = description

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("env steps"),
                TextColumn("{task.fields[rate]:>8.0f} steps/s"),
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
    def env_steps_per_second(self) -> float:
        elapsed = time.perf_counter() - self._start_time
        return (self.completed - self._start_steps) / max(elapsed, 1e-9)

    def update(self, env_steps: int, info: str = "") -> None:
        self.completed = env_steps
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=env_steps, rate=self.env_steps_per_second, info=info
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
