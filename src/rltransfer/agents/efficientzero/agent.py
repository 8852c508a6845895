"""EfficientZero learner: the unrolled MuZero loss with value prefix and self-supervised
consistency, SGD with a warm-up/step-decay schedule, a target network, checkpoints, and
component-wise loading/freezing for XTRA transfer.

Source: EfficientZero (Ye et al. 2021, Sec. 4 and Eq. 5); MuZero (Schrittwieser et al. 2020,
Appendix G pseudocode) for the unroll and gradient scaling; hyperparameters from XTRA
(Xu et al. 2023, Table 4).

Loss of one sample (``K`` = ``unroll_steps``; ``CE(p, q) = -sum q log softmax(p)``)::

    L = sum_{k=0..K} [ lambda_pi * CE(pi_k, target_pi_k) * mask_k
                     + lambda_v  * CE(v_k, phi(z_k)) ]
      + sum_{k=1..K} [ lambda_r  * CE(vp_k, phi(target_vp_k))
                     + lambda_c  * (-cos(P(proj(s_k)), sg(proj(h(o_{t+k}))))) * mask_{k-1} ]

with ``phi`` = :func:`scalar_to_support` (h then two-hot), ``P`` the SimSiam predictor and
``sg`` stop-gradient; ``sum_b w_b L_b / B`` is minimised (``w`` = importance weights).

Decisions (documented):

* Value and value-prefix losses cover all ``K + 1`` / ``K`` steps (past an episode's end the
  reanalyser's targets describe the absorbing state, as in EfficientZero); the policy loss at
  step ``k`` is masked by ``mask[:, k]`` (no action there, no target); the consistency loss at
  step ``k`` by ``mask[:, k-1]`` (the transition into ``t+k`` happened: EZ's mask), so the
  episode's final observation is still a consistency target.
* Gradient scaling: the gradient of the latent passed from one unroll step to the next is
  scaled by 0.5 (MuZero pseudocode). ``gradient_scale_mode="efficientzero"`` (default) scales
  the gradient of the whole loss by ``1/K`` as the public EfficientZero code does, which is
  what its lr 0.2 was tuned for; ``"muzero"`` scales only the recurrent steps' terms by
  ``1/K`` (MuZero pseudocode). Reported losses are unscaled.
* Consistency targets ``proj(h(o_{t+k}))`` are computed with the online network (no
  gradient), in the same train/eval mode as the update, as in EfficientZero.
* LR: ``lr * (u + 1) / warmup`` for update ``u < warmup`` (EZ uses ``u / warmup``, which
  wastes the first update), then ``lr * decay_rate ** floor((u - warmup) / interval)``:
  0.2 for the paper's 100k updates, then 0.02.
* Frozen components get no gradient step and keep their BatchNorm statistics (eval mode
  during updates).
* Data augmentation (``augmentation="shift_intensity"``, the public EfficientZero default, used
  only while ``consistency_loss_coef > 0`` as there): observations are scaled to floats, then
  each sample is shifted (replicate-pad by ``augmentation_shift_pad`` = 4 pixels, crop back
  at a uniformly random integer offset in ``[0, 2 * pad]`` per axis) and multiplied by
  ``1 + 0.05 * clip(N(0, 1), -2, 2)`` (one scalar per sample). As in the public code, the
  stacked observation ``o_t`` gets one draw and the ``K`` consistency targets of a sample
  get another draw shared by all ``K`` of them (EZ augments the frame sequence
  ``o_{t+1..t+K}`` as one image), so a frame shared by two target stacks is augmented
  identically, while ``o_t`` and the targets are augmented independently. The draws come
  from the learner's own generator (saved in checkpoints, so resuming is exact).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from rltransfer.agents.efficientzero.networks import EfficientZeroNet, WorldModelConfig
from rltransfer.core.checkpoint_components import (
    apply_frozen,
    carry_optimizer_state,
    check_component_names,
    component_tensors,
    load_optimizer_state,
    optimizer_tensors,
    summarise_problems,
    tensor_problems,
)
from rltransfer.core.config import ConfigError
from rltransfer.errors import ComponentMismatchError, UnknownComponentError
from rltransfer.nets.value_transforms import scalar_to_support

COMPONENTS: tuple[str, ...] = EfficientZeroNet.COMPONENTS
"""Checkpoint prefixes of the world model: ``representation`` (h), ``dynamics`` (g, with the
value-prefix LSTM), ``prediction`` (f), ``projection`` (SimSiam projector + predictor)."""


class BatchError(ValueError):
    """An :class:`EZBatch` has wrong shapes, dtypes or non-finite values."""


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient is NaN/inf; the update was not applied."""


