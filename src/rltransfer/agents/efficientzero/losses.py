"""EfficientZero's loss terms as pure functions of network outputs and targets (rlax style).

Source: EfficientZero (Ye et al. 2021, Sec. 4 and Eq. 5); MuZero (Schrittwieser et al. 2020,
Appendix G pseudocode) for the unroll's gradient scaling.

Loss of one sample (``K`` = unroll steps; ``CE(p, q) = -sum q log softmax(p)``)::

    L = sum_{k=0..K} [ lambda_pi * CE(pi_k, target_pi_k) * mask_k
                     + lambda_v  * CE(v_k, phi(z_k)) ]
      + sum_{k=1..K} [ lambda_r  * CE(vp_k, phi(target_vp_k))
                     + lambda_c  * (-cos(P(proj(s_k)), sg(proj(h(o_{t+k}))))) * mask_{k-1} ]

with ``phi`` = :func:`~rltransfer.nets.value_transforms.scalar_to_support` (h then two-hot),
``P`` the SimSiam predictor and ``sg`` stop-gradient; ``sum_b w_b L_b / B`` is minimised
(``w`` = importance weights). The weights ``lambda_r, lambda_pi, lambda_v, lambda_c`` are
1 / 1 / 0.25 / 2 (EZ Eq. 5: lambda_1 = 1 policy, lambda_2 = 0.25 value, lambda_3 = 2
consistency; XTRA Table 4): :class:`LossWeights`.

Decisions (documented):

* Value and value-prefix losses cover all ``K + 1`` / ``K`` steps (past an episode's end the
  reanalyser's targets describe the absorbing state, as in EfficientZero); the policy loss at
  step ``k`` is masked by ``mask[:, k]`` (no action there, no target); the consistency loss at
  step ``k`` by ``mask[:, k-1]`` (the transition into ``t+k`` happened: EZ's mask), so the
  episode's final observation is still a consistency target.
* Gradient scaling: the gradient of the latent passed from one unroll step to the next is
  scaled by 0.5 (MuZero pseudocode, :func:`scale_gradient`).
  ``gradient_scale_mode="efficientzero"`` (default) scales the gradient of the whole loss by
  ``1/K`` as the public EfficientZero code does, which is what its lr 0.2 was tuned for;
  ``"muzero"`` scales only the recurrent steps' terms by ``1/K`` (MuZero pseudocode).
  Reported losses are unscaled (:func:`weighted_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = [
    "LossWeights",
    "UnrollLosses",
    "categorical_cross_entropy",
    "consistency_loss",
    "negative_cosine",
    "policy_loss",
    "scale_gradient",
    "value_loss",
    "value_prefix_loss",
    "weighted_loss",
]


@dataclass(frozen=True)
class LossWeights:
    """The coefficients of EZ Eq. 5 (Ye et al. 2021; XTRA Table 4).

    Attributes:
        value_prefix: ``lambda_r`` of the value-prefix (reward) loss (1.0).
        policy: ``lambda_1`` of the policy loss (1.0).
        value: ``lambda_2`` of the value loss (0.25).
        consistency: ``lambda_3`` of the self-supervised consistency loss (2.0).
    """

    value_prefix: float = 1.0
    policy: float = 1.0
    value: float = 0.25
    consistency: float = 2.0


def categorical_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``-sum_i q_i log softmax(p)_i`` over the last dim.

    Args:
        logits: ``[B, N]`` unnormalised ``p``. target_probs: ``[B, N]`` distributions ``q``.

    Returns:
        ``[B]``.
    """
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)


def value_loss(value_logits: torch.Tensor, target_value_support: torch.Tensor) -> torch.Tensor:
    """Value loss of one unroll step: ``CE(v_k, phi(z_k))`` (EZ Eq. 5, MuZero).

    Args:
        value_logits: ``[B, V]`` over the value support. target_value_support: ``[B, V]``,
            the n-step target ``z_k`` as a two-hot distribution (``scalar_to_support``).

    Returns:
        ``[B]`` (unweighted, unmasked: see the module docstring).
    """
    return categorical_cross_entropy(value_logits, target_value_support)


def value_prefix_loss(prefix_logits: torch.Tensor,
                      target_prefix_support: torch.Tensor) -> torch.Tensor:
    """Value-prefix (reward) loss of unroll step ``k >= 1``: ``CE(vp_k, phi(target_vp_k))``
    (EfficientZero's value-prefix LSTM, Ye et al. 2021 Sec. 4.2).

    Args:
        prefix_logits: ``[B, R]`` over the value-prefix support.
        target_prefix_support: ``[B, R]`` two-hot value-prefix target.

    Returns:
        ``[B]`` (unweighted, unmasked).
    """
    return categorical_cross_entropy(prefix_logits, target_prefix_support)


