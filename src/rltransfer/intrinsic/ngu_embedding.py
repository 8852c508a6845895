"""NGU's controllable-state embedding ``f`` (Badia et al. 2020, Sec. 2 and App. A).

``f``: a torso (:mod:`rltransfer.nets.encoders`) -> ``embedding_dim`` (32) features, trained
by inverse dynamics: an MLP (one hidden ReLU layer of 128) on ``[f(x_t), f(x_{t+1})]`` gives a
softmax over actions, trained with cross-entropy to predict ``a_t`` (Adam 5e-4), so that ``f``
keeps what the agent controls and drops what it does not.

**One ``f`` per episode.** The episodic memory compares ``f(x_{t+1})`` with embeddings stored
earlier in the episode, so they must come from the same ``f``; acting therefore embeds with a
frozen snapshot of ``f`` taken when the episode starts (why, with the measurement that showed
the need: :mod:`rltransfer.intrinsic.ngu`). A new snapshot is taken when the latest one is
``refresh_env_steps`` or more acting steps old; envs in different episodes may use different
snapshots, and each acting step costs one forward pass per distinct snapshot in use.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rltransfer.intrinsic.base import (
    IntrinsicInputError,
    check_frames,
    load_optimizer_state_tensors,
    optimizer_state_tensors,
)
from rltransfer.nets.encoders import Torso, encoder_body

__all__ = ["InverseDynamicsEmbedding"]


class InverseDynamicsEmbedding:
    """``f(x)`` for ``num_envs`` environments, its inverse-dynamics training and its snapshots.

    Args:
        frame_shape: ``(C, H, W)`` of one observation frame.
        num_actions: ``|A|``, the inverse-dynamics classes (environment actions, not ``A+``).
        num_envs: ``B``, the envs that act (each has its episode's snapshot).
        embedding_dim: width of ``f(x)`` (32).
        torso: body of ``f`` (:data:`rltransfer.nets.encoders.EncoderKind`, or ``"auto"``).
        hidden: hidden width of the inverse-dynamics MLP (128).
        learning_rate: Adam learning rate of ``f`` + the inverse-dynamics head (5e-4).
        refresh_env_steps: acting steps between snapshots of ``f`` for new episodes (400).
        obs_scale: divisor mapping ``uint8`` frames to ``[0, 1]``.
        device: torch device of the networks.
        seed: seeds the initialisation of ``f`` and the head; the global RNG is left untouched.

    Raises:
        ValueError: bad sizes; ``UnknownEncoderKindError`` on an unknown torso kind.

    Attributes:
        network: ``f``, a :class:`~rltransfer.nets.encoders.Torso` ``uint8[N, C, H, W] ->
            float32[N, embedding_dim]`` (the learner's copy, trained by :meth:`update`).
        inverse_head: ``float32[N, 2 * embedding_dim] -> float32[N, |A|]`` logits.
        optimizer: Adam over ``network`` then ``inverse_head`` parameters.
    """

    def __init__(
        self,
        frame_shape: tuple[int, int, int],
        num_actions: int,
        num_envs: int,
        *,
        embedding_dim: int = 32,
        torso: str = "auto",
        hidden: int = 128,
        learning_rate: float = 5e-4,
        refresh_env_steps: int = 400,
        obs_scale: float = 255.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]), int(frame_shape[2]))
        self.num_actions = int(num_actions)
        self.num_envs = int(num_envs)
        self.embedding_dim = int(embedding_dim)
        self.refresh_env_steps = int(refresh_env_steps)
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            # encoder_body + a linear output: make_torso's trailing ReLU would clip the
            # embedding to >= 0; NGU's f ends in a plain linear layer of 32 units.
            body, num_features = encoder_body(torso, self.frame_shape)
            encoder = nn.Sequential(*body, nn.Linear(num_features, self.embedding_dim))
            self.network = Torso(encoder, self.frame_shape, obs_scale, self.embedding_dim)
            self.inverse_head = nn.Sequential(
                nn.Linear(2 * self.embedding_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, self.num_actions),
            )
        self.network.to(self.device)
        self.inverse_head.to(self.device)
        self.optimizer = torch.optim.Adam(
            [*self.network.parameters(), *self.inverse_head.parameters()], lr=learning_rate
        )
        # Frozen snapshots of f, one per episode (module docstring): id -> module.
        self._snapshots: dict[int, nn.Module] = {}
        self._env_snapshot = np.zeros(self.num_envs, dtype=np.int64)
        self._next_snapshot_id = 0
        self._latest_snapshot_step = 0
        self._acting_steps = 0
        self.start_episodes(np.ones(self.num_envs, dtype=bool), force_new=True)

    # ------------------------------------------------------------------ acting

    @property
    def num_snapshots(self) -> int:
        """Snapshots of ``f`` some env's episode still uses."""
        return len(self._snapshots)

    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """``f(x)`` with the learner's ``f``: ``uint8[N, C, H, W]`` -> ``float32[N,
        embedding_dim]`` (no gradient).

        Raises:
            IntrinsicInputError: wrong frame shape.
        """
        frames = check_frames(frames, self.frame_shape, "frames")
        with torch.no_grad():
            return self.network(torch.as_tensor(frames, device=self.device))

    def embed_acting(self, frames: np.ndarray) -> torch.Tensor:
        """``f(x)`` of each env's frame under that env's episode snapshot of ``f``:
        ``uint8[B, C, H, W]`` (one frame per env, checked by the caller) ->
        ``float32[B, embedding_dim]``."""
        x = torch.as_tensor(frames, device=self.device)
        ids = np.unique(self._env_snapshot)
        with torch.no_grad():
            if ids.size == 1:
                return self._snapshots[int(ids[0])](x)
            out = torch.empty(self.num_envs, self.embedding_dim, device=self.device)
            for key in ids.tolist():
                rows = torch.as_tensor(np.flatnonzero(self._env_snapshot == key),
                                       device=self.device)
                out[rows] = self._snapshots[key](x[rows])
            return out

    def record_acting_step(self) -> None:
        """Count one acting step (the age of the latest snapshot is measured in these)."""
        self._acting_steps += 1

    def start_episodes(self, mask: np.ndarray, *, force_new: bool = False) -> None:
        """Give the envs in ``mask`` (``bool[B]``, starting an episode) the current snapshot
        of ``f``, taking a new one if the latest is ``refresh_env_steps`` old (or
        ``force_new``); snapshots no env uses any more are dropped."""
        if not mask.any():
            return
        age = self._acting_steps - self._latest_snapshot_step
        if force_new or not self._snapshots or age >= self.refresh_env_steps:
            snapshot = copy.deepcopy(self.network).eval().requires_grad_(False)
            self._snapshots[self._next_snapshot_id] = snapshot
            self._latest_snapshot_step = self._acting_steps
            self._next_snapshot_id += 1
        self._env_snapshot[mask] = self._next_snapshot_id - 1
        in_use = set(self._env_snapshot.tolist())
        for key in [k for k in self._snapshots if k not in in_use]:
            del self._snapshots[key]

    # ------------------------------------------------------------------ training

    def check_transitions(
        self,
        obs_batch: np.ndarray,
        prev_obs_batch: np.ndarray,
        actions: np.ndarray,
        valid: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_{t+1}, x_t, a_t, mask)`` checked for :meth:`update`: ``uint8[N, C, H, W]``
        twice, ``[N]`` actions, ``bool[N]`` (all true when ``valid`` is None).

        Raises:
            IntrinsicInputError: wrong frame shapes, different lengths, actions outside
                ``[0, num_actions)`` or ``valid`` of another length.
        """
        nxt = check_frames(obs_batch, self.frame_shape, "obs_batch")
        prev = check_frames(prev_obs_batch, self.frame_shape, "prev_obs_batch")
        act = np.asarray(actions).reshape(-1)
        n = nxt.shape[0]
        if prev.shape[0] != n or act.shape[0] != n:
            raise IntrinsicInputError(
                f"obs_batch, prev_obs_batch and actions need the same length, got {n}, "
                f"{prev.shape[0]}, {act.shape[0]}"
            )
        if act.size and (act.min() < 0 or act.max() >= self.num_actions):
            raise IntrinsicInputError(
                f"actions must be environment actions in [0, {self.num_actions}); "
                "map the extra action a+ to the executed action first"
            )
        mask = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, bool).reshape(-1)
        if mask.shape[0] != n:
            raise IntrinsicInputError(f"valid has {mask.shape[0]} entries for {n} transitions")
        return nxt, prev, act, mask

    def inverse_dynamics_logits(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Action logits ``float32[N, |A|]`` from ``[f(x_t), f(x_{t+1})]`` (with gradient)."""
        features = torch.cat([self.network(obs), self.network(next_obs)], dim=1)
        return self.inverse_head(features)

    def update(
        self, next_obs: np.ndarray, obs: np.ndarray, actions: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        """One Adam step of ``f`` + the head on the cross-entropy of ``a_t`` given
        ``(x_t, x_{t+1})``, over the transitions where ``mask`` (as returned by
        :meth:`check_transitions`).

        Returns:
            ``{"inverse_dynamics_loss", "inverse_dynamics_accuracy"}`` before the step (loss
            in nats); both NaN, and no step, when ``mask`` is all false.
        """
        if not mask.any():
            return {"inverse_dynamics_loss": math.nan, "inverse_dynamics_accuracy": math.nan}
        keep = np.flatnonzero(mask)
        logits = self.inverse_dynamics_logits(
            torch.as_tensor(obs[keep], device=self.device),
            torch.as_tensor(next_obs[keep], device=self.device),
        )
        target = torch.as_tensor(actions[keep], dtype=torch.int64, device=self.device)
        loss = F.cross_entropy(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.detach().argmax(dim=1) == target).float().mean()
        return {
            "inverse_dynamics_loss": float(loss.detach()),
            "inverse_dynamics_accuracy": float(accuracy),
        }

    # ------------------------------------------------------------------ checkpoints

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``f``, the head and Adam's moments as named CPU tensors: ``embedding.*``,
        ``inverse_head.*``, ``optimizer.<parameter index>.<field>``."""
        out: dict[str, torch.Tensor] = {}
        for name, tensor in self.network.state_dict().items():
            out[f"embedding.{name}"] = tensor.detach().cpu().clone()
        for name, tensor in self.inverse_head.state_dict().items():
            out[f"inverse_head.{name}"] = tensor.detach().cpu().clone()
        out.update(optimizer_state_tensors(self.optimizer))
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors` (other keys are ignored); every env then embeds with
        a new snapshot of the restored ``f``.

        Raises:
            KeyError / RuntimeError: missing keys or mismatched network shapes.
        """
        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.network.load_state_dict(sub("embedding."))
        self.inverse_head.load_state_dict(sub("inverse_head."))
        load_optimizer_state_tensors(self.optimizer, tensors, self.device)
        self.start_episodes(np.ones(self.num_envs, dtype=bool), force_new=True)
