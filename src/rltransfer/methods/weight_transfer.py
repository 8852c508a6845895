"""Weight transfer and freezing for any :class:`~rltransfer.core.types.Agent`, by component
name.

Transfer by initialisation: a new agent starts from some components of a pretrained one and
may keep some of them frozen. Campos et al. 2021 (Sec. 5, Fig. 6) do it for R2D2 (``torso``,
``core``, ``head``; full vs partial init); XTRA (Xu et al. 2023, Sec. 4.2) for EfficientZero
(``representation``, ``dynamics``, ``prediction``; transferring h, h+g or h+g+f, optionally
frozen); Kadavath et al. 2021 for a pixel SAC ``encoder``.

Component tensors are keyed ``<component>/<state_dict key>``
(:func:`rltransfer.core.checkpoint_components.component_tensors`);
:func:`checkpoint_component_tensors` reads them from any of the three agents' checkpoints.
Every check runs before anything is loaded: a failed transfer leaves the agent unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from rltransfer.core.checkpoint_components import (
    COMPONENT_SEP,
    check_component_names,
    component_tensors,
    forget_optimizer_state,
    summarise_problems,
    tensor_problems,
)
from rltransfer.core.types import Agent
from rltransfer.errors import ComponentMismatchError

__all__ = [
    "agent_component_tensors",
    "checkpoint_component_tensors",
    "freeze_components",
    "load_component_tensors",
    "transfer_components",
]

_NOT_COMPONENTS = frozenset(
    {"target", "optimizer", "learner", "selfplay", "replay", "rng", "agent", "policy",
     "intrinsic"}
)
"""First key segments of checkpoint tensors that are not an EfficientZero-style component."""


def agent_component_tensors(agent: Agent) -> dict[str, torch.Tensor]:
    """The agent's online components as ``<component>/<key>`` CPU copies (what
    :func:`transfer_components` reads)."""
    return component_tensors(agent.named_components())


def checkpoint_component_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The component tensors ``<component>/<key>`` held in a checkpoint of any agent.

    * R2D2 (``rltransfer train`` / ``pretrain``): ``policy/<component>.<key>``;
    * SAC (``train-sac``): ``agent/online.<component>.<key>``;
    * EfficientZero (``train-ez``): ``<component>/<key>`` already (targets, optimizer,
      replay, RNG and self-play tensors are skipped).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        for head in ("policy/", "agent/online."):
            if key.startswith(head):
                comp, _, rest = key[len(head):].partition(".")
                out[f"{comp}{COMPONENT_SEP}{rest}"] = value
                break
        else:
            first, sep, _ = key.partition(COMPONENT_SEP)
            if sep and first not in _NOT_COMPONENTS:
                out[key] = value
    return out


def load_component_tensors(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """Read the component tensors of a run directory or checkpoint directory.

    A run directory resolves to its ``final/`` checkpoint if it finished, else its latest
    ``checkpoints/step_*`` (:func:`rltransfer.agents.agent_policy.resolve_checkpoint`).

    Returns:
        ``(component tensors, meta, checkpoint path)``.

    Raises:
        CheckpointError: nothing loadable there, or a corrupt checkpoint.
    """
    from rltransfer.agents.agent_policy import resolve_checkpoint
    from rltransfer.core.checkpoint import load_checkpoint

    ckpt = resolve_checkpoint(path)
    tensors, meta = load_checkpoint(ckpt)
    return checkpoint_component_tensors(tensors), meta, ckpt


def transfer_components(
    dst: Agent,
    src_tensors: Mapping[str, torch.Tensor],
    components: Iterable[str],
    strict: bool = True,
    source: str = "the source",
) -> None:
    """Copy ``components`` from ``src_tensors`` into ``dst``'s online and target networks.

    Args:
        dst: the agent to initialise.
        src_tensors: ``<component>/<state_dict key>`` tensors
            (:func:`agent_component_tensors`, :func:`checkpoint_component_tensors`).
        components: names among ``dst.named_components()``.
        strict: every tensor of each component must be given and nothing else under its
            name (as ``load_state_dict(strict=True)``); ``False`` loads the tensors given and
            ignores the rest. A shape mismatch is an error either way.
        source: how to name the source in messages (a checkpoint path).

    Copies are made on ``dst``'s device and dtype; the target copy of a component (if
    ``dst`` has one) gets the same values; optimizer moments of the loaded parameters are
    dropped.

    Raises:
        UnknownComponentError: a name that is not one of ``dst``'s components (the message
            lists them).
        ComponentMismatchError: a component (with tensors) that has none in ``src_tensors``,
            or (strict)
            missing / unexpected tensors, or a tensor of another shape (named, with both
            shapes). Nothing is loaded when any check fails.
    """
    online = dst.named_components()
    names = check_component_names(components, online, "transfer", type(dst).__name__)
    targets = dst.target_components()
    plan: dict[str, dict[str, torch.Tensor]] = {}
    problems: list[str] = []
    for name in names:
        head = f"{name}{COMPONENT_SEP}"
        given = {k[len(head):]: v for k, v in src_tensors.items() if k.startswith(head)}
        mine = online[name].state_dict()
        if not given and mine:
            problems.append(f"no {head}* tensors")
            continue
        problems += tensor_problems(given, mine, head, strict=strict)
        plan[name] = {k: v for k, v in given.items() if k in mine}
    if problems:
        raise ComponentMismatchError(
            f"cannot transfer {', '.join(names)} from {source} into this "
            f"{type(dst).__name__}: {summarise_problems(problems)}. Transfer from an agent "
            "with the same network sizes and spaces, or transfer fewer components."
        )
    with torch.no_grad():
        for name, state in plan.items():
            for module in (online[name], targets.get(name)):
                if module is None:
                    continue
                mine = module.state_dict()
                module.load_state_dict(
                    {k: v.to(mine[k].device, mine[k].dtype) for k, v in state.items()},
                    strict=strict,
                )
    forget_optimizer_state(dst.optimizers(), [online[n] for n in plan])


def freeze_components(agent: Agent, components: Iterable[str]) -> None:
    """Freeze ``components`` of ``agent`` in addition to those already frozen: no gradient
    steps, BatchNorm statistics kept (the agent's ``set_frozen``).

    Raises:
        UnknownComponentError: a name that is not one of the agent's components (the
            message lists them); nothing is frozen then.
    """
    names = check_component_names(components, agent.named_components(), "freeze",
                                  type(agent).__name__)
    agent.set_frozen(set(agent.frozen) | set(names))
