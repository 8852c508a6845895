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

* **One running mean** ``d_m^2`` over all B envs, **exponentially weighted**: each step
  ``sum <- decay * sum + sum_i d_i`` and ``count <- decay * count + n_i``, ``d_m^2 = sum /
  count`` (``distance_decay``, default 0.99 per step, i.e. a window of about 100 steps; 1.0
  gives the cumulative average over the whole run). NGU's Algorithm 1 says "moving average"
  without a window. The embedding ``f`` trains during the run, so its scale changes, and a
  cumulative average would keep normalising by the scale of long-gone embeddings
  (``test_running_mean_follows_a_shrinking_embedding``). NGU keeps one mean per actor;
  here the B envs of one process share it.
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
        distance_decay: per-step decay of the running mean ``d_m^2`` in ``(0, 1]`` (module
            docstring; 1.0: cumulative average).
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
        distance_decay: float = 0.99,
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
        self.distance_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.distance_count = torch.zeros((), dtype=torch.float64, device=self.device)
        self._env_index = torch.arange(b, device=self.device)
        self._slot_index = torch.arange(cap, device=self.device)

    # ------------------------------------------------------------------ state

    @property
    def fill_counts(self) -> np.ndarray:
        """``int64[B]``: valid entries per env (``min(num_inserted, capacity)``)."""
        return np.minimum(self.num_inserted, self.capacity)

    @property
    def distance_mean(self) -> float:
        """The running mean ``d_m^2`` of squared k-NN distances, exponentially weighted with
        ``distance_decay`` per step (0 before any distance)."""
        count = float(self.distance_count)
        return float(self.distance_sum) / count if count > 0 else 0.0

    def reset(self, done_mask: np.ndarray) -> None:
        """Empty the memories of the envs where ``done_mask`` (``bool[B]``) is true.

        The running mean ``d_m^2`` is kept (it spans episodes, as in NGU).

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
            # Running mean d_m^2 over all envs, exponentially weighted over steps, updated
            # before normalising.
            self.distance_sum = self.distance_decay * self.distance_sum + sq_dist.sum()
            self.distance_count = self.distance_decay * self.distance_count + valid.sum()
            mean = self.distance_sum / self.distance_count.clamp(min=1.0)
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
        """The running mean's ``distance_sum`` and ``distance_count`` (float64 scalars, CPU).

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

        Raises:
            KeyError: a key is missing.
        """
        self.distance_sum = tensors["distance_sum"].to(self.device, torch.float64).reshape(())
        self.distance_count = tensors["distance_count"].to(self.device, torch.float64).reshape(())
        self.num_inserted[:] = 0