def policy_loss(policy_logits: torch.Tensor, target_policy: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Policy loss of unroll step ``k``: ``CE(pi_k, target_pi_k) * mask_k`` (MuZero; the
    targets are the search's visit distributions).

    Args:
        policy_logits: ``[B, A]``. target_policy: ``[B, A]``. mask: ``[B]``, 1 where step
            ``k`` lies inside the episode.

    Returns:
        ``[B]`` (unweighted).
    """
    return categorical_cross_entropy(policy_logits, target_policy) * mask


def negative_cosine(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-cos(online, target)`` per row: ``[B, D] -> [B]`` (SimSiam; target not detached here)."""
    return -(F.normalize(online, dim=-1) * F.normalize(target, dim=-1)).sum(-1)


def consistency_loss(predicted: torch.Tensor, target_projection: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Self-supervised temporal consistency of unroll step ``k >= 1`` (EZ Sec. 4.1,
    SimSiam): ``-cos(P(proj(s_k)), sg(proj(h(o_{t+k})))) * mask_{k-1}``.

    Args:
        predicted: ``[B, D]``, the predictor's output on the unrolled latent ``s_k``.
        target_projection: ``[B, D]``, the projection of the observed ``o_{t+k}`` (computed
            without gradient by the caller: the stop-gradient).
        mask: ``[B]``, ``mask[:, k-1]`` (the transition into ``t+k`` happened).

    Returns:
        ``[B]`` in ``[-1, 1]`` where the mask is 1 (unweighted).
    """
    return negative_cosine(predicted, target_projection) * mask


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient flowing back through ``x`` by ``scale``
    (MuZero pseudocode, ``scale_gradient``: 0.5 between unroll steps)."""
    return x * scale + x.detach() * (1.0 - scale)


@dataclass
class UnrollLosses:
    """The per-step loss terms of one unrolled batch, each ``[B]`` and unweighted.

    Attributes:
        value: ``K + 1`` terms, steps ``0..K`` (:func:`value_loss`).
        policy: ``K + 1`` terms, steps ``0..K``, masked (:func:`policy_loss`).
        value_prefix: ``K`` terms, steps ``1..K`` (:func:`value_prefix_loss`).
        consistency: ``K`` terms, steps ``1..K``, masked (:func:`consistency_loss`).
    """

    value: list[torch.Tensor] = field(default_factory=list)
    policy: list[torch.Tensor] = field(default_factory=list)
    value_prefix: list[torch.Tensor] = field(default_factory=list)
    consistency: list[torch.Tensor] = field(default_factory=list)

    def per_sample(self, first: int, last: int, weights: LossWeights) -> torch.Tensor:
        """The weighted loss of steps ``first..last`` per sample, ``[B]`` (EZ Eq. 5 restricted
        to those steps; value-prefix and consistency terms exist from step 1 on)."""
        total = torch.zeros_like(self.value[0])
        for k in range(first, last + 1):
            total = total + weights.value * self.value[k]
            total = total + weights.policy * self.policy[k]
            if k >= 1:
                total = total + weights.value_prefix * self.value_prefix[k - 1]
                total = total + weights.consistency * self.consistency[k - 1]
        return total

    def summaries(self) -> dict[str, float]:
        """Each term summed over its steps, then averaged over the batch (unweighted):
        ``value_prefix_loss``, ``policy_loss``, ``value_loss``, ``consistency_loss``."""
        def total(terms: list[torch.Tensor]) -> float:
            return float(torch.stack(terms).sum(0).mean().detach())

        return {"value_prefix_loss": total(self.value_prefix),
                "policy_loss": total(self.policy),
                "value_loss": total(self.value),
                "consistency_loss": total(self.consistency)}


def weighted_loss(losses: UnrollLosses, importance_weights: torch.Tensor, weights: LossWeights,
                  gradient_scale_mode: str = "efficientzero") -> tuple[torch.Tensor, torch.Tensor]:
    """The batch loss of EZ Eq. 5 and the objective that is differentiated.

    Args:
        losses: the ``K`` step terms of a batch (``K = len(losses.value_prefix) >= 1``).
        importance_weights: ``[B]`` prioritized-replay importance weights ``w``.
        weights: the coefficients (:class:`LossWeights`).
        gradient_scale_mode: ``"efficientzero"`` (objective = loss / K) or ``"muzero"``
            (objective = mean of ``w * (L_step0 + L_steps1..K / K)``), module docstring.

    Returns:
        ``(loss, objective)``, scalars: ``loss = mean_b w_b L_b`` (reported, unscaled) and
        the gradient-scaled objective.

    Raises:
        ValueError: an unknown ``gradient_scale_mode``.
    """
    k = len(losses.value_prefix)
    step0, recurrent = losses.per_sample(0, 0, weights), losses.per_sample(1, k, weights)
    loss = (importance_weights * (step0 + recurrent)).mean()
    if gradient_scale_mode == "efficientzero":
        return loss, loss / k
    if gradient_scale_mode == "muzero":
        return loss, (importance_weights * (step0 + recurrent / k)).mean()
    raise ValueError(f"gradient_scale_mode must be 'efficientzero' or 'muzero', got "
                     f"{gradient_scale_mode!r}")
