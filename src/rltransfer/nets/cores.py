"""Cores: the part between the torso and the head (feedforward, or R2D2's LSTM).

Every core shares one interface so a recurrent core (R2D2's ``LSTM(512)``, Kapturowski et al.
2019, Sec. 2) replaces :class:`FeedforwardCore` without changing the agent:

``core(features [B, F], state) -> (out [B, out_dim], next_state)``, ``core.initial_state(B)``,
``core.out_dim``, ``core.is_recurrent``. The state is ``None`` for feedforward cores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FeedforwardCore(nn.Module):
    """``Linear(in_dim, hidden) + ReLU``, or the identity when ``hidden`` is ``None``.

    Args:
        in_dim: feature width from the torso.
        hidden: output width, or ``None`` for the identity (``out_dim = in_dim``).

    Forward:
        ``features`` ``float32[B, in_dim]``, ``state`` ignored (pass ``None``).
        Returns ``(float32[B, out_dim], None)``.

    Raises:
        ValueError: non-positive sizes; (forward) a feature width other than ``in_dim``.
    """

    is_recurrent = False

    def __init__(self, in_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        if in_dim < 1 or (hidden is not None and hidden < 1):
            raise ValueError(f"core sizes must be positive, got in_dim={in_dim} hidden={hidden}")
        self.in_dim = int(in_dim)
        self.out_dim = int(hidden) if hidden is not None else int(in_dim)
        self.net: nn.Module = (
            nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU()) if hidden is not None
            else nn.Identity()
        )

    def initial_state(self, batch_size: int) -> None:
        """The recurrent state at an episode start: ``None`` for a feedforward core."""
        return None

    def forward(self, features: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, None]:
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(
                f"core expects features [B, {self.in_dim}], got {list(features.shape)}"
            )
        return self.net(features), None


class LSTMCore(nn.Module):
    """R2D2's recurrent core: an LSTM fed ``[features, one-hot a_{t-1}, r^e_{t-1}, r^i_{t-1}]``
    (and, for a policy family, one-hot ``j``).

    Kapturowski et al. 2019 (Sec. 2, App. "network architecture"): the LSTM (512 units) takes
    the torso features, the one-hot previous action and the previous extrinsic reward; NGU /
    Agent57 (Badia et al. 2020, Sec. 3 and App. F) add the previous intrinsic reward and, with
    a family of ``N > 1`` policies, the one-hot policy index ``j`` (appended last). ``N = 1``
    feeds no ``j`` (input width unchanged). ``prev_action = -1`` (an episode's first step)
    gives an all-zero one-hot. Rewards are fed unscaled.

    The recurrent state is one tensor ``float32[B, 2 * hidden]``, ``h`` then ``c`` (the
    layout the replay stores at sequence starts); the initial state is zeros.

    Args:
        in_dim: torso feature width ``F``.
        num_actions: width of the previous-action one-hot (the *environment* actions |A|,
            not A+, so the core's weights transfer between agents with and without a+).
        hidden: LSTM width (R2D2: 512; a small value for CPU tests).
        reward_inputs: feed ``r^e_{t-1}`` and ``r^i_{t-1}`` (else only features and action).
        num_policies: ``N``, width of the policy one-hot (``N = 1``: no policy input).

    Forward:
        ``features`` ``float32[B, F]`` (one step) or ``[T, B, F]`` (a sequence, time first);
        ``state`` ``float32[B, 2H]`` or ``None`` (zeros); ``prev_action`` ``int64`` ``[B]`` /
        ``[T, B]`` in ``[-1, num_actions)`` (``None``: -1); ``prev_reward``,
        ``prev_intrinsic_reward`` ``float32`` of the same leading shape (``None``: 0);
        ``first`` ``bool`` of the same leading shape or ``None``: where true the state is
        reset to zeros before that step; ``policy_index`` ``int64`` of the same leading shape
        in ``[0, N)`` (``None``: 0; ignored when ``N = 1``).
        Returns ``(out [B, H] or [T, B, H], state [B, 2H])``.

    Raises:
        ValueError: non-positive sizes; (forward) wrong feature width or input shapes.
    """

    is_recurrent = True

    def __init__(self, in_dim: int, num_actions: int, hidden: int = 512,
                 reward_inputs: bool = True, num_policies: int = 1) -> None:
        super().__init__()
        if in_dim < 1 or num_actions < 1 or hidden < 1 or num_policies < 1:
            raise ValueError(
                f"LSTMCore sizes must be positive, got in_dim={in_dim} num_actions={num_actions} "
                f"hidden={hidden} num_policies={num_policies}"
            )
        self.in_dim = int(in_dim)
        self.num_actions = int(num_actions)
        self.hidden = int(hidden)
        self.reward_inputs = bool(reward_inputs)
        self.num_policies = int(num_policies)
        self.policy_inputs = self.num_policies if self.num_policies > 1 else 0
        self.input_dim = (self.in_dim + self.num_actions + (2 if self.reward_inputs else 0)
                          + self.policy_inputs)
        self.out_dim = self.hidden
        self.state_dim = 2 * self.hidden
        self.lstm = nn.LSTM(self.input_dim, self.hidden)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zeros ``float32[batch_size, 2 * hidden]`` on the parameters' device."""
        weight = next(self.lstm.parameters())
        return torch.zeros(batch_size, self.state_dim, device=weight.device)

    def core_inputs(
        self,
        features: torch.Tensor,
        prev_action: torch.Tensor | None = None,
        prev_reward: torch.Tensor | None = None,
        prev_intrinsic_reward: torch.Tensor | None = None,
        policy_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[features, one_hot(prev_action), prev_reward, prev_intrinsic_reward,
        one_hot(policy_index)]`` along the last axis (the last only when ``N > 1``);
        ``features`` ``[..., F]`` -> ``[..., input_dim]``.

        Raises:
            ValueError: wrong widths or shapes, actions outside ``[-1, A)``, policy indices
                outside ``[0, N)``.
        """
        if features.shape[-1] != self.in_dim:
            raise ValueError(
                f"core expects features [..., {self.in_dim}], got {list(features.shape)}"
            )
        lead = features.shape[:-1]
        dev = features.device
        if prev_action is None:
            one_hot = features.new_zeros(*lead, self.num_actions)
        else:
            a = prev_action.to(dev, torch.int64)
            if tuple(a.shape) != tuple(lead):
                raise ValueError(f"prev_action must be {list(lead)}, got {list(a.shape)}")
            if a.numel() and (int(a.min()) < -1 or int(a.max()) >= self.num_actions):
                raise ValueError(
                    f"prev_action must be in [-1, {self.num_actions}) (-1: none), got "
                    f"{int(a.min())}..{int(a.max())}"
                )
            one_hot = torch.nn.functional.one_hot(a.clamp(min=0), self.num_actions)
            one_hot = (one_hot * (a >= 0).unsqueeze(-1)).to(features.dtype)
        parts = [features, one_hot]
        if self.reward_inputs:
            for name, r in (("prev_reward", prev_reward),
                            ("prev_intrinsic_reward", prev_intrinsic_reward)):
                if r is None:
                    parts.append(features.new_zeros(*lead, 1))
                else:
                    r = r.to(dev, features.dtype)
                    if tuple(r.shape) != tuple(lead):
                        raise ValueError(f"{name} must be {list(lead)}, got {list(r.shape)}")
                    parts.append(r.unsqueeze(-1))
        if self.policy_inputs:
            if policy_index is None:
                j = torch.zeros(lead, dtype=torch.int64, device=dev)
            else:
                j = policy_index.to(dev, torch.int64)
                if tuple(j.shape) != tuple(lead):
                    raise ValueError(f"policy_index must be {list(lead)}, got {list(j.shape)}")
                if j.numel() and (int(j.min()) < 0 or int(j.max()) >= self.num_policies):
                    raise ValueError(
                        f"policy_index must be in [0, {self.num_policies}), got "
                        f"{int(j.min())}..{int(j.max())}"
                    )
            parts.append(torch.nn.functional.one_hot(j, self.num_policies).to(features.dtype))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        features: torch.Tensor,
        state: torch.Tensor | None = None,
        prev_action: torch.Tensor | None = None,
        prev_reward: torch.Tensor | None = None,
        prev_intrinsic_reward: torch.Tensor | None = None,
        first: torch.Tensor | None = None,
        policy_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        single = features.dim() == 2
        if features.dim() not in (2, 3):
            raise ValueError(f"core expects [B, F] or [T, B, F], got {list(features.shape)}")
        x = self.core_inputs(features, prev_action, prev_reward, prev_intrinsic_reward,
                             policy_index)
        if single:
            x = x.unsqueeze(0)
        b = x.shape[1]
        if state is None:
            state = self.initial_state(b)
        if tuple(state.shape) != (b, self.state_dim):
            raise ValueError(f"state must be [{b}, {self.state_dim}], got {list(state.shape)}")
        if first is not None:
            first = first.to(x.device, torch.bool).reshape(x.shape[0], b)
        if first is None or not bool(first[1:].any()):
            if first is not None:
                state = torch.where(first[0, :, None], torch.zeros_like(state), state)
            hc = (state[None, :, : self.hidden].contiguous(),
                  state[None, :, self.hidden:].contiguous())
            out, (h, c) = self.lstm(x, hc)
            new_state = torch.cat([h[0], c[0]], dim=1)
        else:  # resets inside the sequence: step by step
            outs = []
            for t in range(x.shape[0]):
                state = torch.where(first[t, :, None], torch.zeros_like(state), state)
                hc = (state[None, :, : self.hidden].contiguous(),
                      state[None, :, self.hidden:].contiguous())
                o, (h, c) = self.lstm(x[t : t + 1], hc)
                outs.append(o)
                state = torch.cat([h[0], c[0]], dim=1)
            out, new_state = torch.cat(outs, dim=0), state
        return (out[0] if single else out), new_state
