"""Records of per-env arrays that actors hand to replay, locally or across Ray."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Self

import numpy as np

__all__ = ["ArrayRecord"]


@dataclass
class ArrayRecord:
    """Base of a dataclass whose fields are numpy arrays with the same leading axes: one
    vector-env step ``[B, ...]`` of ``B`` envs, or ``T`` steps stacked time-major
    ``[T, B, ...]``. Subclasses (``@dataclass``) declare the fields; this base gives the
    transport (plain ``{name: array}`` dicts, what Ray ships), stacking and slicing.

    Used by :class:`rltransfer.agents.r2d2.actor.StepBatch` and
    :class:`rltransfer.agents.efficientzero.actor.SelfPlayStep`.
    """

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as a ``{name: array}`` dict (plain data for transport)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Self:
        """Inverse of :meth:`to_arrays` (other keys are ignored).

        Raises:
            KeyError: a field is missing.
        """
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})

    @classmethod
    def stack(cls, steps: Sequence[Self]) -> Self:
        """``T`` single steps ``[B, ...]`` -> one time-major record ``[T, B, ...]``."""
        return cls(**{f.name: np.stack([np.asarray(getattr(s, f.name)) for s in steps])
                      for f in fields(cls)})

    @classmethod
    def concat_envs(cls, records: Sequence[Self], axis: int) -> Self:
        """Join the env axis ``axis`` (0 for single steps, 1 for stacked ``[T, B]``) of several
        records, e.g. all actors' envs in global env order."""
        return cls(**{f.name: np.concatenate([getattr(r, f.name) for r in records], axis=axis)
                      for f in fields(cls)})

    def own(self, *names: str) -> None:
        """Replace the fields ``names`` by copies that own their memory (a vector env may
        reuse its observation buffer on the next step)."""
        for name in names:
            setattr(self, name, np.array(getattr(self, name), copy=True))

    def at(self, t: int) -> Self:
        """Step ``t`` of a stacked record (``[B, ...]`` views)."""
        return type(self)(**{f.name: getattr(self, f.name)[t] for f in fields(self)})
