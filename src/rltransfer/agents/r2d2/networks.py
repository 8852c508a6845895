"""The R2D2 Q-network: named components ``torso -> core -> head`` and their forward passes.

Kapturowski et al. 2019 (R2D2), Sec. 2-3: a torso (conv or MLP encoder,
:mod:`rltransfer.nets.encoders`), a core (``Linear + ReLU``, or the LSTM fed ``[features,
one-hot a_{t-1}, r^e_{t-1}, r^i_{t-1}]`` and NGU's one-hot policy index, :mod:`rltransfer.nets.
cores`) and a dueling head (Wang et al. 2016, :mod:`rltransfer.nets.heads`). The components
are addressed by name (:data:`MODULE_NAMES`) for weight transfer and freezing.

:func:`feedforward_q` is the hot path of acting and learning with a feedforward core. It runs
the same ATen operations as the modules' ``forward`` methods, called directly (``F.linear``
with the layer's weight, ``torch.relu``, ...), which skips ``nn.Module.__call__``'s per-module
bookkeeping: on the MinAtar comparison network (batch 1, one CPU thread) 45 us through the
modules, 28 us here, 20 us for the bare operations. The results are bit-identical to calling
the modules. A module with hooks of its own (or a compiled one) is called as a module, so its
hooks run; with a global module hook every module is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as _module_globals

from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.nets.cores import FeedforwardCore, LSTMCore
from rltransfer.nets.encoders import Torso, make_torso
from rltransfer.nets.heads import DuelingHead, QHead

__all__ = [
    "MODULE_NAMES",
    "SequenceInputs",
    "build_q_network",
    "feedforward_q",
    "unroll",
]

MODULE_NAMES: tuple[str, ...] = ("torso", "core", "head")
"""Names of the agent's modules, in forward order (what weight transfer loads or freezes)."""


def build_q_network(
    config: R2D2Config,
    obs_shape: tuple[int, int, int],
    obs_scale: float,
    num_actions: int,
    num_env_actions: int,
) -> nn.ModuleDict:
    """The online network ``{"torso", "core", "head"}`` of ``config`` (on the CPU).

    Args:
        config: ``torso``, ``feature_dim``, ``core`` (``"feedforward"``: ``Linear(hidden) +
            ReLU``; ``"lstm"``: :class:`~rltransfer.nets.cores.LSTMCore` of ``lstm_hidden``),
            ``core_reward_inputs``, ``num_policies``, ``hidden``, ``dueling``.
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` observations to ``[0, 1]``.
        num_actions: Q outputs (|A|, or |A| + 1 with Behavior Transfer's a+).
        num_env_actions: |A|, the LSTM core's previous-action one-hot width.

    Returns:
        ``nn.ModuleDict`` mapping ``uint8[B, C*S, H, W]`` through ``torso`` (``float32[B,
        feature_dim]``), ``core`` and ``head`` to ``float32[B, num_actions]``.
    """
    torso = make_torso(obs_shape, obs_scale, config.feature_dim, kind=config.torso)
    core: FeedforwardCore | LSTMCore = (
        LSTMCore(torso.out_dim, num_env_actions, config.lstm_hidden,
                 reward_inputs=config.core_reward_inputs, num_policies=config.num_policies)
        if config.core == "lstm" else FeedforwardCore(torso.out_dim, config.hidden)
    )
    core_out = int(core.out_dim)
    head: nn.Module = (
        DuelingHead(core_out, config.hidden, num_actions) if config.dueling
        else QHead(core_out, config.hidden, num_actions)
    )
    return nn.ModuleDict({"torso": torso, "core": core, "head": head})


# ---------------------------------------------------------------------- feedforward pass
def _own_hooks(m: nn.Module) -> bool:
    """Whether calling ``m`` would do more than ``m.forward``: hooks on it, or a compiled
    call (``m.compile()``)."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or m._backward_pre_hooks or m._compiled_call_impl is not None)


def _sequential(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for child in m._modules.values():
        child = cast(nn.Module, child)
        kind = type(child)
        if kind is nn.Linear and not _own_hooks(child):  # Linear.forward
            params = child._parameters
            x = F.linear(x, cast(torch.Tensor, params["weight"]), params["bias"])
        elif (kind is nn.ReLU and not cast(nn.ReLU, child).inplace
              and not _own_hooks(child)):  # ReLU.forward
            x = torch.relu(x)
        else:
            x = _call(child, x)
    return x


def _torso(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    torso = cast(Torso, m)
    if x.dim() != 4 or tuple(x.shape[1:]) != torso.obs_shape:
        return cast(torch.Tensor, torso(x))  # the module raises its ValueError
    if x.dtype == torch.uint8:
        # x / 1.0 == x exactly (IEEE division is correctly rounded), so the division is
        # skipped for 0/1 planes (MinAtar) without changing a bit.
        x = x.float() if torso.obs_scale == 1.0 else x.float() / torso.obs_scale
    else:
        x = x.float()
    return _call(torso.encoder, x)


def _feedforward_core(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    core = cast(FeedforwardCore, m)
    if x.dim() != 2 or x.shape[1] != core.in_dim:
        return cast(torch.Tensor, core(x, None)[0])  # the module raises its ValueError
    return _call(core.net, x)


def _dueling(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    head = cast(DuelingHead, m)
    adv = _call(head.advantage, x)
    return _call(head.value, x) + adv - adv.mean(dim=1, keepdim=True)


def _linear(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    params = m._parameters
    return F.linear(x, cast(torch.Tensor, params["weight"]), params["bias"])


def _relu(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return cast(torch.Tensor, m(x)) if cast(nn.ReLU, m).inplace else torch.relu(x)


def _conv2d(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    conv = cast(nn.Conv2d, m)
    return conv._conv_forward(x, conv.weight, conv.bias)


def _flatten(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    flatten = cast(nn.Flatten, m)
    return x.flatten(flatten.start_dim, flatten.end_dim)


def _qhead(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _call(cast(QHead, m).net, x)


def _identity(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


_DIRECT: dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    nn.Sequential: _sequential,
    Torso: _torso,
    FeedforwardCore: _feedforward_core,
    QHead: _qhead,
    DuelingHead: _dueling,
    nn.Linear: _linear,
    nn.ReLU: _relu,
    nn.Conv2d: _conv2d,
    nn.Flatten: _flatten,
    nn.Identity: _identity,
}
"""Module types whose ``forward`` is run here op by op (exact type match; a subclass, which
may override ``forward``, is called as a module)."""


def _call(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``m``'s forward on ``x``: op by op for the types in :data:`_DIRECT` without hooks of
    their own, else by calling the module (which runs its hooks)."""
    direct = _DIRECT.get(type(m))
    if direct is None or _own_hooks(m):
        out = m(x, None)[0] if isinstance(m, FeedforwardCore) else m(x)
        return cast(torch.Tensor, out)
    return direct(m, x)


