"""Weight transfer: initialise a new agent from a pretrained one, by named module.

Campos et al. 2021 (Sec. 5) compare *full* initialisation (every weight, head included) and
*partial* initialisation (torso and recurrent core loaded, head re-initialised); either may be
combined with Behavior Transfer. Modules are named ``torso``, ``core``, ``head``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rltransfer.agents.policy import load_policy_tensors, resolve_checkpoint
from rltransfer.agents.r2d2 import R2D2Agent
from rltransfer.policy import SpaceMismatchError
from rltransfer.runtime.checkpoint import load_checkpoint

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
        num_env_actions: |A| of the new task (checked against the pretrained one).
        freeze: module names whose parameters stop training.

    Returns:
        The pretrained checkpoint's metadata.

    Raises:
        ValueError: unknown mode or module name.
        SpaceMismatchError: the spaces differ.
        CheckpointError: missing, corrupt or shape-mismatched checkpoint (e.g. full init of an
            agent with the extra action a+ from one without: use partial init).
    """
    if mode not in INIT_MODULES:
        raise ValueError(f"unknown init mode {mode!r}; choose one of {sorted(INIT_MODULES)}")
    modules = sorted(agent.named_modules_for_transfer())
    unknown = set(freeze) - set(modules)
    if unknown:
        raise ValueError(f"cannot freeze {sorted(unknown)}: modules are {modules}")
    ckpt = resolve_checkpoint(path)
    tensors, meta = load_checkpoint(ckpt)
    check_spaces(meta, agent.obs_shape, num_env_actions, str(ckpt))
    if mode != "none":
        load_policy_tensors(agent, tensors, INIT_MODULES[mode], source=str(ckpt))
    if freeze:
        agent.set_frozen(set(freeze))
    return meta
