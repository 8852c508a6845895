"""Acting with the R2D2 learner's online network: Q-values for a batch of observations.

:class:`ActingMixin` gives :class:`~rltransfer.agents.r2d2.learner.R2D2Agent` its acting
methods: :meth:`~ActingMixin.q_values` (feedforward core) and :meth:`~ActingMixin.act_q` (one
recurrent step of R2D2's LSTM core, Kapturowski et al. 2019 Sec. 3, fed the previous action
and rewards; NGU's policy index ``j``, Badia et al. 2020). No gradient; the collector
(:mod:`rltransfer.agents.r2d2.actor`) and :class:`~rltransfer.agents.agent_policy.AgentPolicy`
call them once per vector step.

NGU policy family (Badia et al. 2020, Sec. 3 and App. F; Agent57): with ``num_policies = N >
1`` one network represents N Q-functions ``Q(x, a, j)``, policy ``j`` having intrinsic scale
``beta_j`` and discount ``gamma_j`` (:func:`rltransfer.agents.r2d2.config.policy_family`). The
LSTM core also receives one-hot ``j``; the replay stores each step's ``j`` and computes the
n-step returns and discounts with ``gamma_j`` per sample (the learner reward ``r_e + beta_j
r_i`` is stored by the loop), so the learner update is unchanged apart from feeding ``j``.
Acting uses each actor's ``j``; calls without ``policy_index`` (evaluation, a loaded policy
used as BT's prior) act as ``eval_policy`` (default 0: the exploitative ``beta_0 = 0``,
``gamma_0 = gamma``). The family needs the LSTM core (a feedforward agent raises ConfigError
for N > 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.agents.r2d2.batches import obs_tensor
from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.networks import feedforward_q

__all__ = ["ActingMixin"]


class ActingMixin:
    """Acting methods over ``self.online`` (see the module docstring).

    Expects the attributes the learner sets: ``config``, ``obs_shape``, ``device``,
    ``online`` and ``recurrent``.
    """

    config: R2D2Config
    obs_shape: tuple[int, int, int]
    device: torch.device
    online: nn.ModuleDict
    recurrent: bool

    def _obs_tensor(self, obs: Any, what: str = "obs") -> torch.Tensor:
        return obs_tensor(obs, self.obs_shape, self.device, what)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q-values, no gradient.

        Args:
            obs: ``uint8[B, C*S, H, W]`` stacked observations.

        Returns:
            ``float32[B, num_actions]`` (in the value-rescaled space when enabled; argmax is
            unaffected since h is monotonic).

        Raises:
            ValueError: wrong observation shape; a recurrent agent (use :meth:`act_q`).
        """
        if self.recurrent:
            raise ValueError("this agent has an LSTM core: use act_q(obs, state, first, ...)")
        # inference_mode: no_grad without autograd's version counters (the networks keep
        # no state between calls, so no inference tensor reaches a training step).
        with torch.inference_mode():
            q = feedforward_q(self.online, self._obs_tensor(obs))
        return q.float().cpu().numpy()

    @property
    def state_dim(self) -> int:
        """Width ``D`` of the recurrent state ``float32[B, D]`` (0 for a feedforward core)."""
        return int(getattr(self.online["core"], "state_dim", 0))

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The recurrent state at an episode start: zeros ``float32[B, D]`` (``D = 0``
        for a feedforward core)."""
        return np.zeros((int(batch_size), self.state_dim), dtype=np.float32)

    def act_q(
        self,
        obs: np.ndarray,
        state: np.ndarray | None,
        first: np.ndarray,
        prev_action: np.ndarray | None = None,
        prev_reward: np.ndarray | None = None,
        prev_intrinsic_reward: np.ndarray | None = None,
        policy_index: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One acting step of the online network, no gradient (recurrent or feedforward).

        Where ``first`` the state is reset to zeros and the previous action / rewards are
        ignored (an episode's first step has none), as the replay rebuilds them.

        Args:
            obs: ``uint8[B, C*S, H, W]`` stacked observations.
            state: ``float32[B, D]`` from :meth:`initial_state` or the previous call (``None``:
                zeros).
            first: ``bool[B]``, true where an episode just began.
            prev_action: ``int[B]`` env action of the previous step (-1 or ``None``: none).
            prev_reward: ``float[B]`` extrinsic reward of the previous step (``None``: 0).
            prev_intrinsic_reward: ``float[B]`` intrinsic reward of the previous step.
            policy_index: ``int[B]`` NGU policy ``j`` of each env in ``[0, num_policies)``
                (``None``: ``config.eval_policy``); ignored when ``num_policies = 1``.

        Returns:
            ``(q float32[B, num_actions], next_state float32[B, D])``.

        Raises:
            ValueError: wrong shapes or policy indices.
        """
        x = self._obs_tensor(obs)
        b = x.shape[0]
        if not self.recurrent:
            with torch.inference_mode():
                q = feedforward_q(self.online, x)
            return q.float().cpu().numpy(), self.initial_state(b)
        st = np.asarray(state if state is not None else self.initial_state(b), np.float32)
        if st.shape != (b, self.state_dim):
            raise ValueError(f"state must be float32[{b}, {self.state_dim}], got {st.shape}")
        f = torch.as_tensor(np.asarray(first, bool).reshape(-1), device=self.device)
        if f.shape[0] != b:
            raise ValueError(f"first must be bool[{b}], got {f.shape[0]} entries")

        def opt(v: Any, dtype: torch.dtype, fill: float) -> torch.Tensor:
            t = torch.full((b,), fill, dtype=dtype, device=self.device) if v is None else (
                torch.as_tensor(np.asarray(v), device=self.device).to(dtype).reshape(-1)
            )
            return torch.where(f, torch.full_like(t, fill), t)

        j = self._policy_tensor(policy_index, (b,))

        with torch.no_grad():
            features = self.online["torso"](x)
            out, new_state = self.online["core"](
                features, torch.as_tensor(st, device=self.device),
                prev_action=opt(prev_action, torch.int64, -1),
                prev_reward=opt(prev_reward, torch.float32, 0.0),
                prev_intrinsic_reward=opt(prev_intrinsic_reward, torch.float32, 0.0),
                first=f, policy_index=j,
            )
            q = self.online["head"](out)
        return q.float().cpu().numpy(), new_state.float().cpu().numpy()

    def _policy_tensor(self, policy_index: Any, shape: tuple[int, ...]) -> torch.Tensor | None:
        """``int64`` policy indices of ``shape`` on the device (``None`` -> ``eval_policy``);
        ``None`` for a single policy. Raises ValueError on a wrong shape or range."""
        n = self.config.num_policies
        if n == 1:
            return None
        if policy_index is None:
            return torch.full(shape, self.config.eval_policy, dtype=torch.int64,
                              device=self.device)
        a = np.asarray(policy_index)
        if a.shape != shape:
            raise ValueError(f"policy_index must be int{list(shape)}, got {list(a.shape)}")
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n):
            raise ValueError(f"policy_index must be integers in [0, {n}), got {a}")
        return torch.as_tensor(a, device=self.device).to(torch.int64)
