"""The protocols every learner implements (Acme / rlax style: small named seams).

:class:`Agent` is what weight transfer, freezing and checkpointing see of a learner: its
networks as *named components* (``R2D2Agent``: ``torso``, ``core``, ``head``; ``SACAgent``:
``encoder``, ``actor``, ``critic``; ``EfficientZeroLearner``: ``representation``, ``dynamics``,
``prediction``, ``projection``), its target copies of them, its optimizers, which components
are frozen, and its whole resumable state as flat tensors (safetensors-ready, no pickle).

A component's tensors are addressed as ``<component>/<state_dict key>`` (e.g.
``torso/convs.0.weight``); see :func:`rltransfer.core.checkpoint_components.component_tensors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["Agent", "UpdateResult"]


@dataclass(frozen=True)
class UpdateResult:
    """What every agent's ``update(batch)`` returns (the same for R2D2, SAC, EfficientZero).

    Attributes:
        metrics: scalar training metrics of this update (losses, Q / value means, ...), by
            name; written to ``metrics.jsonl`` / TensorBoard by the training loop.
        priorities: ``float64[B]``, the new replay priorities of the ``B`` sampled items in
            batch order (R2D2: ``eta * max|delta| + (1 - eta) * mean|delta|`` per sequence;
            EfficientZero: the first step's value error), or ``None`` when the agent's replay
            is uniform (SAC). The caller writes them back with the batch's indices.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    priorities: np.ndarray | None = None


@runtime_checkable
class Agent(Protocol):
    """A learner whose networks can be transferred, frozen and checkpointed by name.

    Attributes:
        frozen: names of the components excluded from training (a subset of
            ``named_components()``).
    """

    frozen: set[str]

    def named_components(self) -> dict[str, nn.Module]:
        """The online networks by component name, in forward order. Loading into them
        changes what the agent computes; component names contain no ``.``."""
        ...

    def target_components(self) -> dict[str, nn.Module]:
        """Target copies of (some of) the components, by the same names (empty if the agent
        has no target network). Weight transfer loads these as well."""
        ...

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers stepping the trainable components (their moments for transferred
        parameters are dropped on transfer)."""
        ...

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly ``names`` (no gradient steps; BatchNorm statistics kept), unfreeze
        the others; optimizer moments of parameters that stay trainable are kept.

        Raises:
            UnknownComponentError: a name that is not a component.
        """
        ...

    def update(self, batch: Any) -> UpdateResult:
        """One learning step on a replay batch (the agent's own batch type).

        Returns:
            The step's metrics and, for prioritized replay, the sampled items' new
            priorities (:class:`UpdateResult`).

        Raises:
            NonFiniteLossError: the loss is NaN or infinite; nothing is stepped.
        """
        ...

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume (online and target networks, optimizer moments,
        counters, frozen flags) as flat contiguous CPU tensors."""
        ...

    def load_state_tensors(
        self, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None
    ) -> None:
        """Restore :meth:`state_tensors` output exactly (``meta``: the agent's own
        ``state_meta()``, checked when given). Nothing changes when a check fails.

        Raises:
            ValueError: tensors (or ``meta``) of another agent.
        """
        ...
