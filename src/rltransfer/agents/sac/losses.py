"""SAC's losses as pure functions of tensors (rlax style): no networks, no optimizers.

Soft actor-critic with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications", Alg. 1), with clipped double Q (Fujimoto et al. 2018) as in
SAC-AE / PAD / DrQ:

* :func:`soft_bellman_target`: ``y = R + d (min_j Q'_j(s', a') - alpha log pi(a'|s'))``,
  the soft Bellman backup (Eq. 2) of the soft state value ``V(s') = E[Q(s', a') - alpha log
  pi(a'|s')]`` (Eq. 3), one sample ``a' ~ pi(.|s')``, the minimum of the two target Q nets.
  ``R`` is the n-step return and ``d`` the bootstrap discount (``gamma^n``, 0 at a
  termination); with n > 1 the entropy bonus is only applied at the bootstrap state.
* :func:`critic_loss`: ``MSE(Q_1(s, a), y) + MSE(Q_2(s, a), y)`` (Eq. 5, both Q nets; the
  mean squared error without the paper's 1/2, as SAC-AE and PAD do).
* :func:`actor_loss`: ``E[alpha log pi(a|s) - min_j Q_j(s, a)]`` with ``a ~ pi`` sampled by
  reparameterisation (Eq. 7).
* :func:`temperature_loss`: ``E[alpha (-log pi(a|s) - target_entropy)]`` (Eq. 18); its
  gradient reaches only ``log_alpha``: alpha grows when the policy's entropy ``-log pi`` is
  below the target (``-|A|``).

Shapes: every per-sample argument is float ``[B]`` (one batch size for all); ``alpha`` and
``log_alpha`` are 0-d tensors; each loss is a 0-d tensor. A mismatch raises ``ValueError``
(no silent broadcasting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["actor_loss", "critic_loss", "soft_bellman_target", "temperature_loss"]


def _check_batch(**tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every tensor is ``[B]`` with one ``B``."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        raise ValueError("SAC loss inputs must all be [B] with one batch size, got "
                         + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def _check_scalar(name: str, t: torch.Tensor) -> None:
    if t.dim() != 0:
        raise ValueError(f"{name} must be a 0-d tensor, got shape {tuple(t.shape)}")


def soft_bellman_target(
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor,
    n_step_return: torch.Tensor,
    bootstrap_discount: torch.Tensor,
) -> torch.Tensor:
    """Soft TD target ``y = R + d (min(Q'_1, Q'_2) - alpha log pi(a'|s'))`` (Haarnoja et al.
    2018, Eq. 2-3; clipped double Q, Fujimoto et al. 2018).

    Args:
        next_q1, next_q2: ``[B]`` target Q nets at ``(s', a')``, ``a' ~ pi(.|s')``.
        next_log_prob: ``[B]`` ``log pi(a'|s')``.
        alpha: 0-d temperature.
        n_step_return: ``[B]`` discounted sum of the n rewards ``R``.
        bootstrap_discount: ``[B]`` ``d`` (``gamma^n``; 0 at a termination).

    Returns:
        ``[B]`` targets; the caller computes them without gradient.

    Raises:
        ValueError: shapes other than the above.
    """
    _check_batch(next_q1=next_q1, next_q2=next_q2, next_log_prob=next_log_prob,
                 n_step_return=n_step_return, bootstrap_discount=bootstrap_discount)
    _check_scalar("alpha", alpha)
    v = torch.minimum(next_q1, next_q2) - alpha * next_log_prob
    return n_step_return + bootstrap_discount * v


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``MSE(q1, y) + MSE(q2, y)`` (Haarnoja et al. 2018, Eq. 5, for both Q nets).

    Args:
        q1, q2: ``[B]`` online Q nets at the replayed ``(s, a)``.
        target: ``[B]`` :func:`soft_bellman_target` (no gradient flows into it).

    Returns:
        0-d loss.

    Raises:
        ValueError: shapes other than the above.
    """
    _check_batch(q1=q1, q2=q2, target=target)
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def actor_loss(log_prob: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor,
               alpha: torch.Tensor) -> torch.Tensor:
    """``E[alpha log pi(a|s) - min(Q_1, Q_2)(s, a)]`` (Haarnoja et al. 2018, Eq. 7) for
    reparameterised actions ``a ~ pi(.|s)``.

    Args:
        log_prob: ``[B]`` ``log pi(a|s)`` (differentiable in the actor).
        q1, q2: ``[B]`` online Q nets at ``(s, a)`` (differentiable in ``a``).
        alpha: 0-d temperature; a constant here (detached).

    Returns:
        0-d loss.

    Raises:
        ValueError: shapes other than the above.
    """
    _check_batch(log_prob=log_prob, q1=q1, q2=q2)
    _check_scalar("alpha", alpha)
    return (alpha.detach() * log_prob - torch.minimum(q1, q2)).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor,
                     target_entropy: float) -> torch.Tensor:
    """``E[alpha (-log pi(a|s) - target_entropy)]``, ``alpha = exp(log_alpha)`` (Haarnoja et
    al. 2018, Eq. 18, in ``log_alpha`` as their code does).

    Args:
        log_alpha: 0-d, the trained parameter.
        log_prob: ``[B]`` ``log pi(a|s)`` of fresh actions; a constant here (detached).
        target_entropy: the entropy target (nats; ``-|A|`` by default).

    Returns:
        0-d loss; its gradient in ``log_alpha`` is positive (alpha shrinks) when the
        entropy ``-log pi`` is above the target.

    Raises:
        ValueError: shapes other than the above.
    """
    _check_batch(log_prob=log_prob)
    _check_scalar("log_alpha", log_alpha)
    return (log_alpha.exp() * (-log_prob.detach() - target_entropy)).mean()