class ComponentLoadError(ComponentMismatchError):
    """Component tensors are missing, unexpected or of the wrong shape, or an unknown
    component was named (a :class:`~rltransfer.errors.UserError`)."""


@dataclass
class EZBatch:
    """One learner batch, produced by replay + reanalysis (``agents/reanalyse.py``)."""

    obs: torch.Tensor  # [B, C*S, H, W] uint8, stacked observation at t
    future_obs: torch.Tensor  # [B, K, C*S, H, W] uint8, stacked observations at t+1..t+K
    actions: torch.Tensor  # int64 [B, K], a_t .. a_{t+K-1}
    target_value_prefixes: torch.Tensor  # float32 [B, K], value-prefix targets for steps 1..K
    target_values: torch.Tensor  # float32 [B, K+1], scalar value targets for steps 0..K
    target_policies: torch.Tensor  # float32 [B, K+1, A]
    mask: torch.Tensor  # float32 [B, K+1], 1 where step k lies inside the episode
    weights: torch.Tensor  # float32 [B], importance-sampling weights
    indices: np.ndarray  # int64 [B], replay indices (for priority updates)


@dataclass
class EfficientZeroConfig:
    """Learner hyperparameters (defaults: EfficientZero / XTRA Table 4, Atari).

    Attributes:
        unroll_steps: ``K`` model steps unrolled per sample (5).
        td_steps: n of the n-step value targets (5; used by replay/reanalysis).
        discount: per agent step (0.997^4 for Atari with frame skip 4).
        value_prefix_horizon: the reward LSTM is reset every this many unroll steps (5).
        value_prefix_loss_coef / policy_loss_coef / value_loss_coef / consistency_loss_coef:
            1.0 / 1.0 / 0.25 / 2.0 (EZ Eq. 5: lambda_r, lambda_1, lambda_2, lambda_3).
        lr: peak SGD learning rate (0.2).
        lr_warmup_updates: linear warm-up length in updates (1000, EZ code).
        lr_decay_rate / lr_decay_interval_updates: step decay, lr *= rate every interval
            updates after warm-up (0.1 every 100k: 0.2 -> 0.02).
        momentum / weight_decay: SGD (0.9 / 1e-4).
        max_grad_norm: global gradient-norm clip (5).
        target_update_interval_updates: target network copied every this many updates (200).
        latent_grad_scale: gradient scale of the latent between unroll steps (0.5, MuZero).
        gradient_scale_mode: ``"efficientzero"`` or ``"muzero"`` (see the module docstring).
        priority_eps: added to ``|v_0 - z_0|`` for the new priorities (1e-6).
        augmentation: ``"shift_intensity"`` (public EfficientZero default: random shift +
            intensity noise on the observations and the consistency targets, see the module
            docstring) or ``"none"``. Applied only when ``consistency_loss_coef > 0``, as in
            EZ. ``ez-small`` turns it off (MinAtar's 10x10 frames; ``docs/decisions.md``).
        augmentation_shift_pad: replicate padding of the shift, pixels per side (4).
        augmentation_intensity_scale: std of the multiplicative intensity noise (0.05).
    """

    unroll_steps: int = 5
    td_steps: int = 5
    discount: float = 0.997**4
    value_prefix_horizon: int = 5
    value_prefix_loss_coef: float = 1.0
    policy_loss_coef: float = 1.0
    value_loss_coef: float = 0.25
    consistency_loss_coef: float = 2.0
    lr: float = 0.2
    lr_warmup_updates: int = 1000
    lr_decay_rate: float = 0.1
    lr_decay_interval_updates: int = 100_000
    momentum: float = 0.9
    weight_decay: float = 1e-4
    max_grad_norm: float = 5.0
    target_update_interval_updates: int = 200
    latent_grad_scale: float = 0.5
    gradient_scale_mode: Literal["efficientzero", "muzero"] = "efficientzero"
    priority_eps: float = 1e-6
    augmentation: Literal["none", "shift_intensity"] = "shift_intensity"
    augmentation_shift_pad: int = 4
    augmentation_intensity_scale: float = 0.05

    @property
    def augments(self) -> bool:
        """Whether updates augment observations (switch on and consistency loss on)."""
        return self.augmentation != "none" and self.consistency_loss_coef > 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("unroll_steps", "td_steps", "value_prefix_horizon",
                     "lr_decay_interval_updates", "target_update_interval_updates"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr_warmup_updates < 0:
            problems.append(f"lr_warmup_updates must be >= 0 (got {self.lr_warmup_updates})")
        if not 0.0 < self.discount <= 1.0:
            problems.append(f"discount must be in (0, 1] (got {self.discount})")
        for name in ("value_prefix_loss_coef", "policy_loss_coef", "value_loss_coef",
                     "consistency_loss_coef", "weight_decay", "priority_eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be finite and >= 0 (got {value})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be > 0 (got {self.lr})")
        if not 0.0 < self.lr_decay_rate <= 1.0:
            problems.append(f"lr_decay_rate must be in (0, 1] (got {self.lr_decay_rate})")
        if not 0.0 <= self.momentum < 1.0:
            problems.append(f"momentum must be in [0, 1) (got {self.momentum})")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0 (got {self.max_grad_norm})")
        if not 0.0 < self.latent_grad_scale <= 1.0:
            problems.append(f"latent_grad_scale must be in (0, 1] (got {self.latent_grad_scale})")
        if self.gradient_scale_mode not in ("efficientzero", "muzero"):
            problems.append(
                f"gradient_scale_mode must be 'efficientzero' or 'muzero' "
                f"(got {self.gradient_scale_mode!r})"
            )
        if self.augmentation not in AUGMENTATIONS:
            problems.append(f"augmentation must be one of {list(AUGMENTATIONS)} "
                            f"(got {self.augmentation!r})")
        if int(self.augmentation_shift_pad) < 0:
            problems.append(
                f"augmentation_shift_pad must be >= 0 (got {self.augmentation_shift_pad})")
        if not (math.isfinite(self.augmentation_intensity_scale)
                and 0.0 <= self.augmentation_intensity_scale < 0.5):
            problems.append("augmentation_intensity_scale must be in [0, 0.5) (got "
                            f"{self.augmentation_intensity_scale})")
        if problems:
            raise ConfigError("EfficientZeroConfig: " + "; ".join(problems))


def learning_rate_at(config: EfficientZeroConfig, num_updates: int) -> float:
    """SGD learning rate for update number ``num_updates`` (0-based), see module docstring.

    E.g. defaults: update 0 -> 0.0002, 999 -> 0.2, 100_999 -> 0.2, 101_000 -> 0.02.
    """
    if num_updates < config.lr_warmup_updates:
        return config.lr * (num_updates + 1) / config.lr_warmup_updates
    steps = (num_updates - config.lr_warmup_updates) // config.lr_decay_interval_updates
    return config.lr * config.lr_decay_rate**steps


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient flowing back through ``x`` by ``scale``."""
    return x * scale + x.detach() * (1.0 - scale)


def _cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``-sum_i q_i log softmax(p)_i`` over the last dim: ``[B, N] -> [B]``."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)


AUGMENTATIONS: tuple[str, ...] = ("none", "shift_intensity")
"""Values of :attr:`EfficientZeroConfig.augmentation`."""


def shift_and_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Random-shift augmentation with given offsets (EfficientZero's ``shift``: replicate pad,
    then crop back to the input size; Kostrikov et al. 2021 / Schwarzer et al. 2021).

    Args:
        x: float ``[N, C, H, W]``.
        offsets: integer ``[N, 2]``, (row, column) of each crop's top-left corner in the
            padded image, each in ``[0, 2 * pad]``; ``(pad, pad)`` returns ``x`` unchanged.
        pad: pixels of replicate padding on each side (>= 0).

    Returns:
        float ``[N, C, H, W]``: ``out[n, c, i, j] = x[n, c, clip(i + dy - pad, 0, H - 1),
        clip(j + dx - pad, 0, W - 1)]`` with ``(dy, dx) = offsets[n]``.

    Raises:
        ValueError: wrong shapes, ``pad < 0`` or offsets outside ``[0, 2 * pad]``.
    """
    if x.ndim != 4 or offsets.shape != (x.shape[0], 2) or offsets.dtype.is_floating_point:
        raise ValueError(f"need x [N, C, H, W] and integer offsets [N, 2], got "
                         f"{list(x.shape)} and {offsets.dtype} {list(offsets.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if offsets.numel() and (int(offsets.min()) < 0 or int(offsets.max()) > 2 * pad):
        raise ValueError(f"offsets must lie in [0, {2 * pad}]")
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = offsets.to(x.device, torch.int64)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [N,H,W,C]
    return out.permute(0, 3, 1, 2).contiguous()


def scale_intensity(x: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """Intensity augmentation (EfficientZero's ``Intensity``): ``x * (1 + scale *
    clip(noise, -2, 2))`` with one noise value per sample.

    Args:
        x: float ``[N, ...]``. noise: ``[N]`` (standard normal draws). scale: 0.05 in EZ.

    Returns:
        float ``[N, ...]``.
    """
    factor = 1.0 + scale * noise.to(x.device, x.dtype).clamp(-2.0, 2.0)
    return x * factor.view(-1, *([1] * (x.ndim - 1)))


def augment_observations(x: torch.Tensor, pad: int, intensity_scale: float,
                         generator: torch.Generator) -> torch.Tensor:
    """EfficientZero's ``["shift", "intensity"]`` augmentation of a batch of stacked
    observations: :func:`shift_and_crop` at offsets uniform in ``[0, 2 * pad]``, then
    :func:`scale_intensity` with ``N(0, 1)`` noise; one draw per sample, shared by all of its
    channels (every frame of a stack moves and brightens alike).

    Args:
        x: float ``[N, C, H, W]`` (already scaled; pixels in [0, 1]).
        pad / intensity_scale: 4 / 0.05 in the public EfficientZero code.
        generator: CPU generator of the draws (``2N`` integers, then ``N`` normals).

    Returns:
        float ``[N, C, H, W]`` on ``x``'s device.
    """
    n = int(x.shape[0])
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    noise = torch.randn(n, generator=generator)
    return scale_intensity(shift_and_crop(x, offsets, pad), noise, intensity_scale)


def negative_cosine(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-cos(online, target)`` per row: ``[B, D] -> [B]`` (SimSiam; target not detached here)."""
    return -(F.normalize(online, dim=-1) * F.normalize(target, dim=-1)).sum(-1)


class EfficientZeroLearner:
    """Owns the online and target world models and the SGD optimizer; one :meth:`update` per
    batch.

    Args:
        config: :class:`EfficientZeroConfig`.
        net_config: :class:`WorldModelConfig` of both networks.
        obs_shape: stacked observation ``(C*S, H, W)``.
        num_actions: ``|A|``.
        device: torch device string.
        seed: seed of the augmentation draws (the learner's own CPU generator).

    Attributes:
        network: the online :class:`EfficientZeroNet` (train mode during updates).
        target_network: a copy refreshed every ``target_update_interval_updates`` (eval mode,
            no gradients); used by reanalysis.
        num_updates: updates applied so far.
        frozen: components excluded from training.
    """

    def __init__(self, config: EfficientZeroConfig, net_config: WorldModelConfig,
                 obs_shape: tuple[int, int, int], num_actions: int, device: str = "cpu",
                 seed: int = 0) -> None:
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
    def _check_batch(self, batch: EZBatch) -> None:
        k, a = self.config.unroll_steps, self.num_actions
        b = int(batch.obs.shape[0]) if batch.obs.ndim > 0 else -1
        expected = {
            "obs": (b, *self.obs_shape),
            "future_obs": (b, k, *self.obs_shape),
            "actions": (b, k),
            "target_value_prefixes": (b, k),
            "target_values": (b, k + 1),
            "target_policies": (b, k + 1, a),
            "mask": (b, k + 1),
            "weights": (b,),
        }
        problems = [
            f"{name} is {list(getattr(batch, name).shape)}, expected {list(shape)}"
            for name, shape in expected.items() if tuple(getattr(batch, name).shape) != shape
        ]
        if np.asarray(batch.indices).shape != (b,):
            problems.append(f"indices is {list(np.asarray(batch.indices).shape)}, expected [{b}]")
        if b < 1:
            problems.append("the batch is empty")
        if batch.actions.dtype.is_floating_point:
            problems.append(f"actions must be integers, got {batch.actions.dtype}")
        if problems:
            raise BatchError(
                f"EZBatch does not fit this learner (K={k}, A={a}, obs {list(self.obs_shape)}): "
                + "; ".join(problems)
            )
        for name in ("target_value_prefixes", "target_values", "target_policies", "mask",
                     "weights"):
            if not bool(torch.isfinite(getattr(batch, name)).all()):
                raise BatchError(f"EZBatch.{name} contains NaN/inf; fix the target computation")

    def augment(self, obs: torch.Tensor,
                future_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The learner's inputs for one batch (module docstring, "Data augmentation").

        Args:
            obs: ``[B, C*S, H, W]`` stacked observations at ``t`` (``uint8`` or scaled float).
            future_obs: ``[B, K, C*S, H, W]`` consistency-target observations.

        Returns:
            ``(obs, future_obs)`` unchanged when :attr:`EfficientZeroConfig.augments` is
            false; otherwise both scaled to float (``/ obs_scale``) and augmented by
            :func:`augment_observations`: one draw for ``obs`` and one more per sample shared
            by its ``K`` targets (the ``K`` stacks are augmented as one image).
        """
        cfg = self.config
        if not cfg.augments:
            return obs, future_obs
        net = self.network
        b, k = int(future_obs.shape[0]), int(future_obs.shape[1])
        pad, scale = int(cfg.augmentation_shift_pad), float(cfg.augmentation_intensity_scale)
        obs_aug = augment_observations(net.scale_obs(obs), pad, scale, self.augmentation_rng)
        flat = net.scale_obs(future_obs.reshape(b * k, *self.obs_shape))
        seq = flat.reshape(b, k * self.obs_shape[0], *self.obs_shape[1:])
        seq = augment_observations(seq, pad, scale, self.augmentation_rng)
        return obs_aug, seq.reshape(b, k, *self.obs_shape)

    def _train_modes(self) -> None:
        self.network.train()
        for comp in self.frozen:
            getattr(self.network, comp).eval()

    def update(self, batch: EZBatch) -> tuple[dict[str, float], np.ndarray]:
        """One SGD step on the unrolled EfficientZero loss (module docstring).

        Args:
            batch: :class:`EZBatch` with ``K == unroll_steps`` (any device; moved here).

        Returns:
            (metrics, priorities): metrics as floats (``loss`` = weighted mean total,
            per-term batch means ``value_prefix_loss``, ``policy_loss``, ``value_loss``,
            ``consistency_loss`` (summed over steps, unweighted), ``lr``, ``grad_norm``
            (before clipping), ``value_mean``, ``target_value_mean``); new priorities
            float64 ``[B]`` = ``|v_0 - z_0| + priority_eps`` (EfficientZero).

        Raises:
            BatchError: shapes/dtypes do not fit, or non-finite targets/weights.
            NonFiniteLossError: the loss or gradient norm is NaN/inf; nothing was changed
                (weights, optimizer and BatchNorm statistics are as before the call).
        """
        self._check_batch(batch)
        cfg, net, ncfg = self.config, self.network, self.net_config
        k_un, dev = cfg.unroll_steps, self.device
        bsz = int(batch.obs.shape[0])
        obs = batch.obs.to(dev)
        future = batch.future_obs.to(dev)
        actions = batch.actions.to(dev, torch.int64)
        target_prefix = batch.target_value_prefixes.to(dev, torch.float32)
        target_value = batch.target_values.to(dev, torch.float32)
        target_policy = batch.target_policies.to(dev, torch.float32)
        mask = batch.mask.to(dev, torch.float32)
        weights = batch.weights.to(dev, torch.float32)

        lr = learning_rate_at(cfg, self.num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        buffers = {name: buf.clone() for name, buf in net.named_buffers()}
        self._train_modes()

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
        value_terms = [_cross_entropy(value_logits, value_support[:, 0])]
        policy_terms = [_cross_entropy(policy_logits, target_policy[:, 0]) * mask[:, 0]]
        value_0 = net.value_scalar(value_logits.detach())
        prefix_terms: list[torch.Tensor] = []
        consistency_terms: list[torch.Tensor] = []
        hidden = net.initial_reward_hidden(bsz)
        for k in range(1, k_un + 1):
            latent, prefix_logits, hidden = net.dynamics_step(latent, hidden, actions[:, k - 1])
            policy_logits, value_logits = net.predict(latent)
            value_terms.append(_cross_entropy(value_logits, value_support[:, k]))
            policy_terms.append(_cross_entropy(policy_logits, target_policy[:, k]) * mask[:, k])
            prefix_terms.append(_cross_entropy(prefix_logits, prefix_support[:, k - 1]))
            consistency_terms.append(
                negative_cosine(net.projection(latent), target_proj[:, k - 1]) * mask[:, k - 1]
            )
            if k % cfg.value_prefix_horizon == 0:
                hidden = net.initial_reward_hidden(bsz)
            latent = scale_gradient(latent, cfg.latent_grad_scale)

        def per_sample(first: int, last: int) -> torch.Tensor:
            """Coefficient-weighted loss of steps first..last, [B]."""
            total = torch.zeros(bsz, device=dev)
            for k in range(first, last + 1):
                total = total + cfg.value_loss_coef * value_terms[k]
                total = total + cfg.policy_loss_coef * policy_terms[k]
                if k >= 1:
                    total = total + cfg.value_prefix_loss_coef * prefix_terms[k - 1]
                    total = total + cfg.consistency_loss_coef * consistency_terms[k - 1]
            return total

        step0, recurrent = per_sample(0, 0), per_sample(1, k_un)
        loss = (weights * (step0 + recurrent)).mean()
        if cfg.gradient_scale_mode == "efficientzero":
            objective = loss / k_un
        else:
            objective = (weights * (step0 + recurrent / k_un)).mean()

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
            raise restore(f"non-finite loss {float(loss.detach())}")
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        params = [p for _, p in self._trainable()]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if params \
            else torch.zeros(())
        if not bool(torch.isfinite(grad_norm)):
            raise restore(f"non-finite gradient norm {float(grad_norm)}")
        self.optimizer.step()
        self.num_updates += 1
        if self.num_updates % cfg.target_update_interval_updates == 0:
            self.sync_target()

        priorities = ((value_0 - target_value[:, 0]).abs() + cfg.priority_eps)
        metrics = {
            "loss": float(loss.detach()),
            "value_prefix_loss": float(torch.stack(prefix_terms).sum(0).mean().detach()),
            "policy_loss": float(torch.stack(policy_terms).sum(0).mean().detach()),
            "value_loss": float(torch.stack(value_terms).sum(0).mean().detach()),
            "consistency_loss": float(torch.stack(consistency_terms).sum(0).mean().detach()),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "value_mean": float(value_0.mean()),
            "target_value_mean": float(target_value[:, 0].mean()),
        }
        return metrics, priorities.double().cpu().numpy()

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
            "latent_shape": list(self.network.latent_shape),
        }

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor],
                           meta: Mapping[str, Any] | None = None) -> None:
        """Restore :meth:`state_tensors` output exactly (optionally checking ``meta`` from
        :meth:`state_meta`).

        Raises:
            ComponentLoadError: missing / unexpected / mis-shaped tensors, or ``meta`` of a
                learner with other spaces. Checked before anything changes.
        """
        if meta is not None:
            for key in ("obs_shape", "num_actions"):
                mine = self.state_meta()[key]
                if key in meta and meta[key] != mine:
                    raise ComponentLoadError(
                        f"learner state was saved with {key}={meta[key]}, this learner has "
                        f"{mine}; build the learner with the saved spaces"
                    )
        problems: list[str] = []
        known: set[str] = set()
        states: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for head, net in (("", self.network), ("target/", self.target_network)):
            for comp in COMPONENTS:
                prefix = f"{head}{comp}/"
                mine = getattr(net, comp).state_dict()
                given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                problems += tensor_problems(given, mine, prefix)
                known |= {prefix + k for k in given}
                states[(head, comp)] = given
        for key in ("learner/num_updates", "learner/frozen"):
            if key not in tensors:
                problems.append(f"missing {key}")
            known.add(key)
        known.add("learner/augmentation_rng")  # optional: absent in older checkpoints
        rng_state = tensors.get("learner/augmentation_rng")
        if rng_state is not None and (
                rng_state.numel() != self.augmentation_rng.get_state().numel()):
            problems.append("learner/augmentation_rng is not a torch CPU generator state")
        if "learner/frozen" in tensors and tensors["learner/frozen"].numel() != len(COMPONENTS):
            problems.append(f"learner/frozen must have {len(COMPONENTS)} entries")
        all_params = {f"{comp}/{name}": p for comp in COMPONENTS
                      for name, p in getattr(self.network, comp).named_parameters()}
        momentum: dict[str, torch.Tensor] = {}
        for key, v in tensors.items():
            if not key.startswith("optimizer/"):
                continue
            known.add(key)
            pname, _, field = key[len("optimizer/"):].rpartition("/")
            if field != "momentum_buffer" or pname not in all_params:
                problems.append(f"unexpected optimizer tensor {key}")
            elif tuple(v.shape) != tuple(all_params[pname].shape):
                want = tuple(all_params[pname].shape)
                problems.append(f"{key}: saved {tuple(v.shape)} vs {want}")
            else:
                momentum[pname] = v
        extra = sorted(set(tensors) - known)
        if extra:
            problems.append(f"unexpected tensors {extra[:5]}")
        if problems:
            raise ComponentLoadError("cannot restore the learner: " + summarise_problems(problems))
        for (head, comp), state in states.items():
            net = self.network if head == "" else self.target_network
            getattr(net, comp).load_state_dict({k: v.to(self.device) for k, v in state.items()})
        self.num_updates = int(tensors["learner/num_updates"].reshape(-1)[0])
        flags = tensors["learner/frozen"].reshape(-1).tolist()
        self.frozen = {c for c, f in zip(COMPONENTS, flags, strict=True) if f}
        if "learner/augmentation_rng" in tensors:
            self.augmentation_rng.set_state(
                tensors["learner/augmentation_rng"].to("cpu", torch.uint8).contiguous())
        self.optimizer = self._make_optimizer()
        load_optimizer_state(self.optimizer, self._param_names,
                             {n: {"momentum_buffer": m} for n, m in momentum.items()},
                             self.device)

