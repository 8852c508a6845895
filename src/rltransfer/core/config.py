"""Typed dataclass configs: the base of every training run's config (:class:`RunConfig`),
and the dict / JSON door: built from dicts with unknown keys rejected, saved as JSON.

The CLI (tyro) builds configs from flags; :func:`from_dict` / :func:`load_config` are the
other door, used to load the resolved ``config.json`` of a run directory and the metadata of
checkpoints. A key a config class lists in ``RENAMED_FIELDS`` (an older name of one of its
fields) is refused with the new name in the message, never converted silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from rltransfer.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config has an unknown key, a wrong type, or an invalid value."""


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-serialisable dict (nested dataclasses become dicts)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    out = dataclasses.asdict(config)
    return json.loads(json.dumps(out, default=str))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a sequence, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
        inner = args[0] if args else Any
        return [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys.

    Raises:
        ConfigError: an unknown key (with the closest valid names; for a key in ``cls``'s
            ``RENAMED_FIELDS``, the field's new name), or a value of the wrong type.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    renamed: Mapping[str, str] = getattr(cls, "RENAMED_FIELDS", {})
    unknown = [k for k in data if k not in fields]
    if unknown:
        hints_text = []
        for key in unknown:
            if key in renamed:
                hints_text.append(renamed[key])
                continue
            close = difflib.get_close_matches(key, list(fields), n=3)
            suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
            hints_text.append(f"unknown key {key!r}{suggestion}")
        raise ConfigError(
            f"{where}: {'; '.join(hints_text)} for {cls.__name__}; valid keys: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as indented JSON (atomically: temporary file, then rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True))
    tmp.replace(target)


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a config JSON written by :func:`save_config`.

    Raises:
        ConfigError: unreadable JSON, unknown keys, or wrong types.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    return from_dict(cls, data, where=str(path))


RENAMED_RUN_FIELDS: Mapping[str, str] = MappingProxyType({
    "warmup_env_steps": "'warmup_env_steps' was renamed to 'learning_starts_env_steps' "
                        "(same meaning)",
    "env_steps_per_update": "'env_steps_per_update' was replaced by 'updates_per_env_step': "
                            "set updates_per_env_step = 1 / env_steps_per_update (4.0 -> 0.25)",
})
"""Keys of older run configs (before issue 11's one naming) and what replaced them."""


class Validated:
    """One validation style for every config: :meth:`problems` lists what is wrong (a subclass
    extends it with ``super().problems()``), :meth:`validate` raises them all at once."""

    def problems(self) -> list[str]:
        """Every problem of this config, as one sentence each (empty: valid)."""
        return []

    def validate(self) -> None:
        """Check the config.

        Raises:
            ConfigError: one message listing every problem of :meth:`problems`.
        """
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(problems))


@dataclass
class RunConfig(Validated):
    """The fields every training run has (R2D2's :class:`~rltransfer.agents.r2d2.config.
    TrainConfig`, SAC's :class:`~rltransfer.agents.sac.config.SACTrainConfig`, EfficientZero's
    :class:`~rltransfer.agents.efficientzero.config.EZTrainConfig`): env, budget, replay ratio,
    evaluation and checkpoint cadence, device, seed. Counts are env steps of all envs together
    (SAC's: agent steps, the action repeat inside).

    A subclass redeclares a field to change its default, and extends :meth:`problems` (with
    ``super().problems()``) to check its own fields; :meth:`validate` raises one
    :class:`ConfigError` listing every problem. The trainers call ``cfg.validate()`` before
    anything is written.
    """

    env_id: str = "MinAtar/Breakout-v1"
    """Environment id (any id :func:`rltransfer.envs.make_env` knows)."""
    num_envs: int = 1
    """Environments stepped together (``B``)."""
    total_env_steps: int = 50_000
    """The budget: env steps of all envs together."""
    seed: int = 0
    """Seed of the envs, networks and sampling."""
    run_dir: str = "runs/run"
    """Run directory (resumed when it holds this run)."""
    replay_capacity_env_steps: int = 100_000
    """Replay size in env steps (all envs together)."""
    learning_starts_env_steps: int = 2_000
    """Env steps collected before the first learner update (after a resume without a saved
    replay, learning waits this many env steps again)."""
    updates_per_env_step: float = 1.0
    """Replay ratio: learner updates per env step once learning has started (R2D2's one
    update every 4 env steps is 0.25)."""
    eval_every_env_steps: int = 10_000
    """Evaluate every this many env steps."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_every_env_steps: int = 10_000
    """Checkpoint every this many env steps."""
    keep_checkpoints: int = 2
    """Checkpoints kept (older ones are deleted)."""
    checkpoint_replay: bool = True
    """Save replay contents in checkpoints (exact resume). Off: a resumed run refills replay
    for ``learning_starts_env_steps`` before updating again (documented loss)."""
    device: str = "cpu"
    """Torch device of the learner."""
    torch_threads: int = 1
    """``torch.set_num_threads``."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Also write TensorBoard events (besides ``metrics.jsonl``)."""

    RENAMED_FIELDS: ClassVar[Mapping[str, str]] = RENAMED_RUN_FIELDS
    """Older keys :func:`from_dict` refuses with their new name."""

    def problems(self) -> list[str]:
        """Every invalid value of the run-level fields, one message each (a subclass appends
        its own to ``super().problems()``)."""
        problems = super().problems()
        for name in ("num_envs", "total_env_steps", "replay_capacity_env_steps",
                     "eval_every_env_steps", "eval_episodes", "checkpoint_every_env_steps",
                     "keep_checkpoints", "torch_threads"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.learning_starts_env_steps < 0:
            problems.append(
                f"learning_starts_env_steps must be >= 0 (got {self.learning_starts_env_steps})")
        if not self.updates_per_env_step > 0:
            problems.append(
                f"updates_per_env_step must be > 0 (got {self.updates_per_env_step})")
        return problems

