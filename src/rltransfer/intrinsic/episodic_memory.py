"""NGU's episodic k-nearest-neighbour memory, vectorized over B environments.

Never Give Up (Badia et al. 2020, arXiv 2002.06038, Sec. 2 and Algorithm 1 of App. A)
rewards an agent for reaching states whose controllable embedding ``f(x_t)`` is far from the
embeddings already visited *in the current episode*. For each env the memory ``M`` holds those
embeddings; for a new embedding ``q``:

1. ``d_i`` = **squared** Euclidean distances from ``q`` to its ``k`` nearest neighbours in
   ``M`` (``k = 10``; fewer while ``M`` has fewer than ``k`` entries);
2. the running mean ``d_m^2`` of the squared k-NN distances is updated with this step's
   ``d_i`` and then ``d_n = d_i / d_m^2``;
3. cluster cut: ``d_n = max(d_n - xi, 0)``, ``xi = 0.008``;
4. kernel ``K_i = eps / (d_n + eps)``; ``eps = 1e-3`` as in the main text (Sec. 2). The
   appendix hyperparameter table and some public code use ``1e-4``; pass
   ``kernel_epsilon=1e-4`` to get that. A smaller ``eps`` makes the kernel sharper, so only
   near-duplicates count as "visited";
5. ``s = sqrt(sum_i K_i) + c`` (``c = 0.001``, the pseudo-count constant);
   ``r = 1 / s`` if ``s <= s_max`` (8) else 0;
6. ``q`` is appended to ``M`` after scoring.

Choices this implementation makes (the paper leaves them open):

* **One running mean per env** (NGU's per-actor running average; here each env of the
  vector env is an actor), **cumulative by default**: for env ``b``, on each step where its
  memory is non-empty, ``sum_b <- decay * sum_b + sum_i d_i`` and ``count_b <- decay *
  count_b + n_b``, ``d_m^2 = sum_b / count_b``, with ``distance_decay = 1`` (the paper's
  running average over the whole run). NGU's Algorithm 1 says "moving average" without a
  window. An exponential window (``distance_decay < 1``, e.g. 0.99: about 100 steps) is an
  option for an ``f`` whose scale changes *within* the memory's lifetime
  (``test_running_mean_follows_a_shrinking_embedding``). With one frozen snapshot of ``f``
  per episode (:mod:`rltransfer.intrinsic.ngu`) the scale is fixed within an episode, and a
  short window is harmful: after ``N`` idle steps (all distances 0) the window's mean
  collapses, so the next move is normalised by a tiny ``d_m^2`` and pays ~20 instead of ~2
  (``test_idle_then_move_bonus``). An env's mean is not touched (not even decayed) on steps
  where its memory is empty.
* **Full memory**: FIFO overwrite, the oldest embedding of that env is replaced
  (NGU fixes the capacity at 30,000 but does not say what happens beyond it).
* **Empty memory** (the first scored step of an episode): no neighbour exists, the reward is
  defined as 0 and the running mean is not touched. The formula would give ``1 / c = 1000``,
  a spike three orders of magnitude above typical rewards. In the training loop the first
  scored step of an episode is the autoreset step, whose reward is zeroed anyway.
* With ``k = 10``, ``s <= sqrt(10) + c ~ 3.16 < s_max = 8``, so the ``s_max`` cut-off never
  fires at the paper's defaults; it matters only for ``k >= 64`` or smaller ``s_max``.

Public-code deviations **not** copied (REFERENCE.md): memories built from the sampled
training sequence instead of the acting episode; non-squared distances; per-batch min-max
normalisation of the reward.

Cost per step: one batched ``[B, 1, D] x [B, D, n]`` product (``n`` = the largest fill) ranks
the stored entries by ``|m|^2 - 2 q.m``; the ``k`` winners' distances are then recomputed
exactly as ``|m - q|^2`` (no cancellation error, so a revisited state has distance exactly 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rltransfer.intrinsic.base import IntrinsicInputError

__all__ = ["EpisodicMemory"]


class EpisodicMemory:
    """Per-episode k-NN memories of ``num_envs`` environments and NGU's episodic reward.

    Storage is preallocated: ``memory`` ``float32[B, capacity, D]`` plus the squared norms
    ``float32[B, capacity]`` (``B * capacity * (D + 1) * 4`` bytes: 127 MB for B = 32,
    capacity 30,000, D = 32). Entries ``[b, :fill_b]`` are valid (in FIFO order modulo the
    capacity once full); :meth:`reset` only zeroes the fill counts.

    Args:
        num_envs: ``B``.
        embedding_dim: ``D``.
        capacity: entries per env (NGU: 30,000); FIFO overwrite beyond it.
        num_neighbors: ``k`` (NGU: 10).
        cluster_distance: ``xi`` (NGU: 0.008).
        kernel_epsilon: ``eps`` of the kernel (main text 1e-3; appendix / some code 1e-4).
        pseudo_count_constant: ``c`` (NGU: 0.001).
        max_similarity: ``s_max`` (NGU: 8).
        distance_decay: per-step decay of each env's running mean ``d_m^2``, in ``(0, 1]``
            (module docstring; 1.0, the default: NGU's cumulative average).
        device: torch device of the storage.

    Raises:
        ValueError: non-positive sizes or constants (``cluster_distance`` may be 0), or
            ``distance_decay`` outside ``(0, 1]``.
    """

    def __init__(
        self,
        num_envs: int,
        embedding_dim: int,
        *,
        capacity: int = 30_000,
        num_neighbors: int = 10,
        cluster_distance: float = 0.008,
        kernel_epsilon: float = 1e-3,
        pseudo_count_constant: float = 1e-3,
        max_similarity: float = 8.0,
        distance_decay: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (("num_envs", num_envs), ("embedding_dim", embedding_dim),
                            ("capacity", capacity), ("num_neighbors", num_neighbors)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        for name, fvalue in (("kernel_epsilon", kernel_epsilon),
                             ("pseudo_count_constant", pseudo_count_constant),
                             ("max_similarity", max_similarity)):
            if not (math.isfinite(fvalue) and fvalue > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {fvalue}")
        if not (math.isfinite(cluster_distance) and cluster_distance >= 0):
            raise ValueError(f"cluster_distance must be >= 0, got {cluster_distance}")
        if not 0.0 < distance_decay <= 1.0:
            raise ValueError(f"distance_decay must be in (0, 1], got {distance_decay}")
        self.num_envs = int(num_envs)
        self.embedding_dim = int(embedding_dim)
        self.capacity = int(capacity)
        self.num_neighbors = int(num_neighbors)
        self.cluster_distance = float(cluster_distance)
        self.kernel_epsilon = float(kernel_epsilon)
        self.pseudo_count_constant = float(pseudo_count_constant)
        self.max_similarity = float(max_similarity)
        self.distance_decay = float(distance_decay)
        self.device = torch.device(device)

        b, cap, d = self.num_envs, self.capacity, self.embedding_dim
        self.memory = torch.zeros(b, cap, d, dtype=torch.float32, device=self.device)
        self.sq_norms = torch.zeros(b, cap, dtype=torch.float32, device=self.device)
        self.num_inserted = np.zeros(b, dtype=np.int64)
        """Embeddings inserted per env since its last reset (host-side; fill = min(., cap))."""
        self.distance_sum = torch.zeros(b, dtype=torch.float64, device=self.device)
        """``float64[B]``: each env's (decayed) sum of squared k-NN distances."""
        self.distance_count = torch.zeros(b, dtype=torch.float64, device=self.device)
        """``float64[B]``: each env's (decayed) number of those distances."""
        self._env_index = torch.arange(b, device=self.device)
        self._slot_index = torch.arange(cap, device=self.device)

    # ------------------------------------------------------------------ state

    @property
    def fill_counts(self) -> np.ndarray:
        """``int64[B]``: valid entries per env (``min(num_inserted, capacity)``)."""
        return np.minimum(self.num_inserted, self.capacity)

    @property
    def distance_mean(self) -> np.ndarray:
        """``float64[B]``: each env's running mean ``d_m^2`` of squared k-NN distances
        (cumulative, or exponentially weighted with ``distance_decay`` per step; 0 before
        the env's first distance)."""
        count = self.distance_count.cpu().numpy()
        total = self.distance_sum.cpu().numpy()
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)

    def reset(self, done_mask: np.ndarray) -> None:
        """Empty the memories of the envs where ``done_mask`` (``bool[B]``) is true.

        The running means ``d_m^2`` are kept (they span episodes, as in NGU).

        Raises:
            IntrinsicInputError: ``done_mask`` does not have ``B`` entries.
        """
        mask = np.asarray(done_mask, dtype=bool).reshape(-1)
        if mask.shape[0] != self.num_envs:
            raise IntrinsicInputError(
                f"done_mask has {mask.shape[0]} entries, the memory holds {self.num_envs} envs"
            )
        self.num_inserted[mask] = 0

    def _as_embeddings(self, embeddings: torch.Tensor | np.ndarray, rank: int) -> torch.Tensor:
        q = torch.as_tensor(embeddings, device=self.device).float()
        if q.dim() != rank or q.shape[0] != self.num_envs or q.shape[-1] != self.embedding_dim:
            shape = "[B, D]" if rank == 2 else "[B, N, D]"
            raise IntrinsicInputError(
                f"embeddings must be {shape} with B = {self.num_envs} and D = "
                f"{self.embedding_dim}, got {list(q.shape)}"
            )
        return q

    def _write(self, q: torch.Tensor) -> None:
        """Append ``q`` ``[B, D]`` (FIFO slot ``num_inserted % capacity``)."""
        slots = torch.as_tensor(self.num_inserted % self.capacity, device=self.device)
        self.memory[self._env_index, slots] = q
        self.sq_norms[self._env_index, slots] = q.pow(2).sum(dim=1)
        self.num_inserted += 1

    def insert_many(self, embeddings: torch.Tensor | np.ndarray) -> None:
        """Append ``N`` embeddings per env without scoring them (``[B, N, D]``, in order).

        Equivalent to ``N`` calls of the insertion half of :meth:`compute_and_insert`
        (FIFO beyond the capacity); the running mean is not touched. Used to seed a memory
        (benchmarks, tests).

        Raises:
            IntrinsicInputError: wrong shape.
        """
        q = self._as_embeddings(embeddings, rank=3)
        n = q.shape[1]
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` survive FIFO
            self.num_inserted += n - self.capacity
            q = q[:, n - self.capacity :]
            n = self.capacity
        offsets = torch.arange(n, device=self.device)
        starts = torch.as_tensor(self.num_inserted, device=self.device)
        slots = (starts[:, None] + offsets[None, :]) % self.capacity  # [B, n]
        self.memory[self._env_index[:, None], slots] = q
        self.sq_norms[self._env_index[:, None], slots] = q.pow(2).sum(dim=2)
        self.num_inserted += n

    # ------------------------------------------------------------------ reward

    @torch.no_grad()
    def compute_and_insert(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Episodic rewards of ``embeddings`` against each env's own memory, then insert them.

        Args:
            embeddings: ``float[B, D]``, ``f(x)`` of each env's newest observation.

        Returns:
            ``float32[B]`` on the memory's device: NGU's ``r^episodic`` (Algorithm 1), 0 for
            envs whose memory was empty and where ``s > s_max``.

        Raises:
            IntrinsicInputError: wrong shape.
        """
        q = self._as_embeddings(embeddings, rank=2)
        fills = self.fill_counts
        max_fill = int(fills.max())
        reward = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        if max_fill > 0:
            k = min(self.num_neighbors, max_fill)
            stored = self.memory[:, :max_fill]  # [B, n, D] view
            # Rank by |m|^2 - 2 q.m (= |m - q|^2 - |q|^2): one batched matrix product.
            scores = torch.baddbmm(
                self.sq_norms[:, None, :max_fill], q[:, None, :], stored.transpose(1, 2),
                alpha=-2.0,
            ).squeeze(1)  # [B, n]
            fills_t = torch.as_tensor(fills, device=self.device)
            if int(fills.min()) < max_fill:
                beyond = self._slot_index[None, :max_fill] >= fills_t[:, None]
                scores = scores.masked_fill(beyond, math.inf)
            _, index = torch.topk(scores, k, dim=1, largest=False, sorted=True)  # [B, k]
            valid = torch.arange(k, device=self.device)[None, :] < fills_t[:, None]
            neighbours = torch.gather(
                stored, 1, index[:, :, None].expand(-1, -1, self.embedding_dim)
            )  # [B, k, D]
            sq_dist = (neighbours - q[:, None, :]).pow(2).sum(dim=2).double()  # exact d_i
            sq_dist = torch.where(valid, sq_dist, torch.zeros_like(sq_dist))
            # Each env's running mean d_m^2, updated with this step's distances before
            # normalising; envs with an empty memory keep theirs untouched.
            decay = torch.full_like(self.distance_sum, self.distance_decay)
            decay = decay.masked_fill(fills_t == 0, 1.0)
            self.distance_sum = decay * self.distance_sum + sq_dist.sum(dim=1)
            self.distance_count = decay * self.distance_count + valid.sum(dim=1).double()
            mean = (self.distance_sum / self.distance_count.clamp(min=1e-300))[:, None]
            normalised = torch.where(mean > 0, sq_dist / mean.clamp(min=1e-300),
                                     torch.zeros_like(sq_dist))
            normalised = (normalised - self.cluster_distance).clamp(min=0.0)
            kernel = self.kernel_epsilon / (normalised + self.kernel_epsilon)
            kernel = torch.where(valid, kernel, torch.zeros_like(kernel))
            similarity = kernel.sum(dim=1).sqrt() + self.pseudo_count_constant
            reward = torch.where(
                (similarity <= self.max_similarity) & (fills_t > 0),
                1.0 / similarity, torch.zeros_like(similarity),
            )
        self._write(q)
        return reward.float()

    # ------------------------------------------------------------------ checkpoints

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Each env's running mean: ``distance_sum`` and ``distance_count`` (``float64[B]``,
        CPU).

        The memory contents are per-episode and are **not** saved: a resumed run starts new
        episodes (the training loop resets every env), so they would be discarded anyway,
        and they would cost up to ``B * capacity * D * 4`` bytes per checkpoint.
        """
        return {
            "distance_sum": self.distance_sum.detach().cpu().clone(),
            "distance_count": self.distance_count.detach().cpu().clone(),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors` and empty all memories.

        Checkpoints written before the per-env means (one shared scalar ``distance_sum`` /
        ``distance_count`` over all envs) are converted: every env starts from the shared
        mean, with the shared count split evenly (``sum / B``, ``count / B`` each), so the
        means are unchanged and the total weight of the history is kept.

        Raises:
            KeyError: a key is missing.
            ValueError: per-env tensors for a different number of envs.
        """
        total = tensors["distance_sum"].detach().to(self.device, torch.float64)
        count = tensors["distance_count"].detach().to(self.device, torch.float64)
        if total.dim() == 0 and count.dim() == 0:  # the old shared scalar form
            total = total.expand(self.num_envs) / self.num_envs
            count = count.expand(self.num_envs) / self.num_envs
        if total.shape != (self.num_envs,) or count.shape != (self.num_envs,):
            raise ValueError(
                f"episodic memory state holds running means of shape {list(total.shape)} / "
                f"{list(count.shape)}, this memory has {self.num_envs} envs; resume with the "
                "num_envs the checkpoint was written with"
            )
        self.distance_sum = total.clone()
        self.distance_count = count.clone()
        self.num_inserted[:] = 0
