"""Never Give Up intrinsic reward (Badia et al. 2020, arXiv 2002.06038).

``r^i_t = r^episodic_t * min(max(alpha_t, 1), L)`` (Sec. 2, Eq. 1), ``L = 5``:

* ``r^episodic``: :class:`~rltransfer.intrinsic.episodic_memory.EpisodicMemory`, a per-episode
  k-NN memory of controllable-state embeddings ``f(x)``;
* ``f``: :class:`~rltransfer.intrinsic.ngu_embedding.InverseDynamicsEmbedding`, a torso ->
  ``embedding_dim`` (32) features, trained by inverse dynamics (an MLP on
  ``[f(x_t), f(x_{t+1})]`` predicts ``a_t``, cross-entropy, Adam 5e-4);
* ``alpha_t = 1 + (err_t - mu_err) / sigma_err``, the life-long novelty multiplier, where
  ``err_t = ||g_hat(x_t) - g(x_t)||^2`` is the prediction error of
  :class:`~rltransfer.intrinsic.rnd.RND` (normalised, clipped inputs) and ``mu_err``,
  ``sigma_err`` are its running mean and std over all envs and steps (updated with the
  current batch before normalising). Not ``err / std`` (a public-code deviation).

Which observation is scored: the transition ``(x_t, a_t, x_{t+1})`` is rewarded for the
novelty of ``x_{t+1}`` (the state it reaches), as :class:`RND` does; ``x_{t+1}`` then enters
the episodic memory.

**One ``f`` per episode.** The memory compares ``f(x_{t+1})`` with embeddings stored earlier
in the episode, so they must come from the same ``f``. If ``f`` trains between steps, even a
repeated state lands away from its stored copies. Measured on MiniGrid FourRooms (20k env
steps, about 200 Adam steps of ``f`` per 100-step episode), the trained agent mostly stood
still: 6 distinct poses per episode, against 23 for uniform random actions. Yet it
collected ~9 intrinsic reward per step. With its final ``f`` held fixed, the same behaviour
earns 0.3-1 per repeated step and 9-17 per new pose. So the reward had paid for the drift
of ``f``, not for moving. NGU's actors copy the learner's parameters periodically
(R2D2: every 400 steps), and its paper does not say how the memory deals with that. Here each
episode embeds with a frozen snapshot of ``f``, taken when the episode starts. A new snapshot
is taken when the latest one is ``embedding_refresh_env_steps`` or more acting steps old.
Envs in different episodes may use different snapshots. Each step costs one forward pass per
distinct snapshot in use (MiniGrid's 100-step episodes at the default period: 1 or 2).

The policy family (Sec. 3, App. A): :func:`ngu_betas` and :func:`ngu_gammas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rltransfer.intrinsic.base import IntrinsicInputError, check_frames
from rltransfer.intrinsic.episodic_memory import EpisodicMemory
from rltransfer.intrinsic.ngu_embedding import InverseDynamicsEmbedding
from rltransfer.intrinsic.normalizer import RunningMeanStd
from rltransfer.intrinsic.rnd import RND
from rltransfer.nets.encoders import ENCODER_KINDS

__all__ = ["NGUConfig", "NGUReward", "lifelong_multiplier", "ngu_betas", "ngu_gammas"]


@dataclass
class NGUConfig:
    """Hyperparameters of the NGU intrinsic reward; defaults from Badia et al. 2020
    (Sec. 2 and App. A/F)."""

    embedding_dim: int = 32
    """Width of the controllable-state embedding ``f(x)``."""
    embedding_torso: str = "auto"
    """Body of ``f`` (:data:`rltransfer.nets.encoders.EncoderKind`): ``mlp`` for MiniGrid,
    ``small_cnn`` for small grids, ``nature_cnn`` for pixels (``auto`` picks by size)."""
    inverse_dynamics_hidden: int = 128
    """Hidden width of the inverse-dynamics MLP."""
    learning_rate: float = 5e-4
    """Adam learning rate of ``f`` + the inverse-dynamics head."""
    num_neighbors: int = 10
    """``k`` of the k-NN."""
    memory_capacity: int = 30_000
    """Episodic memory entries per env (FIFO beyond)."""
    cluster_distance: float = 0.008
    """``xi``."""
    kernel_epsilon: float = 1e-3
    """``eps`` of the kernel: 1e-3 (main text); the appendix table uses 1e-4."""
    pseudo_count_constant: float = 1e-3
    """``c``."""
    max_similarity: float = 8.0
    """``s_max``."""
    embedding_refresh_env_steps: int = 400
    """Acting steps (calls of :meth:`NGUReward.compute`) between snapshots of ``f`` for new
    episodes (module docstring); each episode embeds with the snapshot current at its
    start. 400 = R2D2's actor parameter-refresh period."""
    distance_mean_decay: float = 1.0
    """Per-step decay of each env's running mean ``d_m^2`` of k-NN distances. 1.0 (default):
    NGU's cumulative running average per actor (env). ``< 1`` (e.g. 0.99, the default
    before issue 10) gives an exponential window that follows a changing scale of ``f``,
    but pays an idle-then-move bonus (:mod:`rltransfer.intrinsic.episodic_memory`)."""
    max_multiplier: float = 5.0
    """``L``: the life-long multiplier is clipped to ``[1, L]``."""
    rnd_torso: str = "auto"
    """Body of the RND target / predictor."""
    rnd_feature_dim: int = 128
    """RND output width: 128 here, a smaller choice for the multiplier's error signal
    (Burda et al. use 512; REFERENCE.md fixes no value for NGU)."""
    rnd_hidden: int = 512
    """RND predictor hidden width."""
    rnd_learning_rate: float = 5e-4
    """Adam learning rate of the RND predictor: 5e-4, the embedding's rate (Burda et al.
    use 1e-4)."""
    rnd_obs_clip: float = 5.0
    """RND inputs are clipped to ``[-rnd_obs_clip, rnd_obs_clip]`` after normalising."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("embedding_dim", "inverse_dynamics_hidden", "num_neighbors",
                     "memory_capacity", "rnd_feature_dim", "rnd_hidden",
                     "embedding_refresh_env_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("learning_rate", "kernel_epsilon", "pseudo_count_constant",
                     "max_similarity", "rnd_learning_rate", "rnd_obs_clip"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if not 0 < self.distance_mean_decay <= 1:
            problems.append(
                f"distance_mean_decay must be in (0, 1] (got {self.distance_mean_decay})"
            )
        if not self.cluster_distance >= 0:
            problems.append(f"cluster_distance must be >= 0 (got {self.cluster_distance})")
        if not self.max_multiplier >= 1:
            problems.append(f"max_multiplier (L) must be >= 1 (got {self.max_multiplier})")
        for name in ("embedding_torso", "rnd_torso"):
            if getattr(self, name) not in ENCODER_KINDS:
                problems.append(
                    f"{name} must be one of {', '.join(ENCODER_KINDS)} "
                    f"(got {getattr(self, name)!r})"
                )
        if problems:
            raise ValueError("invalid NGUConfig: " + "; ".join(problems))


# ---------------------------------------------------------------------- policy family


def ngu_betas(num_policies: int, beta: float = 0.3) -> np.ndarray:
    """Intrinsic-reward scales of NGU's policy family (Badia et al. 2020, App. A).

    ``beta_0 = 0``, ``beta_{N-1} = beta`` and otherwise
    ``beta_j = beta * sigmoid(10 (2j - (N - 2)) / (N - 2))``.

    ``N = 1``: the single policy is the exploratory end of the family, ``[beta]`` (NGU's
    ``N = 1`` ablation trains one policy with ``beta = 0.3``); a policy with ``beta = 0``
    would make the intrinsic reward pointless. ``N = 2``: ``[0, beta]``.

    Args:
        num_policies: ``N >= 1``.
        beta: the largest scale (NGU: 0.3), ``>= 0``.

    Returns:
        ``float64[N]``.

    Raises:
        ValueError: ``N < 1`` or ``beta < 0``.
    """
    n = int(num_policies)
    if n < 1:
        raise ValueError(f"num_policies must be >= 1, got {num_policies}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if n == 1:
        return np.array([float(beta)])
    j = np.arange(n, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    if n > 2:
        x = 10.0 * (2.0 * j - (n - 2)) / (n - 2)
        out[:] = beta / (1.0 + np.exp(-x))
    out[0] = 0.0
    out[-1] = beta
    return out


def ngu_gammas(num_policies: int, gamma_max: float = 0.997,
               gamma_min: float = 0.99) -> np.ndarray:
    """Discounts of NGU's policy family (Badia et al. 2020, App. A).

    ``gamma_j = 1 - exp(((N-1-j) log(1-gamma_max) + j log(1-gamma_min)) / (N-1))``: the
    horizons ``1 / (1 - gamma_j)`` are log-spaced from ``gamma_max`` (``j = 0``, the
    exploitative policy) to ``gamma_min`` (``j = N-1``, the most exploratory).

    ``N = 1``: ``[gamma_min]``, pairing with :func:`ngu_betas`' ``[beta]`` (the single policy
    is the exploratory end, ``j = N - 1``; NGU's ``N = 1`` ablation uses ``gamma = 0.99``).

    Args:
        num_policies: ``N >= 1``.
        gamma_max: discount of policy 0 (0.997).
        gamma_min: discount of policy N-1 (0.99).

    Returns:
        ``float64[N]``.

    Raises:
        ValueError: ``N < 1`` or the discounts are not ``0 <= gamma_min <= gamma_max < 1``.
    """
    n = int(num_policies)
    if n < 1:
        raise ValueError(f"num_policies must be >= 1, got {num_policies}")
    if not 0.0 <= gamma_min <= gamma_max < 1.0:
        raise ValueError(
            f"need 0 <= gamma_min <= gamma_max < 1, got gamma_min={gamma_min}, "
            f"gamma_max={gamma_max}"
        )
    if n == 1:
        return np.array([float(gamma_min)])
    j = np.arange(n, dtype=np.float64)
    log_horizon = ((n - 1 - j) * math.log(1.0 - gamma_max) + j * math.log(1.0 - gamma_min)) / (
        n - 1
    )
    out = 1.0 - np.exp(log_horizon)
    out[0], out[-1] = gamma_max, gamma_min  # exact ends despite rounding
    return out


def lifelong_multiplier(error: np.ndarray, error_mean: float, error_std: float,
                        max_multiplier: float = 5.0) -> np.ndarray:
    """``clip(1 + (err - mu_err) / sigma_err, 1, L)`` (Badia et al. 2020, Sec. 2).

    Args:
        error: ``float[B]`` RND prediction errors ``||g_hat(x) - g(x)||^2``.
        error_mean: running mean ``mu_err``.
        error_std: running std ``sigma_err`` (``>= 0``; 1e-8 is added against division by 0).
        max_multiplier: ``L``.

    Returns:
        ``float64[B]`` in ``[1, L]``.
    """
    alpha = 1.0 + (np.asarray(error, dtype=np.float64) - error_mean) / (error_std + 1e-8)
    return np.clip(alpha, 1.0, max_multiplier)


# ---------------------------------------------------------------------- reward


class NGUReward:
    """NGU's intrinsic reward for ``num_envs`` environments (implements ``IntrinsicReward``).

    Args:
        frame_shape: ``(C, H, W)`` of one observation frame (the newest of the stack).
        num_actions: ``|A|`` of the environment (the inverse-dynamics classes; not ``A+``).
        num_envs: ``B`` (the episodic memory is preallocated per env).
        config: :class:`NGUConfig`.
        obs_scale: divisor mapping ``uint8`` frames to ``[0, 1]`` (``env_spec().obs_scale``).
        device: torch device of the networks and the memory.
        seed: seeds the RND networks (``seed``) and ``f`` + head (``seed + 1``); the global
            RNG is left untouched.

    Raises:
        ValueError: bad sizes; ``UnknownEncoderKindError`` on an unknown torso kind.

    Attributes:
        embedding: ``f`` and its inverse-dynamics training, with the per-episode snapshots
            (:class:`~rltransfer.intrinsic.ngu_embedding.InverseDynamicsEmbedding`).
        rnd: the :class:`RND` whose prediction error drives the life-long multiplier.
        memory: the per-env :class:`EpisodicMemory` of ``f(x)``.
        last_episodic: ``float32[B]``, ``r^episodic`` of the last :meth:`compute`.
        last_multiplier: ``float32[B]``, ``clip(alpha, 1, L)`` of the last :meth:`compute`.
    """

    def __init__(
        self,
        frame_shape: tuple[int, int, int],
        num_actions: int,
        num_envs: int,
        *,
        config: NGUConfig | None = None,
        obs_scale: float = 255.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        cfg = config if config is not None else NGUConfig()
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(f"frame_shape must be (C, H, W), positive sizes; got {frame_shape}")
        if int(num_actions) < 2:
            raise ValueError(f"num_actions must be >= 2 for inverse dynamics, got {num_actions}")
        if not obs_scale > 0:
            raise ValueError(f"obs_scale must be > 0, got {obs_scale}")
        self.config = cfg
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]), int(frame_shape[2]))
        self.num_actions = int(num_actions)
        self.num_envs = int(num_envs)
        self.device = torch.device(device)

        self.rnd = RND(
            self.frame_shape, obs_scale=obs_scale, feature_dim=cfg.rnd_feature_dim,
            hidden=cfg.rnd_hidden, torso=cfg.rnd_torso, learning_rate=cfg.rnd_learning_rate,
            obs_clip=cfg.rnd_obs_clip, device=self.device, seed=seed,
        )
        self.embedding = InverseDynamicsEmbedding(
            self.frame_shape, self.num_actions, self.num_envs,
            embedding_dim=cfg.embedding_dim, torso=cfg.embedding_torso,
            hidden=cfg.inverse_dynamics_hidden, learning_rate=cfg.learning_rate,
            refresh_env_steps=cfg.embedding_refresh_env_steps, obs_scale=obs_scale,
            device=self.device, seed=int(seed) + 1,
        )
        self.memory = EpisodicMemory(
            self.num_envs, cfg.embedding_dim, capacity=cfg.memory_capacity,
            num_neighbors=cfg.num_neighbors, cluster_distance=cfg.cluster_distance,
            kernel_epsilon=cfg.kernel_epsilon, pseudo_count_constant=cfg.pseudo_count_constant,
            max_similarity=cfg.max_similarity, distance_decay=cfg.distance_mean_decay,
            device=self.device,
        )
        self.error_rms = RunningMeanStd(())
        self.last_episodic = np.zeros(self.num_envs, dtype=np.float32)
        self.last_multiplier = np.ones(self.num_envs, dtype=np.float32)

    # ------------------------------------------------------------------ acting

    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """``f(x)`` with the learner's ``f``: ``uint8[N, C, H, W]`` ->
        ``float32[N, embedding_dim]`` (no gradient).

        Raises:
            IntrinsicInputError: wrong frame shape.
        """
        return self.embedding.embed(frames)

    def _env_frames(self, frames: np.ndarray, name: str) -> np.ndarray:
        """``frames`` checked as ``uint8[B, C, H, W]``, one per env (IntrinsicInputError)."""
        frames = check_frames(frames, self.frame_shape, name)
        if frames.shape[0] != self.num_envs:
            raise IntrinsicInputError(
                f"{name} has {frames.shape[0]} envs, NGUReward was built for {self.num_envs}"
            )
        return frames

    def embed_acting(self, frames: np.ndarray) -> torch.Tensor:
        """``f(x)`` of each env's newest frame under that env's episode snapshot of ``f``:
        ``uint8[B, C, H, W]`` -> ``float32[B, embedding_dim]`` (module docstring).

        Raises:
            IntrinsicInputError: wrong frame shape or number of envs.
        """
        return self.embedding.embed_acting(self._env_frames(frames, "frames"))

    def update_obs_stats(self, frames: np.ndarray) -> None:
        """Add frames to RND's observation statistics (warm-up, as for :class:`RND`)."""
        self.rnd.update_obs_stats(frames)

    def reset(self, done_mask: np.ndarray) -> None:
        """Empty the episodic memories of the envs where ``done_mask`` (``bool[B]``); their
        next episodes embed with the current snapshot of ``f`` (module docstring).

        Raises:
            IntrinsicInputError: ``done_mask`` does not have ``B`` entries.
        """
        self.memory.reset(done_mask)
        self.embedding.start_episodes(np.asarray(done_mask, dtype=bool).reshape(-1))

    def compute(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``r^i = r^episodic(f(x_{t+1})) * clip(alpha(x_{t+1}), 1, L)``; then ``f(x_{t+1})``
        enters the memory and ``x_{t+1}`` RND's observation statistics.

        Args:
            obs: ``uint8[B, C, H, W]`` (unused).
            action: ``int64[B]`` (unused).
            next_obs: ``uint8[B, C, H, W]`` newest frame after the step.

        Returns:
            ``float32[B]``.

        Raises:
            IntrinsicInputError: wrong frame shape or number of envs.
        """
        next_obs = self._env_frames(next_obs, "next_obs")
        episodic = self.memory.compute_and_insert(self.embed_acting(next_obs)).cpu().numpy()
        self.embedding.record_acting_step()
        error = self.rnd.novelty(next_obs).astype(np.float64)
        self.error_rms.update(error)
        multiplier = lifelong_multiplier(
            error, float(self.error_rms.mean), float(self.error_rms.std),
            self.config.max_multiplier,
        )
        self.rnd.update_obs_stats(next_obs)
        self.last_episodic = episodic.astype(np.float32)
        self.last_multiplier = multiplier.astype(np.float32)
        return (episodic.astype(np.float64) * multiplier).astype(np.float32)

    # ------------------------------------------------------------------ training

    def update(
        self,
        obs_batch: np.ndarray,
        *,
        prev_obs_batch: np.ndarray | None = None,
        actions: np.ndarray | None = None,
        valid: np.ndarray | None = None,
    ) -> dict[str, float]:
        """One Adam step of the RND predictor and one of ``f`` + the inverse-dynamics head.

        Args:
            obs_batch: ``uint8[N, C, H, W]`` frames ``x_{t+1}`` (after the action); RND trains
                on them (as :meth:`RND.update`).
            prev_obs_batch: ``uint8[N, C, H, W]`` frames ``x_t`` one step earlier (required).
            actions: ``int64[N]`` environment actions ``a_t`` in ``[0, num_actions)``
                (required; not the agent's ``a+``).
            valid: optional ``bool[N]``; transitions with ``False`` (e.g. across an episode
                boundary) are left out of the inverse-dynamics loss.

        Returns:
            ``{"rnd_loss", "inverse_dynamics_loss", "inverse_dynamics_accuracy"}`` (before
            the step; loss in nats).

        Raises:
            IntrinsicInputError: missing ``prev_obs_batch`` / ``actions``, wrong shapes or
                actions out of range.
        """
        if prev_obs_batch is None or actions is None:
            raise IntrinsicInputError(
                "NGUReward.update needs one-step transitions for its inverse-dynamics "
                "embedding: pass prev_obs_batch=x_t and actions=a_t along with x_{t+1}"
            )
        nxt, prev, act, mask = self.embedding.check_transitions(
            obs_batch, prev_obs_batch, actions, valid
        )
        metrics = self.rnd.update(nxt)
        metrics.update(self.embedding.update(nxt, prev, act, mask))
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Networks, Adam states, running statistics as named CPU tensors.

        Keys: ``embedding.*``, ``inverse_head.*``, ``optimizer.*`` (Adam of ``f`` + head),
        ``rnd.*`` (:meth:`RND.state_tensors`), ``error_rms.*``, ``memory.*`` (the per-env
        running means ``d_m^2`` only; the per-episode memory contents are not saved, see
        :meth:`EpisodicMemory.state_tensors`, which also converts the older shared-scalar
        form).
        """
        out = self.embedding.state_tensors()
        out.update({f"rnd.{k}": v for k, v in self.rnd.state_tensors().items()})
        out.update(self.error_rms.state_tensors("error_rms."))
        out.update({f"memory.{k}": v for k, v in self.memory.state_tensors().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors` (same shapes); all episodic memories start empty.

        Raises:
            KeyError / RuntimeError: missing keys or mismatched network shapes.
        """
        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.embedding.load_state_tensors(tensors)
        self.rnd.load_state_tensors(sub("rnd."))
        self.error_rms.load_state_tensors(tensors, "error_rms.")
        self.memory.load_state_tensors(sub("memory."))
