"""EfficientZero's world model: representation h, dynamics g (with the value-prefix LSTM),
prediction f and the SimSiam projection used by the consistency loss.

Source: EfficientZero (Ye et al. 2021) as specified in XTRA (Xu et al. 2023), Appendix H;
MuZero (Schrittwieser et al. 2020) for the latent normalisation and the categorical heads.

Layout for the ``atari`` preset (96x96 RGB, 4 stacked frames -> 12 input planes; 3x3 kernels):

* ``representation`` (h): conv stride 2 -> 32 planes 48x48 (BN, ReLU); residual block 32;
  residual downsample block stride 2 -> 64 planes 24x24; residual block 64; avg pool stride 2
  -> 12x12; residual block 64; avg pool stride 2 -> 6x6; ``representation_blocks`` residual
  blocks 64 (1 in EfficientZero, 4 in XTRA / EfficientZero-L). Latent ``[64, 6, 6]``.
* ``dynamics`` (g): the latent and one action plane (filled with ``a / |A|``) -> 65 planes;
  conv 3x3 stride 1 -> 64 (BN); add the input latent (residual link); ReLU;
  ``dynamics_blocks`` residual blocks. Value-prefix head on the new (unnormalised) latent:
  1x1 conv -> 16 (BN, ReLU), flatten, LSTM (512), BN, ReLU, FC 32 (BN, ReLU), FC 601.
* ``prediction`` (f): residual block; value head 1x1 conv -> 16 (BN, ReLU), flatten, FC 32
  (BN, ReLU), FC 601; policy head likewise with ``|A|`` outputs.
* ``projection``: SimSiam projector (flattened latent -> 1024 (BN, ReLU) -> 1024 (BN, ReLU)
  -> 1024 (BN)) in ``projection.projector`` and the predictor (1024 -> 512 (BN, ReLU) -> 1024)
  in ``projection.predictor`` — both inside ``projection`` so that checkpoint prefix
  ``projection/`` holds the whole consistency branch.

Decisions (documented deviations):

* Appendix H lists the dynamics convolution with "stride 2"; a residual link to the input
  latent needs the same resolution, so the convolution has stride 1 (as in public EZ code).
* Appendix H writes "(BN + ReLU)" after the two average poolings; the pooled maps are already
  non-negative residual-block outputs and the public EZ code applies no BN there: none here.
* Final layers of the value, value-prefix and policy heads start at zero (uniform outputs,
  value 0), as in the public EZ code.
* Latent min-max normalisation (``WorldModelConfig.latent_min_max``): when on, the latent is
  scaled per sample over all of its (C, H, W) entries after h and after g:
  ``(s - min) / max(max - min, 1e-5)`` (MuZero Appendix G; EZ's ``renormalize``, which has no
  floor). The public EfficientZero and XTRA Atari configs leave it off (``state_norm=False``),
  so the dataclass default and the ``atari`` / ``atari-l`` presets have it off; the ``small``
  MinAtar preset keeps it on (the setting its benchmarks were measured with;
  ``docs/decisions.md``).
* Observations: ``uint8`` inputs are divided by ``obs_scale`` (the one place where scaling
  happens); floating-point inputs are taken as already scaled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rltransfer.agents.efficientzero.mcts import ModelOutput
from rltransfer.core.config import ConfigError
from rltransfer.nets.value_transforms import support_to_scalar


@dataclass
class WorldModelConfig:
    """Sizes of the EfficientZero world model (defaults: the ``atari`` preset, XTRA App. H).

    Attributes:
        downsample: use the strided/pooled Atari representation (96x96 -> 6x6); without it the
            representation keeps the input resolution (one 3x3 conv, BN, ReLU, then blocks).
        num_channels: planes of the latent (64).
        representation_blocks: residual blocks at the end of h (1 = EfficientZero, 4 = XTRA).
        dynamics_blocks: residual blocks of g after the action-conditioned conv (1).
        prediction_blocks: residual blocks at the start of f (1).
        value_prefix_channels / value_channels / policy_channels: planes of the 1x1
            convolutions that start the three heads (16 each).
        value_prefix_hidden / value_hidden / policy_hidden: hidden FC sizes of the heads.
        lstm_hidden_size: value-prefix LSTM hidden size (512).
        value_support_size / value_prefix_support_size: ``S`` of the categorical supports
            (300 -> 601 bins).
        value_rescale_eps: ``eps`` of the transform ``h`` applied before the support.
        projection_hidden / projection_out / predictor_hidden: SimSiam sizes (1024/1024/512).
        obs_scale: ``uint8`` observations are divided by this (255 for Atari pixels, 1 for
            MinAtar's 0/1 planes; ``env_spec(env_id).obs_scale``).
        bn_momentum: BatchNorm momentum (PyTorch convention, 0.1).
        latent_min_max: scale the outputs of h and g to [0, 1] per sample
            (:func:`normalize_latent`; MuZero App. G). Off by default, as EfficientZero's
            public Atari config (``state_norm=False``); on in the ``small`` preset.
    """

    downsample: bool = True
    num_channels: int = 64
    representation_blocks: int = 1
    dynamics_blocks: int = 1
    prediction_blocks: int = 1
    value_prefix_channels: int = 16
    value_channels: int = 16
    policy_channels: int = 16
    value_prefix_hidden: tuple[int, ...] = (32,)
    value_hidden: tuple[int, ...] = (32,)
    policy_hidden: tuple[int, ...] = (32,)
    lstm_hidden_size: int = 512
    value_support_size: int = 300
    value_prefix_support_size: int = 300
    value_rescale_eps: float = 1e-3
    projection_hidden: int = 1024
    projection_out: int = 1024
    predictor_hidden: int = 512
    obs_scale: float = 255.0
    bn_momentum: float = 0.1
    latent_min_max: bool = False

    def __post_init__(self) -> None:
        problems = []
        for name in ("num_channels", "value_prefix_channels", "value_channels", "policy_channels",
                     "lstm_hidden_size", "value_support_size", "value_prefix_support_size",
                     "projection_hidden", "projection_out", "predictor_hidden"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("representation_blocks", "dynamics_blocks", "prediction_blocks"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("value_prefix_hidden", "value_hidden", "policy_hidden"):
            if any(int(h) < 1 for h in getattr(self, name)):
                problems.append(f"{name} entries must be >= 1 (got {getattr(self, name)})")
        if not self.value_rescale_eps >= 0:
            problems.append(f"value_rescale_eps must be >= 0 (got {self.value_rescale_eps})")
        if not self.obs_scale > 0:
            problems.append(f"obs_scale must be > 0 (got {self.obs_scale})")
        if not 0 < self.bn_momentum <= 1:
            problems.append(f"bn_momentum must be in (0, 1] (got {self.bn_momentum})")
        if problems:
            raise ConfigError("WorldModelConfig: " + "; ".join(problems))


WORLD_MODEL_PRESETS: dict[str, WorldModelConfig] = {
    # XTRA Appendix H / EfficientZero: 1 representation block.
    "atari": WorldModelConfig(),
    # EfficientZero-L / XTRA: 4 residual blocks at the end of the representation.
    "atari-l": WorldModelConfig(representation_blocks=4),
    # MinAtar-sized (10x10, a few 0/1 planes): full resolution, few channels, small heads.
    "small": WorldModelConfig(
        downsample=False, num_channels=16, value_prefix_channels=8, value_channels=8,
        policy_channels=8, value_prefix_hidden=(32,), value_hidden=(32,), policy_hidden=(32,),
        lstm_hidden_size=64, value_support_size=20, value_prefix_support_size=10,
        projection_hidden=256, projection_out=256, predictor_hidden=64, obs_scale=1.0,
        latent_min_max=True,
    ),
}


def world_model_preset(name: str) -> WorldModelConfig:
    """A copy of a named preset: ``"atari"`` (XTRA App. H, 1 representation block),
    ``"atari-l"`` (4 blocks, XTRA / EfficientZero-L) or ``"small"`` (MinAtar 10x10 inputs).

    Raises:
        ConfigError: unknown name (the message lists the presets).
    """
    if name not in WORLD_MODEL_PRESETS:
        raise ConfigError(
            f"unknown world-model preset {name!r}; choose one of {sorted(WORLD_MODEL_PRESETS)}"
        )
    return dataclasses.replace(WORLD_MODEL_PRESETS[name])


class WorldModelInputError(ValueError):
    """An input to the world model has the wrong shape, dtype or range."""


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + skip, ReLU. With ``stride`` 2 (or a change of planes) the
    skip is a strided 3x3 conv (EZ's "residual downsample block"). ``[B, c_in, H, W] ->
    [B, c_out, ceil(H / stride), ceil(W / stride)]``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=momentum)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=momentum)
        self.skip: nn.Module = (
            _conv3x3(c_in, c_out, stride) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.skip(x))


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, momentum: float,
         zero_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.BatchNorm1d(h, momentum=momentum), nn.ReLU()]
        d = h
    last = nn.Linear(d, out_dim)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def normalize_latent(latent: torch.Tensor, min_range: float = 1e-5) -> torch.Tensor:
    """Per-sample min-max scaling of a latent ``[B, ...]`` to ``[0, 1]`` (MuZero App. G):
    ``(s - min) / max(max - min, min_range)`` over all non-batch entries."""
    flat = latent.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    scaled = (flat - lo) / (hi - lo).clamp(min=min_range)
    return scaled.view_as(latent)


class RepresentationNet(nn.Module):
    """h: scaled observation ``[B, C*S, H, W]`` float -> latent ``[B, C_latent, H', W']``
    (unnormalised; :class:`EfficientZeroNet` min-max normalises it when
    ``latent_min_max``)."""

    def __init__(self, in_channels: int, config: WorldModelConfig) -> None:
        super().__init__()
        c, m = config.num_channels, config.bn_momentum
        layers: list[nn.Module]
        if config.downsample:
            half = max(1, c // 2)
            layers = [
                _conv3x3(in_channels, half, stride=2), nn.BatchNorm2d(half, momentum=m), nn.ReLU(),
                ResidualBlock(half, half, momentum=m),
                ResidualBlock(half, c, stride=2, momentum=m),
                ResidualBlock(c, c, momentum=m),
                nn.AvgPool2d(3, stride=2, padding=1),
                ResidualBlock(c, c, momentum=m),
                nn.AvgPool2d(3, stride=2, padding=1),
            ]
        else:
            layers = [_conv3x3(in_channels, c), nn.BatchNorm2d(c, momentum=m), nn.ReLU()]
        layers += [ResidualBlock(c, c, momentum=m) for _ in range(config.representation_blocks)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DynamicsNet(nn.Module):
    """g: (latent ``[B, C, H, W]``, actions int64 ``[B]``, reward hidden (h, c) ``[1, B, L]``)
    -> (next latent (unnormalised) ``[B, C, H, W]``, value-prefix logits ``[B, 2S+1]``,
    new reward hidden)."""

    def __init__(self, latent_shape: tuple[int, int, int], num_actions: int,
                 config: WorldModelConfig) -> None:
        super().__init__()
        c, h, w = latent_shape
        m = config.bn_momentum
        self.num_actions = num_actions
        self.conv = _conv3x3(c + 1, c)
        self.bn = nn.BatchNorm2d(c, momentum=m)
        self.blocks = nn.Sequential(*[ResidualBlock(c, c, momentum=m)
                                      for _ in range(config.dynamics_blocks)])
        rc = config.value_prefix_channels
        self.reward_conv = nn.Conv2d(c, rc, 1, bias=False)
        self.reward_bn = nn.BatchNorm2d(rc, momentum=m)
        self.lstm = nn.LSTM(rc * h * w, config.lstm_hidden_size)
        self.lstm_bn = nn.BatchNorm1d(config.lstm_hidden_size, momentum=m)
        self.reward_mlp = _mlp(config.lstm_hidden_size, config.value_prefix_hidden,
                               2 * config.value_prefix_support_size + 1, m, zero_last=True)

    def forward(
        self,
        latent: torch.Tensor,
        actions: torch.Tensor,
        reward_hidden: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b = latent.shape[0]
        plane = (actions.to(latent.dtype) / self.num_actions).view(b, 1, 1, 1)
        x = torch.cat([latent, plane.expand(b, 1, *latent.shape[2:])], dim=1)
        x = torch.relu(self.bn(self.conv(x)) + latent)
        next_latent = self.blocks(x)
        r = torch.relu(self.reward_bn(self.reward_conv(next_latent))).flatten(1)
        out, (hn, cn) = self.lstm(r.unsqueeze(0), reward_hidden)
        r = torch.relu(self.lstm_bn(out.squeeze(0)))
        return next_latent, self.reward_mlp(r), (hn, cn)


class PredictionNet(nn.Module):
    """f: latent ``[B, C, H, W]`` -> (policy logits ``[B, A]``, value logits ``[B, 2S+1]``)."""

    def __init__(self, latent_shape: tuple[int, int, int], num_actions: int,
                 config: WorldModelConfig) -> None:
        super().__init__()
        c, h, w = latent_shape
        m = config.bn_momentum
        self.blocks = nn.Sequential(*[ResidualBlock(c, c, momentum=m)
                                      for _ in range(config.prediction_blocks)])
        self.value_conv = nn.Sequential(nn.Conv2d(c, config.value_channels, 1, bias=False),
                                        nn.BatchNorm2d(config.value_channels, momentum=m),
                                        nn.ReLU())
        self.policy_conv = nn.Sequential(nn.Conv2d(c, config.policy_channels, 1, bias=False),
                                         nn.BatchNorm2d(config.policy_channels, momentum=m),
                                         nn.ReLU())
        self.value_mlp = _mlp(config.value_channels * h * w, config.value_hidden,
                              2 * config.value_support_size + 1, m, zero_last=True)
        self.policy_mlp = _mlp(config.policy_channels * h * w, config.policy_hidden,
                               num_actions, m, zero_last=True)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(latent)
        value_logits = self.value_mlp(self.value_conv(x).flatten(1))
        policy_logits = self.policy_mlp(self.policy_conv(x).flatten(1))
        return policy_logits, value_logits


class ProjectionNet(nn.Module):
    """SimSiam branch of the consistency loss (EfficientZero Sec. 4.1; Chen & He 2021).

    ``projector``: flattened latent -> ``projection_hidden`` (BN, ReLU) -> ``projection_hidden``
    (BN, ReLU) -> ``projection_out`` (BN). ``predictor`` (EZ's ``projection_head``):
    ``projection_out`` -> ``predictor_hidden`` (BN, ReLU) -> ``projection_out``.
    """

    def __init__(self, latent_dim: int, config: WorldModelConfig) -> None:
        super().__init__()
        m, ph, po = config.bn_momentum, config.projection_hidden, config.projection_out
        self.projector = nn.Sequential(
            nn.Linear(latent_dim, ph), nn.BatchNorm1d(ph, momentum=m), nn.ReLU(),
            nn.Linear(ph, ph), nn.BatchNorm1d(ph, momentum=m), nn.ReLU(),
            nn.Linear(ph, po), nn.BatchNorm1d(po, momentum=m),
        )
        self.predictor = nn.Sequential(
            nn.Linear(po, config.predictor_hidden),
            nn.BatchNorm1d(config.predictor_hidden, momentum=m), nn.ReLU(),
            nn.Linear(config.predictor_hidden, po),
        )

    def project(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, *latent_shape]`` -> ``[B, projection_out]``."""
        return self.projector(latent.flatten(1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Online branch: predictor(projector(latent)), ``[B, projection_out]``."""
        return self.predictor(self.project(latent))


class EfficientZeroNet(nn.Module):
    """EfficientZero world model with named components (for checkpoints and XTRA transfer).

    Args:
        config: sizes (:class:`WorldModelConfig`).
        obs_shape: stacked observation ``(C*S, H, W)``; the ``atari`` preset expects
            ``(12, 96, 96)`` (any size works; the latent is ``ceil(H/16) x ceil(W/16)``).
        num_actions: ``|A|`` >= 1.

    Attributes:
        representation, dynamics, prediction, projection: the components h, g, f and the
            SimSiam projector + predictor.
        latent_shape: ``(C, H', W')`` of the latent state.

    Raises:
        WorldModelInputError: bad ``obs_shape`` / ``num_actions``.
    """

    COMPONENTS = ("representation", "dynamics", "prediction", "projection")

    def __init__(self, config: WorldModelConfig, obs_shape: tuple[int, int, int],
                 num_actions: int) -> None:
        super().__init__()
        if len(obs_shape) != 3 or min(obs_shape) < 1:
            raise WorldModelInputError(
                f"obs_shape must be (C*S, H, W) with positive sizes, got {obs_shape}"
            )
        if num_actions < 1:
            raise WorldModelInputError(f"num_actions must be >= 1, got {num_actions}")
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = int(num_actions)
        self.representation = RepresentationNet(self.obs_shape[0], config)
        with torch.no_grad():
            was = self.representation.training
            self.representation.eval()
            probe = self.representation(torch.zeros(1, *self.obs_shape))
            self.representation.train(was)
        c, h, w = (int(s) for s in probe.shape[1:])
        self.latent_shape = (c, h, w)
        self.dynamics = DynamicsNet(self.latent_shape, self.num_actions, config)
        self.prediction = PredictionNet(self.latent_shape, self.num_actions, config)
        self.projection = ProjectionNet(c * h * w, config)

    # ------------------------------------------------------------------ tensor level
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def scale_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """``uint8`` -> float32 ``/ obs_scale``; float inputs unchanged (already scaled).

        Raises:
            WorldModelInputError: ``obs`` is not ``[B, *obs_shape]``.
        """
        if obs.ndim != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise WorldModelInputError(
                f"obs must be [B, {', '.join(map(str, self.obs_shape))}] (stacked frames, "
                f"channels first), got {list(obs.shape)}"
            )
        obs = obs.to(self._device())
        if obs.dtype == torch.uint8:
            return obs.float() / self.config.obs_scale
        return obs.float()

    def _normalise(self, latent: torch.Tensor) -> torch.Tensor:
        return normalize_latent(latent) if self.config.latent_min_max else latent

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """h with scaling (and min-max normalisation when ``config.latent_min_max``): obs
        ``[B, *obs_shape]`` (``uint8``, or float already divided by ``obs_scale``) -> latent
        ``[B, *latent_shape]`` (in [0, 1] per sample when normalised)."""
        return self._normalise(self.representation(self.scale_obs(obs)))

    def predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f: latent -> (policy logits ``[B, A]``, value logits ``[B, 2S+1]``)."""
        return self.prediction(latent)

    def dynamics_step(
        self,
        latent: torch.Tensor,
        reward_hidden: tuple[torch.Tensor, torch.Tensor],
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """g: -> (next latent (min-max normalised when ``config.latent_min_max``),
        value-prefix logits ``[B, 2S+1]``, new (h, c)).

        Raises:
            WorldModelInputError: actions not ``[B]`` integers in ``[0, A)``, or a reward
                hidden that is not ``[1, B, lstm_hidden_size]``.
        """
        b = latent.shape[0]
        if actions.shape != (b,) or actions.dtype.is_floating_point:
            raise WorldModelInputError(
                f"actions must be an integer tensor [B={b}], got {actions.dtype} "
                f"{list(actions.shape)}"
            )
        hidden_shape = (1, b, self.config.lstm_hidden_size)
        if any(tuple(t.shape) != hidden_shape for t in reward_hidden):
            raise WorldModelInputError(
                f"reward_hidden must be (h, c), each {list(hidden_shape)}, got "
                f"{[list(t.shape) for t in reward_hidden]}"
            )
        actions = actions.to(latent.device)
        if b and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise WorldModelInputError(f"actions must be in [0, {self.num_actions})")
        next_latent, prefix_logits, hidden = self.dynamics(latent, actions, reward_hidden)
        return self._normalise(next_latent), prefix_logits, hidden

    def initial_reward_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed value-prefix LSTM state (h, c), each ``[1, B, lstm_hidden_size]``."""
        z = torch.zeros(1, batch_size, self.config.lstm_hidden_size, device=self._device())
        return z, z.clone()

    def value_scalar(self, value_logits: torch.Tensor) -> torch.Tensor:
        """Value logits ``[..., 2S+1]`` -> scalars (support expectation, then h^-1)."""
        cfg = self.config
        return support_to_scalar(value_logits, cfg.value_support_size, cfg.value_rescale_eps)

    def value_prefix_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """Value-prefix logits ``[..., 2S+1]`` -> scalars (support expectation, then h^-1)."""
        cfg = self.config
        return support_to_scalar(logits, cfg.value_prefix_support_size, cfg.value_rescale_eps)

    # ------------------------------------------------------------------ search interface
    @torch.no_grad()
    def initial_inference(self, obs: torch.Tensor) -> ModelOutput:
        """Root of a search: obs ``uint8/float [B, C*S, H, W]`` -> :class:`ModelOutput` with
        the latent, zero reward hidden, zero value prefix, scalar value and policy
        logits (numpy float32). Runs without gradients in the module's current mode."""
        latent = self.represent(obs)
        policy_logits, value_logits = self.predict(latent)
        b = latent.shape[0]
        return ModelOutput(
            latent=latent,
            reward_hidden=self.initial_reward_hidden(b),
            value_prefix=np.zeros(b, dtype=np.float32),
            value=self.value_scalar(value_logits).cpu().numpy().astype(np.float32),
            policy_logits=policy_logits.float().cpu().numpy(),
        )

    @torch.no_grad()
    def recurrent_inference(
        self,
        latent: torch.Tensor,
        reward_hidden: tuple[torch.Tensor, torch.Tensor],
        actions: torch.Tensor,
    ) -> ModelOutput:
        """One model step for a batch: (latent ``[B, *latent_shape]``, (h, c) each
        ``[1, B, L]``, actions int64 ``[B]``) -> :class:`ModelOutput` of the successors: value
        prefix (accumulated from the given hidden), value, policy logits, new hidden.

        Raises:
            WorldModelInputError: see :meth:`dynamics_step`.
        """
        latent = latent.to(self._device())
        hidden = (reward_hidden[0].to(latent.device), reward_hidden[1].to(latent.device))
        next_latent, prefix_logits, new_hidden = self.dynamics_step(latent, hidden, actions)
        policy_logits, value_logits = self.predict(next_latent)
        return ModelOutput(
            latent=next_latent,
            reward_hidden=new_hidden,
            value_prefix=self.value_prefix_scalar(prefix_logits).cpu().numpy().astype(
                np.float32),
            value=self.value_scalar(value_logits).cpu().numpy().astype(np.float32),
            policy_logits=policy_logits.float().cpu().numpy(),
        )
