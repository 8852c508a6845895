"""Weight transfer for R2D2: initialise a new agent from a pretrained one, by named module.

The R2D2-specific layer over :mod:`rltransfer.methods.weight_transfer` (which works for any
agent by component name): init modes, the spaces check, and the Behavior Transfer head with
its extra action a+.

Campos et al. 2021 (Sec. 5, Figure 6) compare *full* initialisation (every weight, head
included) and *partial* initialisation (torso and recurrent core loaded, head re-initialised);
either may be combined with Behavior Transfer. Modules are named ``torso``, ``core``, ``head``.

Full init of a Behavior Transfer agent, whose head has one more output (a+) than the
pretrained one: every head tensor is loaded, except that the output layer's a+ row (the last
row of its weight and bias) keeps the new agent's fresh initialisation. For the dueling head
(Wang et al. 2016) that is the advantage stream's output layer; the value stream and the
advantage hidden layer are loaded whole (docs/decisions.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rltransfer.agents.agent_policy import POLICY_PREFIX
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.core.checkpoint_components import check_component_names
from rltransfer.core.policy import SpaceMismatchError
from rltransfer.methods.weight_transfer import (
    freeze_components,
    load_component_tensors,
    transfer_components,
)

INIT_MODULES: dict[str, tuple[str, ...]] = {
    "none": (),
    "partial": ("torso", "core"),
    "full": ("torso", "core", "head"),
}


def check_spaces(
    meta: dict[str, Any], obs_shape: tuple[int, ...], num_env_actions: int, source: str
) -> None:
    """Stop with one message naming both sides if spaces differ.

    Raises:
        SpaceMismatchError: observation shape or action count differ.
    """
    arch = meta.get("architecture", {})
    theirs_obs = tuple(arch.get("obs_shape", ()))
    theirs_act = arch.get("num_env_actions")
    problems = []
    if theirs_obs != tuple(obs_shape):
        problems.append(f"observation shape {theirs_obs} (pretrained) vs {tuple(obs_shape)} (task)")
    if theirs_act != num_env_actions:
        problems.append(f"{theirs_act} actions (pretrained) vs {num_env_actions} (task)")
    if problems:
        raise SpaceMismatchError(
            f"the pretrained policy {source} (env {arch.get('env_id')}) does not fit this task: "
            + "; ".join(problems)
            + ". Pretrain on an environment with the same spaces, or drop --init/--prior."
        )


def head_output_layer(agent: R2D2Agent) -> str:
    """Name (within the head) of the Q-head's output layer: the last ``nn.Linear`` with
    ``agent.num_actions`` outputs (``advantage.2`` of the dueling head, ``net.2`` of the
    plain one).

    Raises:
        ValueError: the head has no such layer.
    """
    names = [name for name, m in agent.head.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == agent.num_actions]
    if not names:
        raise ValueError(f"the Q head has no Linear layer with {agent.num_actions} outputs")
    return names[-1]


def load_head_with_extra_action(
    agent: R2D2Agent, tensors: dict[str, torch.Tensor], num_env_actions: int, source: str
) -> None:
    """Load a pretrained |A|-output head into a head with |A| + 1 outputs (a+ last).

    Every head tensor is copied, except the output layer's weight ``[|A| + 1, hidden]`` and
    bias ``[|A| + 1]``, of which rows ``0..|A|-1`` are copied and row ``|A|`` (a+) keeps its
    current (fresh) values. Online and target heads end equal.

    Raises:
        CheckpointError: a head tensor is missing or has another shape (other than the one
            missing a+ row); nothing is copied then.
    """
    plan = _extra_head_plan(agent, tensors, num_env_actions, source)
    with torch.no_grad():
        for dest, src, is_output in plan:
            target = dest[:num_env_actions] if is_output else dest
            target.copy_(src.to(dest.device, dest.dtype))
    agent.sync_target()


def _extra_head_plan(
    agent: R2D2Agent, tensors: dict[str, torch.Tensor], num_env_actions: int, source: str
) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """``(dest, src, is_output_layer)`` for every head tensor; raises CheckpointError (see
    :func:`load_head_with_extra_action`) before anything is copied."""
    out_layer = head_output_layer(agent)
    plan: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
    problems: list[str] = []
    for key, dest in agent.head.state_dict(keep_vars=True).items():
        full = f"{POLICY_PREFIX}head.{key}"
        if full not in tensors:
            problems.append(f"head.{key}: missing in {source}")
            continue
        src = tensors[full]
        is_output = key.rsplit(".", 1)[0] == out_layer
        want = ((num_env_actions, *dest.shape[1:]) if is_output else tuple(dest.shape))
        if tuple(src.shape) != tuple(want):
            problems.append(f"head.{key}: checkpoint {tuple(src.shape)} vs expected {want}")
            continue
        plan.append((dest, src, is_output))
    if problems:
        raise CheckpointError(
            f"cannot load the head (all but a+) from {source}:\n  " + "\n  ".join(problems)
        )
    return plan


def initialise_from(
    agent: R2D2Agent,
    path: str | Path,
    mode: str,
    num_env_actions: int,
    freeze: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Load ``mode``'s modules of a pretrained agent into ``agent`` and freeze ``freeze``.

    Args:
        agent: freshly built agent for the new task.
        path: checkpoint or run directory of the pretrained agent.
        mode: ``"full"`` (torso, core, head), ``"partial"`` (torso, core), or ``"none"``.
            Full init of an agent with the extra action a+ (``agent.num_actions ==
            num_env_actions + 1``) from one without loads the head's |A| action rows and
            leaves a+'s row freshly initialised (:func:`load_head_with_extra_action`).
        num_env_actions: |A| of the new task (checked against the pretrained one).
        freeze: module names whose parameters stop training.

    Returns:
        The pretrained checkpoint's metadata.

    Raises:
        ValueError: unknown mode.
        UnknownComponentError: unknown module name.
        SpaceMismatchError: the spaces differ.
        CheckpointError: missing or corrupt checkpoint, or a mis-shaped head (with a+).
        ComponentMismatchError: missing or shape-mismatched module tensors.
    """
    if mode not in INIT_MODULES:
        raise ValueError(f"unknown init mode {mode!r}; choose one of {sorted(INIT_MODULES)}")
    check_component_names(freeze, agent.named_components(), "freeze", "R2D2Agent")
    components, meta, ckpt = load_component_tensors(path)
    check_spaces(meta, agent.obs_shape, num_env_actions, str(ckpt))
    load_modules = INIT_MODULES[mode]
    pretrained_actions = int(meta.get("architecture", {}).get("num_actions", num_env_actions))
    extra_head = ("head" in load_modules and agent.num_actions == num_env_actions + 1
                  and pretrained_actions == num_env_actions)
    tensors = {f"{POLICY_PREFIX}{k.replace('/', '.', 1)}": v for k, v in components.items()}
    if extra_head:
        # Check the head before loading anything, so that a bad checkpoint changes nothing.
        _extra_head_plan(agent, tensors, num_env_actions, str(ckpt))
        load_modules = tuple(m for m in load_modules if m != "head")
    if load_modules:
        transfer_components(agent, components, load_modules, source=str(ckpt))
    if extra_head:
        load_head_with_extra_action(agent, tensors, num_env_actions, str(ckpt))
    if freeze:
        freeze_components(agent, freeze)
    return meta
