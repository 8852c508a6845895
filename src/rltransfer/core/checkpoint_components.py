"""One home for what every learner does with its named components: freezing, and
(de)serialising networks and optimizer moments as flat tensors.

Used by ``R2D2Agent``, ``SACAgent`` and ``EfficientZeroLearner`` (each keeps its own key
layout in checkpoints, so older checkpoints stay readable) and by
:mod:`rltransfer.methods.weight_transfer`.

Conventions: a *component* is a named ``nn.Module`` (:meth:`rltransfer.core.types.Agent.
named_components`); its *component tensors* are keyed ``<component>/<state_dict key>``
(:data:`COMPONENT_SEP`; the layout of EfficientZero's ``final/`` artifact); tensors are flat
``{key: tensor}`` dicts of contiguous CPU tensors.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from rltransfer.errors import UnknownComponentError

COMPONENT_SEP = "/"
"""Separator of component and parameter in component tensors: ``representation/layers.0.weight``
(component names and ``state_dict`` keys contain no ``/``)."""

__all__ = [
    "COMPONENT_SEP",
    "apply_frozen",
    "carry_optimizer_state",
    "check_component_names",
    "component_tensors",
    "forget_optimizer_state",
    "load_network_tensors",
    "load_optimizer_state",
    "optimizer_tensors",
    "read_network_tensors",
    "read_optimizer_tensors",
    "summarise_problems",
    "tensor_problems",
    "unexpected_tensors",
]


def check_component_names(
    names: Iterable[str], known: Iterable[str], action: str, owner: str = "this agent"
) -> tuple[str, ...]:
    """``names`` in order, without repeats, after checking each is one of ``known``.

    Args:
        names: requested component names.
        known: the agent's component names (listed in the error).
        action: what is being done, for the message (``"freeze"``, ``"transfer"``).
        owner: who owns the components, for the message.

    Raises:
        UnknownComponentError: some names are not in ``known``; the message lists them and
            ``known``.
    """
    wanted = tuple(dict.fromkeys(names))
    known_list = list(known)
    unknown = [n for n in wanted if n not in known_list]
    if unknown:
        raise UnknownComponentError(
            f"cannot {action} {', '.join(map(repr, unknown))}: unknown components; {owner}'s "
            f"component modules are {', '.join(known_list)}"
        )
    return wanted


def component_tensors(
    modules: Mapping[str, nn.Module], prefix: str = "", sep: str = COMPONENT_SEP
) -> dict[str, torch.Tensor]:
    """Every ``state_dict`` entry (parameters and buffers) of ``modules`` as
    ``{prefix}{component}{sep}{key}`` -> detached contiguous CPU copy.

    With the defaults the keys are the component tensors' keys ``<component>/<key>`` (what
    :func:`rltransfer.methods.weight_transfer.transfer_components` reads); with ``sep="."``
    and no prefix, those of ``nn.ModuleDict(modules).state_dict()``.
    """
    out: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{prefix}{name}{sep}{key}"] = value.detach().cpu().clone().contiguous()
    return out


def tensor_problems(
    given: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    prefix: str = "",
    *,
    strict: bool = True,
) -> list[str]:
    """What keeps ``given`` from loading where ``expected`` lives, one line per problem.

    Args:
        given: ``key -> tensor`` to load (keys relative to ``prefix``).
        expected: ``key -> tensor`` of the destination (e.g. a ``state_dict()``).
        prefix: prepended to every key in the messages.
        strict: also report missing and unexpected keys (a shape mismatch of a key both
            have is always reported).

    Returns:
        ``"missing <keys>"``, ``"unexpected <keys>"`` (at most 5 named each) and
        ``"<key>: saved (shape) vs this agent (shape)"`` lines; empty when it fits.
    """
    problems: list[str] = []
    if strict:
        missing = sorted(set(expected) - set(given))
        unexpected = sorted(set(given) - set(expected))
        if missing:
            problems.append(f"missing {[prefix + k for k in missing[:5]]}"
                            + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if unexpected:
            problems.append(f"unexpected {[prefix + k for k in unexpected[:5]]}"
                            + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5
                               else ""))
    for k in sorted(set(expected) & set(given)):
        theirs, mine = tuple(given[k].shape), tuple(expected[k].shape)
        if theirs != mine:
            problems.append(f"{prefix}{k}: saved {theirs} vs this agent {mine}")
    return problems


def read_network_tensors(
    tensors: Mapping[str, torch.Tensor], networks: Mapping[str, nn.Module]
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Split saved tensors by network and check each part against its network.

    Args:
        tensors: flat saved tensors (``state_tensors`` output).
        networks: ``prefix -> module`` (e.g. ``{"online.": net, "target.": target}``, or one
            entry per component: ``{"representation/": ..., "target/representation/": ...}``);
            a module's tensors are the keys ``prefix + <state_dict key>``.

    Returns:
        ``(states, problems)``: ``states[prefix]`` is ``{state_dict key: tensor}`` for that
        module (ready for :func:`load_network_tensors` once ``problems`` is empty);
        ``problems`` lists missing, unexpected and mis-shaped keys (:func:`tensor_problems`).
    """
    states: dict[str, dict[str, torch.Tensor]] = {}
    problems: list[str] = []
    for prefix, module in networks.items():
        given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        problems += tensor_problems(given, module.state_dict(), prefix)
        states[prefix] = given
    return states, problems


