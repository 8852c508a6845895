"""The pixel (or state) SAC learner: optimisers, target networks, update periods, freezing
and resumable state (Haarnoja et al. 2018, Alg. 1 with automatic temperature; wired as in
SAC-AE, Yarats et al. 2019, and PAD, Hansen et al. 2021, as Kadavath et al. 2021 use it).

Per update (``u = num_updates`` before it), ``obs`` and ``next_obs`` augmented independently
(:mod:`~rltransfer.agents.sac.augmentation`), the losses of :mod:`~rltransfer.agents.sac.losses`:

1. critic: ``soft_bellman_target`` (``a' ~ pi(.|s')`` on the online conv features of ``s'``,
   ``Q'`` from the target encoder and critic, no gradient); ``critic_loss`` trains
   ``encoder`` and ``critic``.
2. if ``u % actor_update_every_updates == 0``: ``actor_loss`` on the *detached* conv
   features of step 1 (reused as in DrQ-v2; critic and encoder head not trained by it), then
   ``temperature_loss``.
3. if ``u % target_update_every_updates == 0``: Polyak update of ``critic_target``
   (``critic_tau``) and ``encoder_target`` (``encoder_tau``); BatchNorm running statistics
   are not averaged (the target always runs in training mode on batch statistics).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.agents.sac import losses
from rltransfer.agents.sac.augmentation import augment, eval_view
from rltransfer.agents.sac.batch import batch_tensors, obs_tensor
from rltransfer.agents.sac.config import SACConfig
from rltransfer.agents.sac.networks import (
    COMPONENTS,
    build_networks,
    no_param_grads,
    soft_update_,
)
from rltransfer.core.checkpoint_components import (
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
from rltransfer.nets.pixel_encoders import PixelEncoderConfig

__all__ = ["SACAgent"]

class SACAgent:
    """Pixel (or state) SAC learner with named components for weight transfer.

    Named modules: ``encoder`` (critic's; its ``convs`` are shared with the actor),
    ``actor``, ``critic``, ``encoder_target``, ``critic_target``; parameter ``log_alpha``
    (temperature ``alpha = exp(log_alpha)``, target entropy ``-|A|`` unless configured).

    Args:
        config: :class:`~rltransfer.agents.sac.config.SACConfig`.
        obs_shape: the (stacked) observation the env side provides: ``(C*S, H, W)`` uint8
            pixels in [0, 255] (with ``"crop"`` this is the *rendered* size, e.g. 100x100,
            and the encoder sees ``crop_size``), or ``(D,)`` float states.
        action_dim: ``A``; actions are in ``[-1, 1]^A`` (the loop rescales to env bounds).
        encoder_config: :class:`PixelEncoderConfig` (pixels only; default drq4).
        device: torch device string.
        seed: seed of the agent's own torch RNG (sampling, augmentation).

    Raises:
        ValueError: bad shapes, ``"crop"`` larger than the images, augmentation on states.
    """

    def __init__(
        self,
        config: SACConfig,
        obs_shape: tuple[int, ...],
        action_dim: int,
        encoder_config: PixelEncoderConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.action_dim = int(action_dim)
        if self.action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.pixels = len(self.obs_shape) == 3
        self.encoder_config = encoder_config or PixelEncoderConfig()
        nets = build_networks(config, self.obs_shape, self.action_dim, self.encoder_config)
        self.encoder_input_shape = nets.encoder_input_shape
        self.encoder, self.actor, self.critic = nets.encoder, nets.actor, nets.critic
        self.encoder_target = copy.deepcopy(self.encoder)
        self.critic_target = copy.deepcopy(self.critic)
        for module in (self.encoder_target, self.critic_target):
            module.requires_grad_(False)
        self.target_entropy = (
            -float(self.action_dim) if config.target_entropy is None
            else float(config.target_entropy)
        )
        self.online = nn.ModuleDict(nets.components())
        self.target = nn.ModuleDict(self.target_components())
        self.online.to(self.device)
        self.target.to(self.device)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), device=self.device,
                                      requires_grad=True)
        self.encoder_frozen = False
        self._frozen_head = False
        self.frozen: set[str] = set()
        self.num_updates = 0
        self._build_optimizers()

    # ------------------------------------------------------------------ components
    def _build_optimizers(self) -> None:
        """Adam over the trainable parameters: critic + encoder, actor, temperature. An
        optimizer with nothing to train (frozen components) is ``None`` and its step skipped."""
        cfg = self.config
        enc_params = [p for p in self.encoder.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = []
        if "critic" not in self.frozen:
            groups.append({"params": list(self.critic.parameters()), "lr": cfg.critic_lr})
        if enc_params:
            groups.append({"params": enc_params, "lr": cfg.encoder_lr})
        self.critic_optimizer: torch.optim.Adam | None = (
            torch.optim.Adam(groups, betas=(cfg.beta1, 0.999), foreach=True) if groups else None
        )
        self.actor_optimizer: torch.optim.Adam | None = (
            torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=(cfg.beta1, 0.999),
                             foreach=True) if "actor" not in self.frozen else None
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr,
                                                betas=(cfg.alpha_beta1, 0.999), foreach=True)

    def _optimizers(self) -> dict[str, torch.optim.Adam]:
        opts = {"critic": self.critic_optimizer, "actor": self.actor_optimizer,
                "alpha": self.alpha_optimizer}
        return {k: v for k, v in opts.items() if v is not None}

    def _param_names(self) -> dict[int, str]:
        names = {id(p): f"online.{n}" for n, p in self.online.named_parameters()}
        names[id(self.log_alpha)] = "log_alpha"
        return names

    @property
    def alpha(self) -> float:
        """Current temperature ``exp(log_alpha)``."""
        return float(self.log_alpha.detach().exp())

    def named_components(self) -> dict[str, nn.Module]:
        """Online ``encoder``, ``actor``, ``critic`` (:class:`rltransfer.core.types.Agent`).
        The actor's conv layers are the encoder's (``actor`` holds only its head and trunk)."""
        return {"encoder": self.encoder, "actor": self.actor, "critic": self.critic}

    def target_components(self) -> dict[str, nn.Module]:
        """Target ``encoder`` and ``critic`` (the actor has none)."""
        return {"encoder": self.encoder_target, "critic": self.critic_target}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The critic (+ encoder), actor and temperature optimizers that exist."""
        return list(self._optimizers().values())

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly the components ``names`` (no gradient steps), unfreeze the others.

        ``"encoder"`` freezes the whole encoder, convs and head, with its BatchNorm layers
        kept in eval mode (:meth:`set_encoder_frozen` with ``include_head``); without it a
        convs-only freeze made by :meth:`set_encoder_frozen` stays. Frozen ``actor`` /
        ``critic``: their losses are computed but not applied. The temperature keeps
        training. Adam moments of parameters that stay trainable are kept.

        Raises:
            UnknownComponentError: a name that is not a component.
        """
        wanted = set(check_component_names(names, COMPONENTS, "freeze"))
        if "encoder" in wanted:
            enc_frozen, head_frozen = True, True
        elif self._frozen_head:  # the whole encoder was frozen: unfreeze it
            enc_frozen, head_frozen = False, False
        else:  # keep a convs-only freeze (Kadavath et al.)
            enc_frozen, head_frozen = self.encoder_frozen, False
        old = self._optimizers()
        self.frozen = wanted
        self.encoder_frozen, self._frozen_head = enc_frozen, head_frozen
        self.encoder.convs.requires_grad_(not enc_frozen)
        self.encoder.head.requires_grad_(not head_frozen)
        self.actor.requires_grad_("actor" not in wanted)
        self.critic.requires_grad_("critic" not in wanted)
        self._build_optimizers()
        for key, opt in self._optimizers().items():
            if key in old:
                carry_optimizer_state(old[key], opt)

    def sync_targets(self) -> None:
        """Hard copy online -> target (call after loading pretrained encoder weights)."""
        self.encoder_target.load_state_dict(self.encoder.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())

    def set_encoder_frozen(self, frozen: bool, include_head: bool = False) -> None:
        """Freeze (or unfreeze) the shared conv layers (and, with ``include_head``, the
        critic's encoder head): no gradient steps, and BatchNorm layers kept in eval mode so
        running statistics do not change either (Kadavath et al. 2021's frozen encoder).
        Rebuilds the critic optimizer (its Adam moments for the encoder are dropped); call
        before training."""
        self.encoder_frozen = bool(frozen)
        self.encoder.convs.requires_grad_(not frozen)
        self.encoder.head.requires_grad_(not (frozen and include_head))
        self._frozen_head = bool(frozen and include_head)
        if self._frozen_head:
            self.frozen.add("encoder")
        else:
            self.frozen.discard("encoder")
        self._build_optimizers()

    def _train_mode(self, mode: bool) -> None:
        self.online.train(mode)
        self.target.train(mode)
        if self.encoder_frozen:
            self.encoder.convs.eval()
            self.encoder_target.convs.eval()

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of observations.

        Args:
            obs: ``[B, *obs_shape]`` (uint8 pixels in [0, 255], or float states).
            deterministic: ``tanh(mu)`` (evaluation) instead of a sample.

        Returns:
            float32 ``[B, A]`` in [-1, 1].

        Raises:
            ValueError: wrong observation shape.
        """
        cfg = self.config
        x = eval_view(obs_tensor(obs, self.obs_shape, self.device, "obs"), cfg.augmentation,
                      cfg.crop_size)
        self._train_mode(False)
        feats = self.encoder.conv_features(x)
        action, _, mean = self.actor.sample(feats, self.generator)
        out = mean if deterministic else action
        return out.float().cpu().numpy()

    # ------------------------------------------------------------------ learning
    def critic_target_values(self, next_obs: torch.Tensor, reward: torch.Tensor,
                             discount: torch.Tensor) -> torch.Tensor:
        """:func:`~rltransfer.agents.sac.losses.soft_bellman_target` ``[B]`` for the
        (already augmented) encoder input ``next_obs`` ``[B, C, H, W]`` (or states ``[B,
        D]``), n-step returns ``reward`` ``[B]`` and bootstrap discounts ``discount`` ``[B]``:
        ``a' ~ pi(.|s')`` on the online conv features, ``Q'`` from the target encoder and
        critic. No gradient flows."""
        with torch.no_grad():
            next_action, next_logp, _ = self.actor.sample(
                self.encoder.conv_features(next_obs), self.generator
            )
            q1, q2 = self.critic_target(self.encoder_target(next_obs), next_action)
            return losses.soft_bellman_target(q1, q2, next_logp, self.log_alpha.exp(),
                                              reward, discount)

    def actor_loss(self, conv_features: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor loss, log_prob [B])``: :func:`~rltransfer.agents.sac.losses.actor_loss`
        with ``a ~ pi`` on the *detached* conv features ``[B, *conv_shape]``; only the
        actor's parameters receive gradients."""
        feats = conv_features.detach()
        action, logp, _ = self.actor.sample(feats, self.generator)
        with no_param_grads(self.encoder, self.critic):
            q1, q2 = self.critic(self.encoder.head(feats), action)
        return losses.actor_loss(logp, q1, q2, self.log_alpha.detach().exp()), logp

    def alpha_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """:func:`~rltransfer.agents.sac.losses.temperature_loss` of this agent's
        ``log_alpha`` and target entropy for ``log_prob`` ``[B]``."""
        return losses.temperature_loss(self.log_alpha, log_prob, self.target_entropy)

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Adam | None, what: str
              ) -> float:
        """Backward, (optional) clip and step; returns the gradient norm (0 when frozen).

        Raises:
            NonFiniteLossError: NaN/inf gradient norm; the step is not applied.
        """
        if optimizer is None:  # everything this loss trains is frozen
            return 0.0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.config.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads])) if grads else \
                torch.zeros(())
        if not bool(torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite {what} gradient at update {self.num_updates + 1}; that step was "
                "skipped. Lower the learning rates or check observations/rewards for NaN/inf"
            )
        optimizer.step()
        return float(norm)

    def _check_finite(self, value: float, what: str, applied: str) -> None:
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"non-finite {what} ({value}) at update {self.num_updates + 1}; {applied} "
                "Check rewards/observations for NaN/inf or lower the learning rates"
            )

    def update(self, batch: dict[str, Any]) -> UpdateResult:
        """One SAC update (critic; actor + temperature and targets on their periods).

        Args:
            batch: ``TransitionReplay.sample`` output with continuous actions: ``obs``,
                ``next_obs`` ``[B, *obs_shape]``, ``action`` float ``[B, A]`` in [-1, 1],
                ``n_step_return`` ``[B]``, ``bootstrap_discount`` ``[B]``
                (:func:`~rltransfer.agents.sac.batch.batch_tensors`).

        Returns:
            :class:`~rltransfer.core.types.UpdateResult` with ``priorities=None`` (uniform
            replay) and metrics ``critic_loss``, ``q_mean``, ``target_mean``, ``alpha`` and,
            on actor updates, ``actor_loss``, ``alpha_loss``, ``entropy`` (``-log pi`` mean).

        Raises:
            KeyError / ValueError: missing keys or bad shapes.
            NonFiniteLossError: NaN/inf loss or gradient; the critic step is skipped when the
                critic loss is bad (nothing changed), the actor/alpha steps when theirs is.
        """
        cfg = self.config
        t = batch_tensors(batch, self.obs_shape, self.action_dim, self.device)
        self._train_mode(True)
        obs = augment(t.obs, cfg.augmentation, cfg.shift_pad, cfg.crop_size, self.generator)
        next_obs = augment(t.next_obs, cfg.augmentation, cfg.shift_pad, cfg.crop_size,
                           self.generator)
        y = self.critic_target_values(next_obs, t.n_step_return, t.bootstrap_discount)
        conv = self.encoder.conv_features(obs)
        q1, q2 = self.critic(self.encoder.head(conv), t.action)
        critic_loss = losses.critic_loss(q1, q2, y)
        loss_value = float(critic_loss.detach())
        self._check_finite(loss_value, "critic loss", "the update was skipped.")
        self._step(critic_loss, self.critic_optimizer, "critic")
        metrics = {
            "critic_loss": loss_value,
            "q_mean": float(q1.detach().mean()),
            "target_mean": float(y.mean()),
        }
        u = self.num_updates
        self.num_updates = u + 1
        if u % cfg.actor_update_every_updates == 0:
            a_loss, logp = self.actor_loss(conv)
            self._check_finite(float(a_loss.detach()), "actor loss",
                               "the critic step was applied, the actor step skipped.")
            self._step(a_loss, self.actor_optimizer, "actor")
            al_loss = self.alpha_loss(logp)
            self._step(al_loss, self.alpha_optimizer, "temperature")
            metrics.update(actor_loss=float(a_loss.detach()), alpha_loss=float(al_loss.detach()),
                           entropy=float(-logp.detach().mean()))
        if u % cfg.target_update_every_updates == 0:
            soft_update_(self.critic_target, self.critic, cfg.critic_tau)
            soft_update_(self.encoder_target, self.encoder, cfg.encoder_tau)
        metrics["alpha"] = self.alpha
        return UpdateResult(metrics=metrics, priorities=None)

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as flat CPU tensors (safetensors-ready).

        Keys: ``online.<encoder|actor|critic>.<name>``, ``target.<encoder|critic>.<name>``,
        ``log_alpha`` ``[1]``, ``optimizer.<critic|actor|alpha>.<param name>.<field>``,
        ``num_updates`` ``int64[1]``.
        """
        out = component_tensors(self.named_components(), "online.", ".")
        out.update(component_tensors(self.target_components(), "target.", "."))
        out["log_alpha"] = self.log_alpha.detach().cpu().reshape(1).clone()
        names = self._param_names()
        for oname, opt in self._optimizers().items():
            out.update(optimizer_tensors(opt, names, f"optimizer.{oname}."))
        out["num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able description of the state: counters, shapes, frozen flags."""
        return {
            "num_updates": self.num_updates,
            "obs_shape": list(self.obs_shape),
            "action_dim": self.action_dim,
            "encoder_frozen": self.encoder_frozen,
            "encoder_head_frozen": self._frozen_head,
            "frozen": sorted(self.frozen),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any] | None = None) -> None:
        """Restore :meth:`state_tensors` output (and check :meth:`state_meta` if given).

        The encoder-freeze flags in ``meta`` are applied first (they decide which Adam
        moments the state must hold).

        Raises:
            ValueError: another agent's state (shapes, keys, spaces); checked before any
                tensor is changed.
        """
        if meta is not None:
            for key in ("obs_shape", "action_dim"):
                mine = self.state_meta()[key]
                if key in meta and meta[key] != mine:
                    raise ValueError(
                        f"SAC state was saved with {key}={meta[key]}, this agent has {mine}; "
                        "build the agent with the saved spaces"
                    )
        networks = {"online.": self.online, "target.": self.target}
        states, problems = read_network_tensors(tensors, networks)
        for key in ("log_alpha", "num_updates"):
            if key not in tensors:
                problems.append(f"missing {key}")
        if meta is not None and meta.get("encoder_frozen"):
            self.set_encoder_frozen(True, bool(meta.get("encoder_head_frozen", False)))
        if meta is not None and meta.get("frozen"):
            self.set_frozen(meta["frozen"])
        names = self._param_names()
        by_name: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        for oname, opt in self._optimizers().items():
            valid = {names[id(p)] for g in opt.param_groups for p in g["params"]}
            by_name[oname], opt_problems = read_optimizer_tensors(
                tensors, f"optimizer.{oname}.", valid)
            problems += opt_problems
        optimizer_prefixes = tuple(f"optimizer.{oname}." for oname in by_name)
        problems += unexpected_tensors(tensors, ("online.", "target.", *optimizer_prefixes),
                                       ("log_alpha", "num_updates"))
        if problems:
            raise ValueError("SAC state does not fit this agent: "
                             + summarise_problems(problems, 8))
        load_network_tensors(networks, states, self.device)
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"].reshape(()).to(self.device))
        for oname, opt in self._optimizers().items():
            load_optimizer_state(opt, names, by_name.get(oname, {}), self.device)
        self.num_updates = int(tensors["num_updates"].reshape(-1)[0])
