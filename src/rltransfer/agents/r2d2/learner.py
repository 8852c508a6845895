"""The R2D2 learner (Kapturowski et al. 2019), as used by Behavior Transfer (Campos et al. 2021).

:class:`R2D2Agent` owns the online network (:func:`~rltransfer.agents.r2d2.networks.
build_q_network`: ``torso -> core -> head``), its target copy, Adam (lr 1e-4, eps 1e-3),
gradient-norm clipping at 40 and the target copy every 2500 updates; :meth:`R2D2Agent.update`
takes one gradient step on a replay batch with the loss terms of
:mod:`rltransfer.agents.r2d2.losses` (n-step double-Q targets with value rescaling, a+'s extra
term) and returns the new priorities in an :class:`~rltransfer.core.types.UpdateResult`.
Acting (``q_values`` / ``act_q``) is in :class:`~rltransfer.agents.r2d2.acting.ActingMixin`,
the replay batch checks in :mod:`rltransfer.agents.r2d2.batches`.

Feedforward core: transitions, priority ``max(|delta|, |delta+|)``. Recurrent core
(``core="lstm"``, R2D2 Sec. 3): the learner samples sequences
(:class:`~rltransfer.replay.SequenceReplay`) with the LSTM state stored at their start, unrolls
the burn-in prefix without gradient (online and target networks, from the stored state), then
the training part, applies the n-step double-Q targets inside the unroll (bootstrap Q at step
``t + n`` of the same unroll), and gives each sequence R2D2's priority ``eta max_t|delta_t| +
(1 - eta) mean_t|delta_t|`` (eta = 0.9).

NGU's policy family (``num_policies > 1``, LSTM core only): see
:mod:`rltransfer.agents.r2d2.acting`; the update only feeds each step's policy index ``j``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.agents.r2d2.acting import ActingMixin
from rltransfer.agents.r2d2.batches import sequence_batch, sequence_inputs, transition_batch
from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.losses import (
    double_q_target,
    extra_action_td_error,
    sequence_loss,
    sequence_priority,
    sequence_td_errors,
    td_error,
    transition_loss,
    transition_priority,
)
from rltransfer.agents.r2d2.networks import MODULE_NAMES, build_q_network, feedforward_q
from rltransfer.agents.r2d2.networks import unroll as unroll_sequences
from rltransfer.agents.r2d2.optim import adam_step, clip_grad_norm
from rltransfer.core.checkpoint_components import (
    apply_frozen,
    carry_optimizer_state,
    check_component_names,
    component_tensors,
    load_network_tensors,
    load_optimizer_state,
    optimizer_tensors,
    read_network_tensors,
    read_optimizer_tensors,
    summarise_problems,
    unexpected_tensors,
)
from rltransfer.core.types import UpdateResult
from rltransfer.errors import NonFiniteLossError

__all__ = ["MODULE_NAMES", "R2D2Agent"]


class R2D2Agent(ActingMixin):
    """R2D2-style Q-learner over stacked image observations (feedforward or LSTM core).

    Args:
        config: hyperparameters.
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` observations to ``[0, 1]``.
        num_actions: Q outputs; |A|, or |A| + 1 with Behavior Transfer's a+ as the LAST index.
        device: torch device for the networks.
        num_env_actions: |A| (the LSTM core's previous-action one-hot width); default
            ``num_actions``. Pass |A| when ``num_actions`` includes a+.

    Attributes:
        online: ``nn.ModuleDict`` with ``torso``, ``core``, ``head``; ``target`` a copy.
        num_updates: gradient updates applied.
        frozen: names of modules excluded from training.

    Raises:
        ValueError: invalid shapes or counts.
    """

    def __init__(
        self,
        config: R2D2Config,
        obs_shape: tuple[int, ...],
        obs_scale: float,
        num_actions: int,
        device: str | torch.device = "cpu",
        num_env_actions: int | None = None,
    ) -> None:
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be stacked (C*S, H, W), got {obs_shape}")
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self.config = config
        self.obs_shape: tuple[int, int, int] = (
            int(obs_shape[0]), int(obs_shape[1]), int(obs_shape[2])
        )
        self.obs_scale = float(obs_scale)
        self.num_actions = int(num_actions)
        self.device = torch.device(device)
        self.num_env_actions = int(num_env_actions) if num_env_actions is not None else (
            self.num_actions
        )
        if not 1 <= self.num_env_actions <= self.num_actions:
            raise ValueError(
                f"num_env_actions must be in [1, num_actions={self.num_actions}], got "
                f"{num_env_actions}"
            )
        self.recurrent = config.core == "lstm"
        self.online = build_q_network(config, self.obs_shape, self.obs_scale, self.num_actions,
                                      self.num_env_actions).to(self.device)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        self.frozen: set[str] = set()
        self.num_updates = 0
        self._opt_param_names: list[str] = []
        self.optimizer = self._make_optimizer()

    # ------------------------------------------------------------------ components
    @property
    def torso(self) -> nn.Module:
        """Online encoder: ``uint8[B, C*S, H, W]`` -> ``float32[B, feature_dim]``."""
        return self.online["torso"]

    @property
    def core(self) -> nn.Module:
        """Online core: ``(features, state) -> (out, state)``."""
        return self.online["core"]

    @property
    def head(self) -> nn.Module:
        """Online Q head: ``float32[B, hidden]`` -> ``float32[B, num_actions]``."""
        return self.online["head"]

    def named_modules_for_transfer(self) -> dict[str, nn.Module]:
        """The online ``{'torso', 'core', 'head'}`` modules (load into them, then
        :meth:`sync_target`)."""
        return self.named_components()

    def named_components(self) -> dict[str, nn.Module]:
        """Online ``torso``, ``core``, ``head`` (:class:`rltransfer.core.types.Agent`)."""
        return {name: self.online[name] for name in MODULE_NAMES}

    def target_components(self) -> dict[str, nn.Module]:
        """Target ``torso``, ``core``, ``head`` (:class:`rltransfer.core.types.Agent`)."""
        return {name: self.target[name] for name in MODULE_NAMES}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """``[Adam]`` over the trainable components (:class:`rltransfer.core.types.Agent`)."""
        return [self.optimizer]

    def sync_target(self) -> None:
        """Copy the online parameters into the target network."""
        self.target.load_state_dict(self.online.state_dict())

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly ``names`` (requires_grad off, out of the optimizer); unfreeze others.

        The optimizer is rebuilt; Adam moments of parameters that stay trainable are kept.

        Raises:
            UnknownComponentError: unknown module names (a ``ValueError``).
            ValueError: freezing every module.
        """
        wanted = set(check_component_names(names, MODULE_NAMES, "freeze"))
        if wanted == set(MODULE_NAMES):
            raise ValueError("cannot freeze every module: nothing would train; freeze fewer")
        old = self.optimizer
        self.frozen = wanted
        self.optimizer = self._make_optimizer()
        carry_optimizer_state(old, self.optimizer)

    def freeze(self, module_names: Iterable[str]) -> None:
        """Freeze ``module_names`` in addition to the already frozen ones (see set_frozen)."""
        self.set_frozen(self.frozen | set(module_names))

    def _make_optimizer(self) -> torch.optim.Adam:
        trainable = apply_frozen(self.named_components(), self.frozen)
        params = [p for _, p in trainable]
        self._opt_param_names = [name for name, _ in trainable]
        # Not fused: with fused=True (torch 2.13, CPU) the agent stopped learning
        # MiniGrid-Empty-5x5 (tests/test_train.py), although short runs matched plain Adam.
        # foreach: the same per-tensor arithmetic with fewer Python calls; fixed-seed runs
        # give bit-identical parameters to the single-tensor loop (docs/decisions.md).
        return torch.optim.Adam(params, lr=self.config.lr, eps=self.config.adam_eps,
                                foreach=True)

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, np.ndarray]) -> UpdateResult:
        """One gradient step on a replay batch.

        Loss (feedforward core): ``mean_i 0.5 w_i (delta_i^2 + extra_i delta+_i^2)`` where
        ``delta_i = Q(s_i, action_i) - y_i``, ``delta+_i = Q(s_i, agent_action_i) - y_i`` (the
        a+ entry; Campos et al. 2021 Sec. 3.2), ``y`` from
        :func:`~rltransfer.agents.r2d2.losses.double_q_target` and ``w`` the importance
        weights; priorities ``max(|delta_i|, extra_i |delta+_i|)``. The LSTM core trains on
        sequences instead (:meth:`_update_sequences`).

        Args:
            batch: :meth:`TransitionReplay.sample` output: ``obs``, ``next_obs``
                ``uint8[B, C*S, H, W]``; ``action`` ``int[B]``; ``n_step_return``,
                ``bootstrap_discount`` ``float[B]``; optional ``agent_action`` (default
                ``action``), ``extra`` (default false), ``weights`` (default 1). With the
                LSTM core, :meth:`SequenceReplay.sample` output.

        Returns:
            ``UpdateResult``: metrics ``loss``, ``q_mean`` (mean Q(s, action)),
            ``target_mean``, ``td_abs_mean`` (mean |delta|), ``grad_norm`` (before
            clipping); priorities ``float32[B]`` in batch order, for
            ``replay.update_priorities(batch["indices"], ...)``.

        Raises:
            KeyError: a required key is missing. ValueError: bad shapes or actions.
            NonFiniteLossError: NaN/inf loss or gradient; parameters, optimizer state and
                ``num_updates`` are left unchanged.
        """
        if self.recurrent:
            return self._update_sequences(batch)
        cfg = self.config
        tb = transition_batch(batch, self.obs_shape, self.num_actions, self.device)
        # inference_mode: the targets need no autograd bookkeeping at all; ``y`` only enters
        # differences with Q, whose backward does not save it.
        with torch.inference_mode():
            q_next_target = feedforward_q(self.target, tb.next_obs)
            q_next_online = feedforward_q(self.online, tb.next_obs) if cfg.double_q else None
            y = double_q_target(
                tb.n_step_return, tb.bootstrap_discount, q_next_online, q_next_target,
                double_q=cfg.double_q, value_rescaling=cfg.value_rescaling,
                eps=cfg.value_rescaling_eps,
            )
        q = feedforward_q(self.online, tb.obs)
        q_env, delta = td_error(q, tb.action, y)
        # Without a+ in the batch delta+ is 0: the same loss, gradient and priorities
        # (x + 0 and max(|x|, 0) are exact) without the a+ branch's ops.
        delta_plus = (
            extra_action_td_error(q, tb.agent_action, tb.extra, y) if tb.extra is not None
            else None
        )
        loss = transition_loss(delta, delta_plus, tb.weights)
        loss_value, grad_norm = self._optimize(loss)
        with torch.no_grad():
            prio = transition_priority(delta, delta_plus)
            delta_abs = prio if delta_plus is None else delta.abs()  # prio is |delta| then
            q_mean, target_mean, td_abs_mean = torch.stack(
                [q_env.mean(), y.mean(), delta_abs.mean()]).tolist()
        return UpdateResult(
            metrics={"loss": loss_value, "q_mean": q_mean, "target_mean": target_mean,
                     "td_abs_mean": td_abs_mean, "grad_norm": grad_norm},
            priorities=prio.float().cpu().numpy(),
        )

    def _optimize(self, loss: torch.Tensor) -> tuple[float, float]:
        """Backward, clip, Adam step, target sync; the NaN guard of :meth:`update`.

        Returns ``(loss, gradient norm before clipping)`` as floats."""
        cfg = self.config
        update_number = self.num_updates + 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at update {update_number}; the update was "
                "skipped and parameters are unchanged. Check rewards/observations for NaN/inf, "
                "lower lr, or keep value_rescaling on"
            )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for p in params:  # zero_grad(set_to_none=True) without its profiler/hook wrapper
            p.grad = None
        loss.backward()
        grad_norm = clip_grad_norm(params, cfg.max_grad_norm)
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite gradient norm at update {update_number} (loss {loss_value}); the "
                "update was skipped and parameters are unchanged. Lower lr or check inputs"
            )
        adam_step(self.optimizer)  # optimizer.step(), bit for bit, less overhead
        self.num_updates = update_number
        if self.num_updates % cfg.target_update_period_updates == 0:
            self.sync_target()
        return loss_value, grad_norm

    # ------------------------------------------------------------------ sequences
    def unroll(self, net: nn.ModuleDict, batch: dict[str, np.ndarray], *,
               grad: bool) -> torch.Tensor:
        """Q-values ``float32[N, L, num_actions]`` of ``net`` (``self.online`` or
        ``self.target``) over the training part (``L = T - burn_in``) of the sequences of a
        :meth:`SequenceReplay.sample` batch: :func:`~rltransfer.agents.r2d2.batches.
        sequence_inputs` (the keys read, ValueError / KeyError), then
        :func:`rltransfer.agents.r2d2.networks.unroll` (burn-in, R2D2 Sec. 3)."""
        inputs = sequence_inputs(batch, self.config, self.obs_shape, self.state_dim,
                                 self._policy_tensor, self.device)
        return unroll_sequences(net, inputs, self.config.burn_in, grad=grad)

    def _update_sequences(self, batch: dict[str, np.ndarray]) -> UpdateResult:
        """:meth:`update` for the LSTM core: one gradient step on replayed sequences.

        For training step ``t`` of a sequence (``loss_mask``),
        ``y_t = h(R_t + disc_t h^-1(Q_target(s_b, argmax_a Q(s_b, a))))`` with ``b =
        bootstrap_index_t`` inside the same unroll, ``delta_t = Q(s_t, a_t) - y_t`` and, where
        ``extra_t`` (a+), ``delta+_t = Q(s_t, a+) - y_t``. Loss: ``mean_i w_i
        sum_t mask 0.5 (delta^2 + delta+^2) / max(1, sum_t mask)``. Priority (R2D2 Sec. 2):
        ``eta max_t |d_t| + (1 - eta) mean_t |d_t|`` over masked steps, ``|d_t| =
        max(|delta_t|, |delta+_t|)``.

        Args:
            batch: :meth:`SequenceReplay.sample` output; window arrays ``[N, T]``:
                ``action``, ``agent_action``, ``extra``, ``n_step_return``,
                ``bootstrap_discount``, ``bootstrap_index`` (window index), ``loss_mask``;
                plus what :meth:`unroll` reads and ``weights`` ``float32[N]``.

        Raises:
            KeyError: a required key is missing. ValueError: bad shapes or actions.
            NonFiniteLossError: see :meth:`update`.
        """
        cfg = self.config
        sb = sequence_batch(batch, cfg.burn_in, self.num_actions, self.device)
        inputs = sequence_inputs(batch, cfg, self.obs_shape, self.state_dim,
                                 self._policy_tensor, self.device)
        n, length = sb.action.shape
        q = unroll_sequences(self.online, inputs, cfg.burn_in, grad=True)  # [N, L, A]
        with torch.no_grad():
            q_target = unroll_sequences(self.target, inputs, cfg.burn_in, grad=False)
            gather_idx = sb.bootstrap_index[:, :, None].expand(-1, -1, q.shape[2])
            q_next_target = q_target.gather(1, gather_idx).reshape(n * length, -1)
            q_next_online = (
                q.detach().gather(1, gather_idx).reshape(n * length, -1) if cfg.double_q
                else None
            )
            y = double_q_target(
                sb.n_step_return.reshape(-1), sb.bootstrap_discount.reshape(-1), q_next_online,
                q_next_target, double_q=cfg.double_q, value_rescaling=cfg.value_rescaling,
                eps=cfg.value_rescaling_eps,
            ).reshape(n, length)
        q_env, delta, delta_plus = sequence_td_errors(q, sb.action, sb.agent_action, sb.extra,
                                                      sb.mask, y)
        loss = sequence_loss(delta, delta_plus, sb.mask, sb.weights)
        loss_value, grad_norm = self._optimize(loss)
        with torch.no_grad():
            d = torch.maximum(delta.abs(), delta_plus.abs())
            prio = sequence_priority(d, sb.mask, cfg.priority_eta)
        maskf = sb.mask.to(q.dtype)
        total = float(maskf.sum().clamp(min=1.0))
        return UpdateResult(
            metrics={
                "loss": loss_value,
                "q_mean": float((q_env.detach() * maskf).sum()) / total,
                "target_mean": float((y * maskf).sum()) / total,
                "td_abs_mean": float(delta.detach().abs().sum()) / total,
                "grad_norm": float(grad_norm),
            },
            priorities=prio.float().cpu().numpy(),
        )

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as flat CPU tensors (safetensors-ready, no pickle).

        Keys: ``online.<module>.<param>``, ``target.<module>.<param>``,
        ``optimizer.<module>.<param>.<exp_avg|exp_avg_sq|step>`` (Adam state of trainable
        parameters that have been updated), ``num_updates`` ``int64[1]``, ``frozen``
        ``uint8[3]`` (torso, core, head).
        """
        out = component_tensors(self.named_components(), "online.", ".")
        out.update(component_tensors(self.target_components(), "target.", "."))
        out.update(optimizer_tensors(self.optimizer, self._opt_names_by_id(), "optimizer."))
        out["num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        out["frozen"] = torch.tensor([n in self.frozen for n in MODULE_NAMES], dtype=torch.uint8)
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able scalars describing the state (for ``meta.json``): counters, frozen
        modules, optimizer hyperparameters, shapes."""
        group = self.optimizer.param_groups[0]
        return {
            "num_updates": self.num_updates,
            "frozen": sorted(self.frozen),
            "optimizer": {
                "type": "Adam",
                "lr": float(group["lr"]),
                "eps": float(group["eps"]),
                "betas": [float(x) for x in group["betas"]],
                "weight_decay": float(group["weight_decay"]),
            },
            "obs_shape": list(self.obs_shape),
            "obs_scale": self.obs_scale,
            "num_actions": self.num_actions,
            "num_env_actions": self.num_env_actions,
            "core": self.config.core,
            "num_policies": self.config.num_policies,
        }

    def load_state_tensors(
        self, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None
    ) -> None:
        """Restore :meth:`state_tensors` output (and optionally check :meth:`state_meta`).

        Raises:
            ValueError: missing or unexpected keys, shape mismatches, or ``meta`` describing
                another agent. Checked before anything is changed.
        """
        if meta is not None:
            mine = self.state_meta()
            for key in ("obs_shape", "num_actions", "num_env_actions", "core", "num_policies"):
                if key in meta and list(np.atleast_1d(meta[key])) != list(
                    np.atleast_1d(mine[key])
                ):
                    raise ValueError(
                        f"agent state was saved with {key}={meta[key]}, this agent has "
                        f"{mine[key]}; build the agent with the saved spaces"
                    )
        networks = {"online.": self.online, "target.": self.target}
        states, problems = read_network_tensors(tensors, networks)
        for key in ("num_updates", "frozen"):
            if key not in tensors:
                problems.append(f"missing {key}")
        all_names = [
            f"{m}.{n}" for m in MODULE_NAMES for n, _ in self.online[m].named_parameters()
        ]
        opt, opt_problems = read_optimizer_tensors(tensors, "optimizer.", all_names)
        problems += opt_problems
        problems += unexpected_tensors(tensors, ("online.", "target.", "optimizer."),
                                       ("num_updates", "frozen"))
        if problems:
            raise ValueError("agent state does not fit this agent: "
                             + summarise_problems(problems, 8))
        frozen = {n for n, f in zip(MODULE_NAMES, tensors["frozen"].tolist(), strict=True) if f}
        if frozen & {p.split(".", 1)[0] for p in opt}:
            raise ValueError("agent state has optimizer moments for a frozen module")

        load_network_tensors(networks, states)
        self.frozen = frozen
        self.optimizer = self._make_optimizer()
        load_optimizer_state(self.optimizer, self._opt_names_by_id(), opt, self.device)
        self.num_updates = int(tensors["num_updates"].reshape(-1)[0])

    def _opt_names_by_id(self) -> dict[int, str]:
        """``id(parameter) -> <module>.<name>`` of the optimized parameters."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return {id(p): n for p, n in zip(params, self._opt_param_names, strict=True)}