def unexpected_tensors(
    tensors: Iterable[str], prefixes: tuple[str, ...], keys: Collection[str]
) -> list[str]:
    """``"unexpected <key>"`` for every key of ``tensors`` that is neither one of ``keys``
    (a learner's scalars: ``num_updates``, ...) nor starts with one of ``prefixes`` (the parts
    read by :func:`read_network_tensors` / :func:`read_optimizer_tensors`)."""
    return [f"unexpected {k}" for k in tensors if k not in keys and not k.startswith(prefixes)]


def load_network_tensors(
    networks: Mapping[str, nn.Module], states: Mapping[str, Mapping[str, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> None:
    """Load ``states[prefix]`` into ``networks[prefix]`` (strict, no gradient; values are
    moved to ``device`` first): the second half of :func:`read_network_tensors`."""
    with torch.no_grad():
        for prefix, module in networks.items():
            module.load_state_dict({k: v.to(device) for k, v in states[prefix].items()})


def summarise_problems(problems: list[str], limit: int = 10) -> str:
    """``problems`` joined by ``"; "``, the first ``limit`` of them and a count of the rest."""
    text = "; ".join(problems[:limit])
    if len(problems) > limit:
        text += f" (and {len(problems) - limit} more)"
    return text


def apply_frozen(
    components: Mapping[str, nn.Module], frozen: Iterable[str]
) -> list[tuple[str, nn.Parameter]]:
    """Turn gradients off for the ``frozen`` components and on for the others.

    Returns:
        The trainable parameters as ``(<component>.<name>, parameter)``, in component order
        (what the optimizer is built from).
    """
    frozen_set = set(frozen)
    trainable: list[tuple[str, nn.Parameter]] = []
    for name, module in components.items():
        train = name not in frozen_set
        module.requires_grad_(train)
        if train:
            trainable += [(f"{name}.{pname}", p) for pname, p in module.named_parameters()]
    return trainable


def carry_optimizer_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> None:
    """Give ``new`` the moments ``old`` holds for the parameters both optimize (after a
    rebuild for freezing: parameters that stay trainable keep their moments)."""
    for group in new.param_groups:
        for p in group["params"]:
            if p in old.state:
                new.state[p] = old.state[p]


def forget_optimizer_state(
    optimizers: Iterable[torch.optim.Optimizer], modules: Iterable[nn.Module]
) -> None:
    """Drop every optimizer's moments of the parameters of ``modules`` (weights that were
    just replaced start their moments afresh)."""
    params = [p for m in modules for p in m.parameters()]
    for opt in optimizers:
        for p in params:
            opt.state.pop(p, None)


def optimizer_tensors(
    optimizer: torch.optim.Optimizer, names: Mapping[int, str], prefix: str, sep: str = "."
) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as ``{prefix}{name}{sep}{field}`` tensors.

    Args:
        optimizer: e.g. Adam (fields ``exp_avg``, ``exp_avg_sq``, ``step``) or SGD
            (``momentum_buffer``).
        names: ``id(parameter) -> name``; parameters without a name are skipped.
        prefix, sep: key layout, e.g. ``"optimizer."`` and ``"."``.

    Non-tensor fields (a float ``step``) become 0-d float tensors.
    """
    out: dict[str, torch.Tensor] = {}
    for p, state in optimizer.state.items():
        name = names.get(id(p))
        if name is None:
            continue
        for field, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(float(value))
            out[f"{prefix}{name}{sep}{field}"] = t.detach().cpu().clone().contiguous()
    return out


def read_optimizer_tensors(
    tensors: Mapping[str, torch.Tensor], prefix: str, names: Collection[str], sep: str = "."
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Read back :func:`optimizer_tensors` output: the keys ``{prefix}{name}{sep}{field}``.

    Args:
        tensors: flat saved tensors; keys without ``prefix`` are ignored.
        prefix, sep: the key layout given to :func:`optimizer_tensors`.
        names: the parameter names this optimizer may hold state for.

    Returns:
        ``(saved, problems)``: ``saved`` is ``name -> field -> tensor`` (what
        :func:`load_optimizer_state` takes); ``problems`` has ``"unexpected <key>"`` for
        every key whose name is not in ``names``.
    """
    saved: dict[str, dict[str, torch.Tensor]] = {}
    problems: list[str] = []
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        name, _, field = key[len(prefix):].rpartition(sep)
        if name in names:
            saved.setdefault(name, {})[field] = value
        else:
            problems.append(f"unexpected {key}")
    return saved, problems


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    names: Mapping[int, str],
    saved: Mapping[str, Mapping[str, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> None:
    """Set ``optimizer``'s per-parameter state from ``saved`` (``name -> field -> tensor``,
    as read back from :func:`optimizer_tensors`); parameters absent from ``saved`` start
    with no state. Tensors are copied (two agents loaded from one dict share nothing);
    ``step`` stays on the CPU."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sd: dict[str, Any] = optimizer.state_dict()
    sd["state"] = {
        i: {f: (v.detach().clone() if f == "step" else v.detach().to(device).clone())
            for f, v in saved[names[id(p)]].items()}
        for i, p in enumerate(params) if id(p) in names and names[id(p)] in saved
    }
    optimizer.load_state_dict(sd)
