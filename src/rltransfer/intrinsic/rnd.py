"""Random Network Distillation (Burda, Edwards, Storkey & Klimov, ICLR 2019).

A fixed, randomly initialised target network ``g`` embeds observations; a predictor ``g_hat``
is trained to match it. The prediction error ``||g_hat(x) - g(x)||^2`` is large on rarely
seen observations and is the novelty signal.

Details following the paper (Sec. 2.2-2.4, Appendix A):

* the input is the single newest frame ``x`` (``uint8``, divided by ``obs_scale``),
  normalised per pixel with running mean / std and clipped to ``[-5, 5]``;
* target: encoder body + one linear layer; predictor: the same body + two ``hidden``-unit
  (512 in the paper) ReLU layers + a linear output; leaky-ReLU convs; orthogonal init
  (gain sqrt(2)), zero biases. The bodies come from :func:`rltransfer.nets.encoders.encoder_body`:
  ``torso="auto"`` gives the Nature-DQN convs (8x8/4, 4x4/2, 3x3/1) on inputs >= 36x36 and
  the small CNN (two 3x3 convs, 16 and 32 channels, padding 1) on small grids (MinAtar 10x10,
  MiniGrid 7x7), where the Nature convs do not fit; ``"mlp"`` uses the flattened frame;
* intrinsic reward ``r_t = e_t / std(R)`` where ``R`` are discounted intrinsic returns per
  env (``R <- gamma_int R + e_t``) and ``std`` is a running std over all envs and steps (no
  mean subtraction from ``e_t``). The intrinsic return is **non-episodic**: Burda et al.
  treat the intrinsic reward stream as one infinite episode (Sec. 2.3, "non-episodic
  intrinsic returns"), and their reference code's forward filter of intrinsic returns
  (``RewardForwardFilter``) is never reset at episode ends. :meth:`RND.reset` therefore
  leaves ``R`` alone;
* the predictor is trained with Adam on the mean squared error.

Statistics: the observation statistics are updated from the acting stream (``next_obs`` in
:meth:`RND.compute`, after scoring, as the reference code updates them from each rollout);
:meth:`RND.update` trains the predictor only and leaves the statistics unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rltransfer.intrinsic.base import (
    IntrinsicInputError,
    check_frames,
    load_optimizer_state_tensors,
    optimizer_state_tensors,
)
from rltransfer.intrinsic.normalizer import RunningMeanStd
from rltransfer.nets.encoders import check_encoder_kind, encoder_body

__all__ = ["RND", "build_rnd_torso"]


def build_rnd_torso(
    in_channels: int, height: int, width: int, kind: str = "auto"
) -> tuple[nn.Sequential, int]:
    """Encoder body of the RND networks: :func:`~rltransfer.nets.encoders.encoder_body`
    with leaky-ReLU activations (Burda et al. 2019, App. A).

    Args:
        in_channels: ``C``.
        height: ``H``.
        width: ``W``.
        kind: an :data:`~rltransfer.nets.encoders.EncoderKind` name.

    Returns:
        ``(body, num_features)``: maps ``float[N, C, H, W]`` to ``float[N, num_features]``.

    Raises:
        ValueError: as :func:`~rltransfer.nets.encoders.encoder_body`.
    """
    return encoder_body(kind, (in_channels, height, width), activation=nn.LeakyReLU)


def _init_orthogonal(module: nn.Module, generator: torch.Generator) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0), generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class RND:
    """Random Network Distillation intrinsic reward (implements ``IntrinsicReward``).

    Args:
        frame_shape: ``(C, H, W)`` of one observation frame.
        obs_scale: divide ``uint8`` frames by this before normalising (``env_spec().obs_scale``).
        feature_dim: output size of target and predictor (512 in the paper).
        hidden: width of the predictor's two hidden layers (512 in the paper).
        torso: encoder kind of both networks, an
            :data:`~rltransfer.nets.encoders.EncoderKind` name (``"auto"``: Nature convs if
            H, W >= 36, else the small CNN; ``"mlp"``: no convs).
        learning_rate: Adam learning rate of the predictor (1e-4 in the paper).
        gamma_int: discount of the intrinsic returns whose std scales the reward (0.99).
        obs_clip: normalised observations are clipped to ``[-obs_clip, obs_clip]`` (5).
        device: torch device of the networks.
        seed: seed of the network initialisation (the target is fixed by it).

    Raises:
        ValueError: on a non-3-D ``frame_shape`` or non-positive hyperparameters;
            ``UnknownEncoderKindError`` (a ``ValueError``) on an unknown ``torso``.
    """

    def __init__(
        self,
        frame_shape: tuple[int, int, int],
        *,
        obs_scale: float = 255.0,
        feature_dim: int = 512,
        hidden: int = 512,
        torso: str = "auto",
        learning_rate: float = 1e-4,
        gamma_int: float = 0.99,
        obs_clip: float = 5.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(f"frame_shape must be (C, H, W), positive sizes; got {frame_shape}")
        if (obs_scale <= 0 or feature_dim < 1 or hidden < 1 or learning_rate <= 0
                or obs_clip <= 0):
            raise ValueError(
                "obs_scale, feature_dim, hidden, learning_rate and obs_clip must be > 0"
            )
        self.torso = check_encoder_kind(torso)
        if not 0.0 <= gamma_int < 1.0:
            raise ValueError(f"gamma_int must be in [0, 1), got {gamma_int}")
        self.frame_shape = tuple(int(s) for s in frame_shape)
        channels, height, width = self.frame_shape
        self.obs_scale = float(obs_scale)
        self.gamma_int = float(gamma_int)
        self.obs_clip = float(obs_clip)
        self.device = torch.device(device)

        generator = torch.Generator().manual_seed(int(seed))
        # Module constructors draw PyTorch's default init from the global RNG; fork it so
        # building RND leaves the caller's random stream untouched (weights come from `seed`).
        with torch.random.fork_rng(devices=[]):
            target_body, num_features = build_rnd_torso(channels, height, width, torso)
            self.target = nn.Sequential(target_body, nn.Linear(num_features, feature_dim))
            predictor_body, _ = build_rnd_torso(channels, height, width, torso)
            self.predictor = nn.Sequential(
                predictor_body,
                nn.Linear(num_features, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, feature_dim),
            )
        _init_orthogonal(self.target, generator)
        _init_orthogonal(self.predictor, generator)
        self.target.to(self.device).requires_grad_(False)
        self.predictor.to(self.device)
        # Not fused: fused Adam broke learning in the agent on this torch/CPU (see r2d2.py).
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=learning_rate)

        self.obs_rms = RunningMeanStd(self.frame_shape)
        self.return_rms = RunningMeanStd(())
        self.intrinsic_returns = np.zeros(0, dtype=np.float64)
        self._refresh_obs_stats()

    # ------------------------------------------------------------------ normalisation

    def _refresh_obs_stats(self) -> None:
        self._obs_mean = torch.as_tensor(self.obs_rms.mean, dtype=torch.float32, device=self.device)
        self._obs_std = torch.as_tensor(
            self.obs_rms.std + 1e-8, dtype=torch.float32, device=self.device
        )

    def _normalise(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(frames, device=self.device).float() / self.obs_scale
        return ((x - self._obs_mean) / self._obs_std).clamp_(-self.obs_clip, self.obs_clip)

    def update_obs_stats(self, frames: np.ndarray) -> None:
        """Add ``uint8[N, C, H, W]`` frames to the observation statistics (e.g. warm-up
        frames from a random policy, as in the paper)."""
        frames = check_frames(frames, self.frame_shape, "frames")
        self.obs_rms.update(frames.astype(np.float64) / self.obs_scale)
        self._refresh_obs_stats()

    # ------------------------------------------------------------------ scoring

    def _error(self, frames: np.ndarray) -> torch.Tensor:
        x = self._normalise(frames)
        return (self.predictor(x) - self.target(x)).pow(2).sum(dim=1)

    def novelty(self, frames: np.ndarray) -> np.ndarray:
        """Raw prediction error ``||g_hat(x) - g(x)||^2`` (sum over features).

        Args:
            frames: ``uint8[N, C, H, W]``.

        Returns:
            ``float32[N]``; changes no state. NGU uses it as the life-long novelty signal.

        Raises:
            IntrinsicInputError: on a wrong frame shape.
        """
        frames = check_frames(frames, self.frame_shape, "frames")
        with torch.no_grad():
            return self._error(frames).cpu().numpy().astype(np.float32)

    def reset(self, done_mask: np.ndarray) -> None:
        """Episode ends in the envs where ``done_mask`` (``bool[B]``): RND keeps no
        per-episode state, so nothing is forgotten. The running intrinsic returns ``R`` are
        non-episodic (module docstring; Burda et al. 2019, Sec. 2.3) and carry on across
        the boundary. The first call fixes the number of envs.

        Raises:
            IntrinsicInputError: if ``done_mask``'s length differs from the number of envs.
        """
        mask = np.asarray(done_mask, dtype=bool).reshape(-1)
        if self.intrinsic_returns.shape[0] == 0:
            self.intrinsic_returns = np.zeros(mask.shape[0], dtype=np.float64)
        if mask.shape[0] != self.intrinsic_returns.shape[0]:
            raise IntrinsicInputError(
                f"done_mask has {mask.shape[0]} entries for {self.intrinsic_returns.shape[0]} envs"
            )

    def compute(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Normalised intrinsic reward of ``next_obs`` (``obs`` and ``action`` are unused).

        ``e = novelty(next_obs)``; ``R <- gamma_int R + e`` per env; the running std of ``R``
        is updated with this step's ``R``; returns ``e / std(R)``. Then ``next_obs`` enters
        the observation statistics.

        Args:
            obs: ``uint8[B, C, H, W]`` (unused).
            action: ``int64[B]`` (unused).
            next_obs: ``uint8[B, C, H, W]`` newest frame after the step.

        Returns:
            ``float32[B]``.

        Raises:
            IntrinsicInputError: on a wrong frame shape or a changed number of envs.
        """
        next_obs = check_frames(next_obs, self.frame_shape, "next_obs")
        num_envs = next_obs.shape[0]
        if self.intrinsic_returns.shape[0] == 0:
            self.intrinsic_returns = np.zeros(num_envs, dtype=np.float64)
        if self.intrinsic_returns.shape[0] != num_envs:
            raise IntrinsicInputError(
                f"next_obs has {num_envs} envs, RND tracks {self.intrinsic_returns.shape[0]}"
            )
        error = self.novelty(next_obs).astype(np.float64)
        self.intrinsic_returns = self.intrinsic_returns * self.gamma_int + error
        self.return_rms.update(self.intrinsic_returns)
        reward = error / (float(self.return_rms.std) + 1e-8)
        self.update_obs_stats(next_obs)
        return reward.astype(np.float32)

    # ------------------------------------------------------------------ training

    def update(self, obs_batch: np.ndarray) -> dict[str, float]:
        """One Adam step of the predictor on the MSE to the target.

        Args:
            obs_batch: ``uint8[N, C, H, W]`` frames (e.g. next frames of replay samples).

        Returns:
            ``{"rnd_loss": mean squared error before the step}``.

        Raises:
            IntrinsicInputError: on a wrong frame shape.
        """
        frames = check_frames(obs_batch, self.frame_shape, "obs_batch")
        x = self._normalise(frames)
        with torch.no_grad():
            target = self.target(x)
        loss = (self.predictor(x) - target).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"rnd_loss": float(loss.detach())}

    # ------------------------------------------------------------------ checkpoints

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Networks, Adam state (``optimizer.<parameter index>.<field>``), statistics and
        per-env returns as named CPU tensors."""
        out: dict[str, torch.Tensor] = {}
        for name, tensor in self.target.state_dict().items():
            out[f"target.{name}"] = tensor.detach().cpu().clone()
        for name, tensor in self.predictor.state_dict().items():
            out[f"predictor.{name}"] = tensor.detach().cpu().clone()
        out.update(optimizer_state_tensors(self.optimizer))
        out.update(self.obs_rms.state_tensors("obs_rms."))
        out.update(self.return_rms.state_tensors("return_rms."))
        out["intrinsic_returns"] = torch.from_numpy(self.intrinsic_returns.copy())
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors` (same ``frame_shape`` and ``feature_dim``).

        Raises:
            KeyError / RuntimeError: on missing keys or mismatched network shapes.
        """
        self.target.load_state_dict(
            {k[len("target.") :]: v for k, v in tensors.items() if k.startswith("target.")}
        )
        self.predictor.load_state_dict(
            {k[len("predictor.") :]: v for k, v in tensors.items() if k.startswith("predictor.")}
        )
        load_optimizer_state_tensors(self.optimizer, tensors, self.device)
        self.obs_rms.load_state_tensors(tensors, "obs_rms.")
        self.return_rms.load_state_tensors(tensors, "return_rms.")
        self.intrinsic_returns = tensors["intrinsic_returns"].cpu().numpy().astype(np.float64)
        self._refresh_obs_stats()
