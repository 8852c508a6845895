"""Run directories: one home for creating a run's folder and refusing to mix two runs.

A run directory holds the resolved ``config.json`` (plus metrics and checkpoints, written by
the training loops). Re-running the same config resumes; a different config in the same
directory is refused, so a resumed run never silently trains on other settings. Nothing is
written before a run has validated its config, env, prior and init checkpoint
(:func:`check_run_dir` first, :func:`prepare_run_dir` last), so a command that fails before
it starts can be corrected and re-run in the same directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rltransfer.core.config import ConfigError, load_config, save_config, to_dict
from rltransfer.errors import UserError

RUNTIME_KEYS: frozenset[str] = frozenset({"progress", "tensorboard", "torch_threads", "device"})
"""Config fields that say where and how fast a run goes, not what it learns: they may differ
when a run is resumed."""


class RunConflictError(UserError):
    """The run directory holds a different run (its saved config differs)."""


def check_run_dir(cfg: Any, run_dir: str | Path, ignore: Iterable[str] = ()) -> Path:
    """Check that ``run_dir`` is free for ``cfg`` or holds this run, writing nothing.

    A training loop calls this before it builds anything, and :func:`prepare_run_dir` once
    the config, env, prior and init checkpoint have all been validated, so a run that fails
    before it starts leaves no ``config.json`` behind (the corrected command can then use the
    same directory).

    Args:
        cfg: a dataclass config (the run's resolved settings).
        run_dir: the run's directory (need not exist).
        ignore: more fields (besides :data:`RUNTIME_KEYS`) allowed to differ on resume.

    Returns:
        The directory as a ``Path``.

    Raises:
        RunConflictError: ``run_dir`` is a file, or its ``config.json`` is unreadable or
            differs from ``cfg`` in a field that changes what is learned (the message lists
            them).
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunConflictError(f"{path} is a file, not a run directory")
    saved = path / "config.json"
    if not saved.exists():
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


def prepare_run_dir(cfg: Any, run_dir: str | Path, ignore: Iterable[str] = ()) -> Path:
    """Create ``run_dir`` and save ``cfg`` there, or check it matches the saved config.

    Call it only once everything the run needs has been validated (see
    :func:`check_run_dir`): it is the first write to the run directory.

    Args:
        cfg: a dataclass config (the run's resolved settings).
        run_dir: the run's directory.
        ignore: more fields (besides :data:`RUNTIME_KEYS`) allowed to differ on resume.

    Returns:
        The directory as a ``Path``.

    Raises:
        RunConflictError: as :func:`check_run_dir`.
    """
    path = check_run_dir(cfg, run_dir, ignore)
    path.mkdir(parents=True, exist_ok=True)
    saved = path / "config.json"
    if not saved.exists():
        save_config(cfg, saved)
    return path
