"""Replay batches checked and converted to the learner's tensors.

:func:`transition_batch` reads :meth:`rltransfer.replay.TransitionReplay.sample` output (the
feedforward learner), :func:`sequence_batch` and :func:`sequence_inputs` read
:meth:`rltransfer.replay.SequenceReplay.sample` output (the LSTM learner: loss terms, and the
network inputs of :func:`rltransfer.agents.r2d2.networks.unroll`). Each raises a ``KeyError``
naming a missing key and a ``ValueError`` naming a bad shape or action before any network
runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.networks import SequenceInputs

__all__ = [
    "SequenceBatch",
    "TransitionBatch",
    "obs_tensor",
    "sequence_batch",
    "sequence_inputs",
    "transition_batch",
]


def obs_tensor(obs: Any, obs_shape: tuple[int, int, int], device: torch.device,
               what: str = "obs") -> torch.Tensor:
    """Stacked observations as a tensor on ``device`` (no copy on the CPU when contiguous).

    Args:
        obs: ``uint8[B, C*S, H, W]`` (any array-like).
        obs_shape: the agent's ``(C*S, H, W)``.
        device: target device.
        what: the name used in the error message.

    Raises:
        ValueError: not ``[B, *obs_shape]``.
    """
    a = np.asarray(obs)
    if a.ndim != 4 or tuple(a.shape[1:]) != obs_shape:
        raise ValueError(
            f"{what} must be [B, {', '.join(map(str, obs_shape))}] (stacked frames), "
            f"got {list(a.shape)}"
        )
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


@dataclass(frozen=True)
class TransitionBatch:
    """A transition batch on the learner's device.

    Attributes:
        obs, next_obs: ``uint8[B, C*S, H, W]``.
        action: ``int64[B]`` executed env actions.
        agent_action: ``int64[B]`` the agent's choices (``action`` unless a+ was used).
        extra: ``bool[B]`` where the agent chose a+, or ``None`` when no row did.
        n_step_return, bootstrap_discount, weights: ``float32[B]``.
    """

    obs: torch.Tensor
    next_obs: torch.Tensor
    action: torch.Tensor
    agent_action: torch.Tensor
    extra: torch.Tensor | None
    n_step_return: torch.Tensor
    bootstrap_discount: torch.Tensor
    weights: torch.Tensor


def transition_batch(batch: dict[str, np.ndarray], obs_shape: tuple[int, int, int],
                     num_actions: int, device: torch.device) -> TransitionBatch:
    """Check and convert a :meth:`TransitionReplay.sample` batch.

    Args:
        batch: ``obs``, ``next_obs``, ``action``, ``n_step_return``, ``bootstrap_discount``;
            optional ``agent_action`` (default ``action``), ``extra`` (default false),
            ``weights`` (default 1).
        obs_shape: the agent's ``(C*S, H, W)``.
        num_actions: Q outputs; actions must lie in ``[0, num_actions)``.
        device: the learner's device.

    Raises:
        KeyError: a required key is missing. ValueError: bad shapes or actions.
    """
    for key in ("obs", "next_obs", "action", "n_step_return", "bootstrap_discount"):
        if key not in batch:
            raise KeyError(f"update batch lacks {key!r} (use TransitionReplay.sample)")
    obs = obs_tensor(batch["obs"], obs_shape, device, "obs")
    next_obs = obs_tensor(batch["next_obs"], obs_shape, device, "next_obs")
    b = obs.shape[0]

    # Checked and converted in numpy: one array op each, no tensor round trips.
    def vec(key: str, default: Any, dtype: Any) -> np.ndarray:
        value = np.asarray(batch[key] if key in batch else default, dtype=dtype).reshape(-1)
        if value.shape[0] != b:
            raise ValueError(f"batch[{key!r}] has {value.shape[0]} entries, obs has {b}")
        return value

    action_np = vec("action", None, np.int64)
    agent_np = vec("agent_action", None, np.int64) if "agent_action" in batch else action_np
    extra_np = vec("extra", np.zeros(b, bool), bool)
    checks = [("action", action_np)]
    if agent_np is not action_np:
        checks.append(("agent_action", agent_np))
    for name, a in checks:
        if b and (int(a.min()) < 0 or int(a.max()) >= num_actions):
            raise ValueError(
                f"batch[{name!r}] outside [0, {num_actions}): {int(a.min())}.."
                f"{int(a.max())}; is num_actions |A|+1 when the extra action is on?"
            )
    action = torch.as_tensor(action_np, device=device)
    any_extra = bool(extra_np.any())
    return TransitionBatch(
        obs=obs, next_obs=next_obs, action=action,
        agent_action=torch.as_tensor(agent_np, device=device) if any_extra else action,
        extra=torch.as_tensor(extra_np, device=device) if any_extra else None,
        n_step_return=torch.as_tensor(vec("n_step_return", None, np.float32), device=device),
        bootstrap_discount=torch.as_tensor(vec("bootstrap_discount", None, np.float32),
                                           device=device),
        weights=torch.as_tensor(vec("weights", np.ones(b, np.float32), np.float32),
                                device=device),
    )


@dataclass(frozen=True)
class SequenceBatch:
    """The loss terms of a sequence batch, over the training part (``L = T - burn_in``).

    Attributes:
        action, agent_action: ``int64[N, L]``, 0 off ``mask``.
        extra: ``bool[N, L]`` where the agent chose a+.
        n_step_return, bootstrap_discount: ``float32[N, L]``.
        bootstrap_index: ``int64[N, L]``, index into the training part (0 off ``mask``).
        mask: ``bool[N, L]``, the steps that count (``loss_mask``).
        weights: ``float32[N]`` importance-sampling weights.
    """

    action: torch.Tensor
    agent_action: torch.Tensor
    extra: torch.Tensor
    n_step_return: torch.Tensor
    bootstrap_discount: torch.Tensor
    bootstrap_index: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor


def sequence_batch(batch: dict[str, np.ndarray], burn_in: int, num_actions: int,
                   device: torch.device) -> SequenceBatch:
    """Check and convert the loss terms of a :meth:`SequenceReplay.sample` batch.

    Args:
        batch: window arrays ``[N, T]``: ``action``, ``n_step_return``,
            ``bootstrap_discount``, ``bootstrap_index`` (window index), ``loss_mask``;
            optional ``agent_action``, ``extra``; ``weights`` ``float32[N]`` (default 1);
            also checked for ``obs``, ``core_state``, ``prev_action``, ``in_episode``.
        burn_in: the prefix excluded from the loss.
        num_actions: Q outputs.
        device: the learner's device.

    Raises:
        KeyError: a required key is missing. ValueError: bad shapes, actions, or a
            bootstrap index outside the training part.
    """
    for key in ("obs", "action", "n_step_return", "bootstrap_discount", "bootstrap_index",
                "loss_mask", "core_state", "prev_action", "in_episode"):
        if key not in batch:
            raise KeyError(f"sequence batch lacks {key!r} (use SequenceReplay.sample)")
    bi = burn_in
    n = np.asarray(batch["obs"]).shape[0]

    def part(key: str, dtype: torch.dtype, default: Any = None) -> torch.Tensor:
        v = np.asarray(batch[key]) if key in batch else default
        t = torch.as_tensor(v, device=device).to(dtype)
        if t.dim() != 2 or t.shape[0] != n:
            raise ValueError(f"batch[{key!r}] must be [N={n}, T], got {list(t.shape)}")
        return t[:, bi:]

    action = part("action", torch.int64)
    agent_action = part("agent_action", torch.int64, batch["action"])
    extra = part("extra", torch.bool, np.zeros(np.shape(batch["action"]), bool))
    ret = part("n_step_return", torch.float32)
    disc = part("bootstrap_discount", torch.float32)
    boot = part("bootstrap_index", torch.int64) - bi
    mask = part("loss_mask", torch.bool)
    weights = torch.as_tensor(
        np.asarray(batch.get("weights", np.ones(n, np.float32))), device=device
    ).to(torch.float32).reshape(-1)
    length = action.shape[1]
    act_m = torch.where(mask, action, torch.zeros_like(action))
    agent_m = torch.where(mask, agent_action, torch.zeros_like(agent_action))
    for name, a in (("action", act_m), ("agent_action", agent_m)):
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= num_actions):
            raise ValueError(
                f"batch[{name!r}] outside [0, {num_actions}) at training steps; is "
                "num_actions |A|+1 when the extra action is on?"
            )
    boot = torch.where(mask, boot, torch.zeros_like(boot))
    if boot.numel() and (int(boot.min()) < 0 or int(boot.max()) >= length):
        raise ValueError("bootstrap_index must point inside the training part of the window")
    return SequenceBatch(action=act_m, agent_action=agent_m, extra=extra, n_step_return=ret,
                         bootstrap_discount=disc, bootstrap_index=boot, mask=mask,
                         weights=weights)


def sequence_inputs(
    batch: dict[str, np.ndarray],
    config: R2D2Config,
    obs_shape: tuple[int, int, int],
    state_dim: int,
    policy_tensor: Callable[[Any, tuple[int, ...]], torch.Tensor | None],
    device: torch.device,
) -> SequenceInputs:
    """The network inputs of a :meth:`SequenceReplay.sample` batch, time-major.

    Args:
        batch: ``obs`` ``uint8[N, T, C*S, H, W]``, ``prev_action``, ``prev_reward``,
            ``prev_intrinsic_reward``, ``in_episode`` ``[N, T]``, ``core_state``
            ``float32[N, D]``; ``policy_index`` ``int[N, T]`` when ``num_policies > 1``.
        config: ``burn_in``, ``sequence_length``, ``num_policies``.
        obs_shape: the agent's ``(C*S, H, W)``.
        state_dim: ``D``.
        policy_tensor: the agent's policy-index check and conversion (``None`` for one
            policy).
        device: the learner's device.

    Raises:
        ValueError: the window length is not ``burn_in + sequence_length``, wrong shapes,
            bad ``policy_index``.
        KeyError: ``policy_index`` missing with ``num_policies > 1``.
    """
    obs = np.asarray(batch["obs"])
    n, t_len = obs.shape[:2]
    bi = config.burn_in
    if t_len != bi + config.sequence_length or tuple(obs.shape[2:]) != obs_shape:
        raise ValueError(
            f"sequence obs must be [N, {bi + config.sequence_length}, "
            f"{', '.join(map(str, obs_shape))}] (burn_in + sequence_length), got "
            f"{list(obs.shape)}; build the replay with the agent's sequence settings"
        )

    def tm(key: str, dtype: torch.dtype) -> torch.Tensor:  # time-major [T, N]
        return torch.as_tensor(np.asarray(batch[key]), device=device).to(dtype).T.contiguous()

    x = torch.as_tensor(np.ascontiguousarray(obs.swapaxes(0, 1)), device=device)
    prev_a = tm("prev_action", torch.int64)
    prev_r = tm("prev_reward", torch.float32)
    prev_ri = tm("prev_intrinsic_reward", torch.float32)
    in_ep = tm("in_episode", torch.bool)
    pol: torch.Tensor | None = None
    if config.num_policies > 1:
        if "policy_index" not in batch:
            raise KeyError("sequence batch lacks 'policy_index' (num_policies > 1); build "
                           "SequenceReplay with policy_gammas and add(policy_index=...)")
        pol = policy_tensor(batch["policy_index"], (n, t_len))
        assert pol is not None
        pol = pol.T.contiguous()
    state = torch.as_tensor(np.asarray(batch["core_state"], np.float32), device=device)
    if tuple(state.shape) != (n, state_dim):
        raise ValueError(f"core_state must be [{n}, {state_dim}], got {list(state.shape)}")
    return SequenceInputs(obs=x, prev_action=prev_a, prev_reward=prev_r,
                          prev_intrinsic_reward=prev_ri, in_episode=in_ep, policy_index=pol,
                          core_state=state)
