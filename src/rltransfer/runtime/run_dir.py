"""Run directories: one home for creating a run's folder and refusing to mix two runs.

A run directory holds the resolved ``config.json`` (plus metrics and checkpoints, written by
the training loops). Re-running the same config resumes; a different config in the same
directory is refused, so a resumed run never silently trains on other settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rltransfer.errors import UserError
from rltransfer.runtime.config import ConfigError, load_config, save_config, to_dict

RUNTIME_KEYS: frozenset[str] = frozenset({"progress", "tensorboard", "torch_threads", "device"})
"""Config fields that say where and how fast a run goes, not what it learns: they may differ
when a run is resumed."""


class RunConflictError(UserError):
    """The run directory holds a different run (its saved config differs)."""


def prepare_run_dir(cfg: Any, run_dir: str | Path, ignore: Iterable[str] = ()) -> Path:
    """Create ``run_dir`` and save ``cfg`` there, or check it matches the saved config.

    Args:
        cfg: a dataclass config (the run's resolved settings).
        run_dir: the run's directory.
        ignore: more fields (besides :data:`RUNTIME_KEYS`) allowed to differ on resume.

    Returns:
        The directory as a ``Path``.

    Raises:
        RunConflictError: the directory's ``config.json`` is unreadable or differs from
            ``cfg`` in a field that changes what is learned (the message lists them).
    """
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    saved = path / "config.json"
    if not saved.exists():
        save_config(cfg, saved)
        return path
    try:
        previous = load_config(type(cfg), saved)
    except ConfigError as e:
        raise RunConflictError(f"{saved} is unreadable ({e}); use a new run directory") from e
    skip = RUNTIME_KEYS | set(ignore)
    mine, theirs = to_dict(cfg), to_dict(previous)
    diff = sorted(k for k in mine if k not in skip and mine[k] != theirs.get(k))
    if diff:
        details = ", ".join(f"{k}: {theirs.get(k)!r} -> {mine[k]!r}" for k in diff)
        raise RunConflictError(
            f"{path} already holds a run with another config ({details}). Use a new run "
            "directory, or delete the old one to start over."
        )
    return path
