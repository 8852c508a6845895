"""EfficientZero learner: the unrolled MuZero loss with value prefix and self-supervised
consistency (:mod:`~rltransfer.agents.efficientzero.losses`), SGD with a warm-up/step-decay
schedule (:func:`~rltransfer.agents.efficientzero.config.learning_rate_at`), a target network,
checkpoints, and component-wise loading/freezing for XTRA transfer.

Source: EfficientZero (Ye et al. 2021, Sec. 4 and Eq. 5); MuZero (Schrittwieser et al. 2020,
Appendix G pseudocode) for the unroll and gradient scaling; hyperparameters from XTRA
(Xu et al. 2023, Table 4).

Decisions (documented; the loss's own decisions are in :mod:`.losses`, the augmentation's in
:mod:`.augmentation`):

* Consistency targets ``proj(h(o_{t+k}))`` are computed with the online network (no
  gradient), in the same train/eval mode as the update, as in EfficientZero.
* Frozen components get no gradient step and keep their BatchNorm statistics (eval mode
  during updates).
* Observations are augmented (shift + intensity) only when
  :attr:`~rltransfer.agents.efficientzero.config.EfficientZeroConfig.augments`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch

from rltransfer.agents.efficientzero import augmentation
from rltransfer.agents.efficientzero.batch import BatchError, EZBatch
from rltransfer.agents.efficientzero.config import EfficientZeroConfig, learning_rate_at
from rltransfer.agents.efficientzero.losses import (
    UnrollLosses,
    consistency_loss,
    policy_loss,
    scale_gradient,
    value_loss,
    value_prefix_loss,
    weighted_loss,
)
from rltransfer.agents.efficientzero.networks import EfficientZeroNet, WorldModelConfig
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
from rltransfer.envs.shared_actions import (
    ActionSpace,
    ActionSpaceMismatchError,
    check_same_space,
    local_action_space,
)
from rltransfer.errors import (
    ComponentMismatchError,
    NonFiniteLossError,
    UnknownComponentError,
)
from rltransfer.nets.value_transforms import scalar_to_support

__all__ = [
    "COMPONENTS",
    "BatchError",
    "BatchObjective",
    "ComponentLoadError",
    "EZBatch",
    "EfficientZeroLearner",
    "NonFiniteLossError",
]

COMPONENTS: tuple[str, ...] = EfficientZeroNet.COMPONENTS
"""Checkpoint prefixes of the world model: ``representation`` (h), ``dynamics`` (g, with the
value-prefix LSTM), ``prediction`` (f), ``projection`` (SimSiam projector + predictor)."""


class BatchObjective(NamedTuple):
    """One batch's objective without a step (:meth:`EfficientZeroLearner.batch_objective`):
    ``objective`` (scalar, with its graph), ``metrics`` (floats), ``priorities`` (``[B]``)."""

    objective: torch.Tensor
    metrics: dict[str, float]
    priorities: torch.Tensor


class ComponentLoadError(ComponentMismatchError):
    """Component tensors are missing, unexpected or of the wrong shape, or an unknown
    component was named (a :class:`~rltransfer.errors.UserError`)."""


class EfficientZeroLearner:
    """Owns the online and target world models and the SGD optimizer; one :meth:`update` per
    batch.

    Args:
        config: :class:`EfficientZeroConfig`.
        net_config: :class:`WorldModelConfig` of both networks.
        obs_shape: stacked observation ``(C*S, H, W)``.
        num_actions: ``|A|``, the network's action width (``U`` in a shared space).
        device: torch device string.
        seed: seed of the augmentation draws (the learner's own CPU generator).
        action_space: the shared action space this learner's network is trained in
            (:class:`~rltransfer.envs.shared_actions.ActionSpace`; ``None``: the local space
            of ``num_actions``). Recorded in :meth:`state_meta`; batches bring union ids and
            union-width policy targets (:mod:`.shared_space`).

    Raises:
        ActionSpaceMismatchError: ``action_space`` is not ``num_actions`` wide.

    Attributes:
        network: the online :class:`EfficientZeroNet` (train mode during updates).
        target_network: a copy refreshed every ``target_update_interval_updates`` (eval mode,
            no gradients); used by reanalysis.
        num_updates: updates applied so far.
        frozen: components excluded from training.
    """

    def __init__(self, config: EfficientZeroConfig, net_config: WorldModelConfig,
                 obs_shape: tuple[int, int, int], num_actions: int, device: str = "cpu",
                 seed: int = 0, action_space: ActionSpace | None = None) -> None:
        self.action_space = action_space or local_action_space(int(num_actions))
        if self.action_space.union_size != int(num_actions):
            raise ActionSpaceMismatchError(
                f"the learner has {num_actions} actions, its action space "
                f"{self.action_space.to_json()} has {self.action_space.union_size}")
        self.config = config
        self.net_config = net_config
        self.device = torch.device(device)
        self.obs_shape: tuple[int, int, int] = (int(obs_shape[0]), int(obs_shape[1]),
                                                 int(obs_shape[2]))
        self.num_actions = int(num_actions)
        self.network = EfficientZeroNet(net_config, self.obs_shape, num_actions).to(self.device)
        self.target_network = copy.deepcopy(self.network)
        self.target_network.eval()
        self.target_network.requires_grad_(False)
        self.num_updates = 0
        self.frozen: set[str] = set()
        self.optimizer = self._make_optimizer()
        self.augmentation_rng = torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------------ optimizer / freezing
    def named_components(self) -> dict[str, torch.nn.Module]:
        """Online ``representation``, ``dynamics``, ``prediction``, ``projection``
        (:class:`rltransfer.core.types.Agent`)."""
        return {comp: getattr(self.network, comp) for comp in COMPONENTS}

    def target_components(self) -> dict[str, torch.nn.Module]:
        """The target network's components, by the same names."""
        return {comp: getattr(self.target_network, comp) for comp in COMPONENTS}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """``[SGD]`` over the trainable components."""
        return [self.optimizer]

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """``(<component>/<param>, parameter)`` of the trainable components (sets
        ``requires_grad`` of every component)."""
        return [(name.replace(".", "/", 1), p)
                for name, p in apply_frozen(self.named_components(), self.frozen)]

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable (not frozen) components' parameters in a fixed order, as stepped
        and clipped by :meth:`update` (empty when all are frozen)."""
        return [p for _, p in self._trainable()]

    def _make_optimizer(self) -> torch.optim.SGD:
        named = self._trainable()
        self._param_names = {id(p): n for n, p in named}
        params = [p for _, p in named] or [torch.nn.Parameter(torch.zeros(1))]
        return torch.optim.SGD(params, lr=learning_rate_at(self.config, self.num_updates),
                               momentum=self.config.momentum,
                               weight_decay=self.config.weight_decay)

    def set_frozen(self, components: Iterable[str]) -> None:
        """Freeze exactly ``components`` (others trainable). Rebuilds the optimizer; momentum
        of parameters that stay trainable is kept.

        Raises:
            UnknownComponentError: an unknown component name (the message lists them).
        """
        wanted = set(check_component_names(components, COMPONENTS, "freeze", "the learner"))
        old = self.optimizer
        self.frozen = wanted
        self.optimizer = self._make_optimizer()
        carry_optimizer_state(old, self.optimizer)

    def freeze(self, components: Iterable[str]) -> None:
        """Freeze ``components`` in addition to the already frozen ones."""
        self.set_frozen(self.frozen | set(components))

    def load_components(self, tensors: Mapping[str, torch.Tensor], components: Iterable[str],
                        *, freeze: Iterable[str] = (), prefix: str = "") -> None:
        """Load chosen components from another learner's tensors (XTRA: transfer h, h+g, or
        h+g+f), into both the online and the target network, then freeze ``freeze``.

        ``tensors`` holds ``{prefix}{component}/{param}`` keys, e.g. :meth:`state_tensors` of
        another learner or a checkpoint's tensors. The loaded parameters' momentum is reset.

        Raises:
            ComponentLoadError: unknown component, or missing / unexpected / mis-shaped
                tensors (checked for all components before anything changes), e.g. a
                ``prediction`` from a model with another number of actions.
        """
        from rltransfer.methods.weight_transfer import freeze_components, transfer_components

        given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            check_component_names(freeze, COMPONENTS, "freeze", "the learner")
            transfer_components(self, given, components, strict=True)
            freeze_components(self, freeze)
        except (UnknownComponentError, ComponentMismatchError) as e:
            raise ComponentLoadError(str(e)) from e

    # ------------------------------------------------------------------ learning
    def augment(self, obs: torch.Tensor,
                future_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The learner's inputs for one batch (:mod:`.augmentation`).

        Args:
            obs: ``[B, C*S, H, W]`` stacked observations at ``t`` (``uint8`` or scaled float).
            future_obs: ``[B, K, C*S, H, W]`` consistency-target observations.

        Returns:
            ``(obs, future_obs)`` unchanged when :attr:`EfficientZeroConfig.augments` is
            false; otherwise both scaled to float (``/ obs_scale``) and augmented by
            :func:`~.augmentation.augment_observations`: one draw for ``obs`` and one more per
            sample shared by its ``K`` targets (the ``K`` stacks are augmented as one image).
        """
        cfg = self.config
        if not cfg.augments:
            return obs, future_obs
        net = self.network
        b, k = int(future_obs.shape[0]), int(future_obs.shape[1])
        pad, scale = int(cfg.augmentation_shift_pad), float(cfg.augmentation_intensity_scale)
        draw = augmentation.augment_observations
        obs_aug = draw(net.scale_obs(obs), pad, scale, self.augmentation_rng)
        flat = net.scale_obs(future_obs.reshape(b * k, *self.obs_shape))
        seq = flat.reshape(b, k * self.obs_shape[0], *self.obs_shape[1:])
        seq = draw(seq, pad, scale, self.augmentation_rng)
        return obs_aug, seq.reshape(b, k, *self.obs_shape)

    def _train_modes(self) -> None:
        self.network.train()
        for comp in self.frozen:
            getattr(self.network, comp).eval()

    def _unroll(self, obs: torch.Tensor, future: torch.Tensor, actions: torch.Tensor,
                target_prefix: torch.Tensor, target_value: torch.Tensor,
                target_policy: torch.Tensor, mask: torch.Tensor,
                ) -> tuple[UnrollLosses, torch.Tensor]:
        """Unroll the model ``K`` steps from the (augmented) ``obs`` and collect the loss
        terms of every step (shapes as in :class:`EZBatch`, on this device).

        Returns:
            ``(terms, v_0)``: the :class:`UnrollLosses` and the scalar value predicted at
            step 0, ``[B]`` (no gradient).
        """
        cfg, net, ncfg = self.config, self.network, self.net_config
        bsz, k_un = int(obs.shape[0]), cfg.unroll_steps
        value_support = scalar_to_support(target_value, ncfg.value_support_size,
                                          ncfg.value_rescale_eps)
        prefix_support = scalar_to_support(target_prefix, ncfg.value_prefix_support_size,
                                           ncfg.value_rescale_eps)
        obs_in, future_in = self.augment(obs, future)
        with torch.no_grad():
            flat_future = future_in.reshape(bsz * k_un, *self.obs_shape)
            target_proj = net.projection.project(net.represent(flat_future))
            target_proj = target_proj.reshape(bsz, k_un, -1)

        latent = net.represent(obs_in)
        policy_logits, value_logits = net.predict(latent)
        terms = UnrollLosses()
        terms.value.append(value_loss(value_logits, value_support[:, 0]))
        terms.policy.append(policy_loss(policy_logits, target_policy[:, 0], mask[:, 0]))
        value_0 = net.value_scalar(value_logits.detach())
        hidden = net.initial_reward_hidden(bsz)
        for k in range(1, k_un + 1):
            latent, prefix_logits, hidden = net.dynamics_step(latent, hidden, actions[:, k - 1])
            policy_logits, value_logits = net.predict(latent)
            terms.value.append(value_loss(value_logits, value_support[:, k]))
            terms.policy.append(policy_loss(policy_logits, target_policy[:, k], mask[:, k]))
            terms.value_prefix.append(value_prefix_loss(prefix_logits, prefix_support[:, k - 1]))
            terms.consistency.append(consistency_loss(
                net.projection(latent), target_proj[:, k - 1], mask[:, k - 1]))
            if k % cfg.value_prefix_horizon == 0:
                hidden = net.initial_reward_hidden(bsz)
            latent = scale_gradient(latent, cfg.latent_grad_scale)
        return terms, value_0

    def batch_objective(self, batch: EZBatch) -> BatchObjective:
        """The weighted EfficientZero objective of ``batch`` (EZ Eq. 5, gradient-scaled by
        :func:`~.losses.weighted_loss`) with its graph, without a step: the forward pass of
        :meth:`update` (frozen components in eval mode, augmentation from the learner's
        generator). BatchNorm statistics move as in an update; a caller that only measures
        (XTRA's gradient cosines) restores them.

        Returns:
            :class:`BatchObjective`: scalar ``objective``; ``metrics`` as :meth:`update`'s
            without ``lr`` / ``grad_norm``; ``priorities`` float32 ``[B]``
            ``|v_0 - z_0| + priority_eps`` (no gradient).

        Raises:
            BatchError: shapes/dtypes do not fit ``batch``, or non-finite targets/weights.
        """
        batch.check(self.obs_shape, self.config.unroll_steps, self.num_actions)
        cfg, dev = self.config, self.device
        target_value = batch.target_values.to(dev, torch.float32)
        self._train_modes()
        terms, value_0 = self._unroll(
            batch.obs.to(dev), batch.future_obs.to(dev), batch.actions.to(dev, torch.int64),
            batch.target_value_prefixes.to(dev, torch.float32), target_value,
            batch.target_policies.to(dev, torch.float32), batch.mask.to(dev, torch.float32))
        loss, objective = weighted_loss(terms, batch.weights.to(dev, torch.float32),
                                        cfg.loss_weights, cfg.gradient_scale_mode)
        metrics = {
            "loss": float(loss.detach()),
            **terms.summaries(),
            "value_mean": float(value_0.mean()),
            "target_value_mean": float(target_value[:, 0].mean()),
        }
        priorities = (value_0 - target_value[:, 0]).abs() + cfg.priority_eps
        return BatchObjective(objective, metrics, priorities)

    def update(self, batch: EZBatch) -> UpdateResult:
        """One SGD step on the unrolled EfficientZero loss (EZ Eq. 5, :mod:`.losses`).

        Args:
            batch: :class:`EZBatch` with ``K == unroll_steps`` (any device; moved here).

        Returns:
            :class:`~rltransfer.core.types.UpdateResult`: ``metrics`` as floats (``loss`` =
            weighted mean total, per-term batch means ``value_prefix_loss``,
            ``policy_loss``, ``value_loss``, ``consistency_loss`` (summed over steps,
            unweighted), ``lr``, ``grad_norm`` (before clipping), ``value_mean``,
            ``target_value_mean``); ``priorities`` float64 ``[B]`` =
            ``|v_0 - z_0| + priority_eps`` (EfficientZero).

        Raises:
            BatchError: shapes/dtypes do not fit, or non-finite targets/weights.
            NonFiniteLossError: the loss or gradient norm is NaN/inf; nothing was changed
                (weights, optimizer and BatchNorm statistics are as before the call).
        """
        cfg, net = self.config, self.network

        lr = learning_rate_at(cfg, self.num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        buffers = {name: buf.clone() for name, buf in net.named_buffers()}
        objective, measured, priorities = self.batch_objective(batch)

        def restore(reason: str) -> NonFiniteLossError:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, buf in net.named_buffers():
                    buf.copy_(buffers[name])
            return NonFiniteLossError(
                f"{reason} at update {self.num_updates} (lr {lr:g}); the update was skipped "
                "and nothing changed. Lower lr / check the batch targets, or resume from the "
                "last checkpoint."
            )

        if not bool(torch.isfinite(objective)):
            raise restore(f"non-finite loss {measured['loss']}")
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        params = self.trainable_parameters()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if params \
            else torch.zeros(())
        if not bool(torch.isfinite(grad_norm)):
            raise restore(f"non-finite gradient norm {float(grad_norm)}")
        self.optimizer.step()
        self.num_updates += 1
        if self.num_updates % cfg.target_update_interval_updates == 0:
            self.sync_target()

        values = {k: measured.pop(k) for k in ("value_mean", "target_value_mean")}
        metrics = {**measured, "lr": lr, "grad_norm": float(grad_norm), **values}
        return UpdateResult(metrics, priorities.double().cpu().numpy())

    def sync_target(self) -> None:
        """Copy the online network (weights and BatchNorm statistics) into the target."""
        self.target_network.load_state_dict(self.network.state_dict())

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as flat contiguous CPU tensors (safetensors-ready).

        Keys: ``<component>/<name>`` (online network, incl. BatchNorm buffers),
        ``target/<component>/<name>``, ``optimizer/<component>/<param>/momentum_buffer`` (SGD
        momentum of trainable parameters updated so far), ``learner/num_updates`` int64[1],
        ``learner/frozen`` uint8[4] (in :data:`COMPONENTS` order),
        ``learner/augmentation_rng`` uint8 (state of the augmentation generator).
        """
        out = component_tensors(self.named_components())
        out.update(component_tensors(self.target_components(), "target/"))
        out.update(optimizer_tensors(self.optimizer, self._param_names, "optimizer/", "/"))
        out["learner/num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        out["learner/frozen"] = torch.tensor([c in self.frozen for c in COMPONENTS],
                                             dtype=torch.uint8)
        out["learner/augmentation_rng"] = self.augmentation_rng.get_state().clone()
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able description for ``meta.json``: counters, frozen components, optimizer
        settings, spaces and latent shape."""
        return {
            "num_updates": self.num_updates,
            "frozen": sorted(self.frozen),
            "optimizer": {"type": "SGD", "lr": learning_rate_at(self.config, self.num_updates),
                          "momentum": self.config.momentum,
                          "weight_decay": self.config.weight_decay},
            "obs_shape": list(self.obs_shape),
            "num_actions": self.num_actions,
            "action_space": self.action_space.to_json(),
            "latent_shape": list(self.network.latent_shape),
        }

    def check_action_space(self, meta: Mapping[str, Any], what: str = "learner state") -> None:
        """Stop when ``meta`` (:meth:`state_meta` output, e.g. a checkpoint's) was saved with
        another action space than this learner's. A ``meta`` without ``action_space`` (saved
        before shared spaces existed) has the local space of its ``num_actions``.

        Raises:
            ActionSpaceMismatchError: the spaces differ (both named in the message).
        """
        if "action_space" in meta:
            theirs = ActionSpace.from_json(meta["action_space"])
        elif "num_actions" in meta:
            theirs = local_action_space(int(meta["num_actions"]))
        else:
            return
        check_same_space(self.action_space, theirs, what=what)

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor],
                           meta: Mapping[str, Any] | None = None) -> None:
        """Restore :meth:`state_tensors` output exactly (optionally checking ``meta`` from
        :meth:`state_meta`).

        Raises:
            ActionSpaceMismatchError: ``meta`` records another action space
                (:meth:`check_action_space`). Checked before anything changes.
            ComponentLoadError: missing / unexpected / mis-shaped tensors, or ``meta`` of a
                learner with another observation shape or action width. Checked before
                anything changes.
        """
        if meta is not None:
            theirs = meta.get("action_space") or {}
            if self.action_space.suite != "local" or theirs.get("suite", "local") != "local":
                self.check_action_space(meta)  # shared spaces: their own error first
            for key in ("obs_shape", "num_actions"):
                mine = self.state_meta()[key]
                if key in meta and meta[key] != mine:
                    raise ComponentLoadError(
                        f"learner state was saved with {key}={meta[key]}, this learner has "
                        f"{mine}; build the learner with the saved spaces"
                    )
        networks = {f"{head}{comp}/": getattr(net, comp)
                    for head, net in (("", self.network), ("target/", self.target_network))
                    for comp in COMPONENTS}
        states, problems = read_network_tensors(tensors, networks)
        for key in ("learner/num_updates", "learner/frozen"):
            if key not in tensors:
                problems.append(f"missing {key}")
        rng_state = tensors.get("learner/augmentation_rng")  # absent in older checkpoints
        if rng_state is not None and (
                rng_state.numel() != self.augmentation_rng.get_state().numel()):
            problems.append("learner/augmentation_rng is not a torch CPU generator state")
        if "learner/frozen" in tensors and tensors["learner/frozen"].numel() != len(COMPONENTS):
            problems.append(f"learner/frozen must have {len(COMPONENTS)} entries")
        all_params = {f"{comp}/{name}": p for comp in COMPONENTS
                      for name, p in getattr(self.network, comp).named_parameters()}
        momentum, opt_problems = read_optimizer_tensors(tensors, "optimizer/", all_params, "/")
        problems += opt_problems
        for pname, fields in momentum.items():
            for field, v in fields.items():
                want = tuple(all_params[pname].shape)
                if field != "momentum_buffer":
                    problems.append(f"unexpected optimizer tensor optimizer/{pname}/{field}")
                elif tuple(v.shape) != want:
                    problems.append(f"optimizer/{pname}/{field}: saved {tuple(v.shape)} vs {want}")
        problems += unexpected_tensors(tensors, ("optimizer/", *networks), (
            "learner/num_updates", "learner/frozen", "learner/augmentation_rng"))
        if problems:
            raise ComponentLoadError("cannot restore the learner: " + summarise_problems(problems))
        load_network_tensors(networks, states, self.device)
        self.num_updates = int(tensors["learner/num_updates"].reshape(-1)[0])
        flags = tensors["learner/frozen"].reshape(-1).tolist()
        self.frozen = {c for c, f in zip(COMPONENTS, flags, strict=True) if f}
        if "learner/augmentation_rng" in tensors:
            self.augmentation_rng.set_state(
                tensors["learner/augmentation_rng"].to("cpu", torch.uint8).contiguous())
        self.optimizer = self._make_optimizer()
        load_optimizer_state(self.optimizer, self._param_names, momentum, self.device)