def feedforward_q(net: nn.ModuleDict, obs: torch.Tensor) -> torch.Tensor:
    """Q-values of a feedforward network: ``head(core(torso(obs)))``.

    Bit-identical to calling the modules (see the module docstring); a module with hooks of
    its own is called, so its hooks run (with a global module hook, every module is called).

    Args:
        net: :func:`build_q_network` output with a feedforward core (online or target).
        obs: ``uint8[B, C*S, H, W]`` stacked observations (or floats already scaled).

    Returns:
        ``float32[B, num_actions]``.

    Raises:
        ValueError: the observation or feature shape does not fit (from the modules).
    """
    torso, core, head = net["torso"], net["core"], net["head"]
    if (_module_globals._global_forward_hooks or _module_globals._global_forward_pre_hooks
            or _module_globals._global_backward_hooks
            or _module_globals._global_backward_pre_hooks):
        out, _ = core(torso(obs), None)
        q: torch.Tensor = head(out)
        return q
    return _call(head, _call(core, _call(torso, obs)))


# ---------------------------------------------------------------------- sequences (LSTM)
@dataclass(frozen=True)
class SequenceInputs:
    """The network inputs of replayed sequences, time-major, on the network's device.

    Attributes:
        obs: ``uint8[T, N, C*S, H, W]``, ``T = burn_in + sequence_length``.
        prev_action: ``int64[T, N]`` (-1: none).
        prev_reward: ``float32[T, N]`` extrinsic ``r_{t-1}``.
        prev_intrinsic_reward: ``float32[T, N]`` intrinsic ``r_{t-1}``.
        in_episode: ``bool[T, N]``; false on front padding (the episode began later).
        policy_index: ``int64[T, N]`` NGU policy ``j``, or ``None`` for a single policy.
        core_state: ``float32[N, D]`` LSTM state stored at the window's first step.
    """

    obs: torch.Tensor
    prev_action: torch.Tensor
    prev_reward: torch.Tensor
    prev_intrinsic_reward: torch.Tensor
    in_episode: torch.Tensor
    policy_index: torch.Tensor | None
    core_state: torch.Tensor


def unroll(net: nn.ModuleDict, inputs: SequenceInputs, burn_in: int, *,
           grad: bool) -> torch.Tensor:
    """Q-values over the training part of replayed sequences (R2D2 Sec. 3, burn-in).

    The burn-in prefix (steps ``[0, burn_in)``) is unrolled without gradient from the stored
    state; steps outside the episode (front padding, where the episode started inside the
    prefix) leave the state unchanged. The training part (``[burn_in, T)``) is then unrolled
    in one LSTM call from that (detached) state.

    Args:
        net: :func:`build_q_network` output with an LSTM core.
        inputs: the sequences (:class:`SequenceInputs`).
        burn_in: prefix length, ``0 <= burn_in < T``.
        grad: keep the graph of the training part.

    Returns:
        ``float32[N, L, num_actions]``, ``L = T - burn_in``.
    """
    x, pol = inputs.obs, inputs.policy_index
    t_len, n = x.shape[:2]
    obs_shape = tuple(x.shape[2:])
    prev_a, prev_r, prev_ri = inputs.prev_action, inputs.prev_reward, inputs.prev_intrinsic_reward
    in_ep = inputs.in_episode
    state = inputs.core_state
    core = net["core"]
    bi = burn_in
    if bi:
        with torch.no_grad():
            feats = net["torso"](x[:bi].reshape(bi * n, *obs_shape)).reshape(bi, n, -1)
            if bool(in_ep[:bi].all()):  # no front padding: one LSTM call
                _, state = core(feats, state, prev_a[:bi], prev_r[:bi], prev_ri[:bi],
                                policy_index=None if pol is None else pol[:bi])
            else:
                for k in range(bi):
                    _, new = core(feats[k], state, prev_a[k], prev_r[k], prev_ri[k],
                                  policy_index=None if pol is None else pol[k])
                    state = torch.where(in_ep[k, :, None], new, state)
    state = state.detach()
    with torch.set_grad_enabled(grad):
        length = t_len - bi
        feats = net["torso"](x[bi:].reshape(length * n, *obs_shape)).reshape(length, n, -1)
        out, _ = core(feats, state, prev_a[bi:], prev_r[bi:], prev_ri[bi:],
                      policy_index=None if pol is None else pol[bi:])
        q: torch.Tensor = net["head"](out.reshape(length * n, -1)).reshape(length, n, -1)
    return q.transpose(0, 1)
