"""Typed dataclass configs: built from dicts with unknown keys rejected, saved as JSON.

The CLI (tyro) builds configs from flags; this module is the other door, used to load the
resolved ``config.json`` of a run directory and the metadata of checkpoints.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

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
        ConfigError: an unknown key (with the closest valid names), or a value of the wrong
            type.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        hints_text = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(fields), n=3)
            suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
            hints_text.append(f"{key!r}{suggestion}")
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(hints_text)} for {cls.__name__}; valid keys: "
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
