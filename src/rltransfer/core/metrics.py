"""Metrics logging: JSON lines (the source of truth for reports) and TensorBoard.

Every line of ``metrics.jsonl`` is one JSON object with a ``kind`` (``"train"``, ``"eval"``,
``"episode"``) and an ``env_steps`` counter. Lines are flushed as they are written; a run
killed mid-write can leave a truncated last line, which readers skip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append metrics to ``<run_dir>/metrics.jsonl`` and, optionally, TensorBoard.

    Args:
        run_dir: the run directory (created if missing).
        tensorboard: also write TensorBoard event files under ``<run_dir>/tb``.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = self.path.open("a")
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def log(self, kind: str, env_steps: int, **values: Any) -> None:
        """Write one record; numeric scalars also go to TensorBoard as ``kind/name``."""
        record = {"kind": kind, "env_steps": int(env_steps), **values}
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if math.isfinite(value):
                        self._tb.add_scalar(f"{kind}/{name}", value, int(env_steps))

    def truncate_after(self, env_steps: int) -> None:
        """Drop records past ``env_steps`` (used on resume, so curves have no duplicates)."""
        self._file.close()
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(record.get("env_steps", 0)) <= env_steps:
                kept.append(line)
        tmp = self.path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        tmp.replace(self.path)
        self._file = self.path.open("a")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
