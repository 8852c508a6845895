"""R2D2's loss terms as pure functions of tensors (rlax-style names, shape contracts).

Sources: R2D2 (Kapturowski et al. 2019, Sec. 2-3): n-step double-Q targets with the
invertible value rescaling ``h`` (Pohlen et al. 2018, "Observe and Look Further", Prop. A.2)
and the sequence priority ``eta max|delta| + (1 - eta) mean|delta|``; double Q-learning (van
Hasselt et al. 2016); Behavior Transfer's extra action a+ (Campos et al. 2021, Sec. 3.2): when
the agent chose a+ and the environment executed ``a' ~ pi_p(s)``, the same target trains both
``Q(s, a')`` and ``Q(s, a+)``.

Shapes: ``B`` transitions, ``N`` sequences of ``L`` training steps, ``A`` Q outputs. Every
function computes exactly the operations the learner used before they were split out (the
pinned runs in ``tests/test_pinned_behaviour.py`` are bit-identical), so the order of
operations here is part of the contract.
"""

from __future__ import annotations

import torch

from rltransfer.nets.value_transforms import inverse_value_rescale, value_rescale

__all__ = [
    "double_q_target",
    "extra_action_td_error",
    "n_step_double_q_target",
    "sequence_loss",
    "sequence_priority",
    "sequence_td_errors",
    "td_error",
    "transition_loss",
    "transition_priority",
]


def double_q_target(
    n_step_return: torch.Tensor,
    bootstrap_discount: torch.Tensor,
    q_next_online: torch.Tensor | None,
    q_next_target: torch.Tensor,
    *,
    double_q: bool,
    value_rescaling: bool,
    eps: float,
) -> torch.Tensor:
    """n-step (double) Q-learning target with value rescaling (R2D2, Sec. 2), for callers
    already under ``torch.no_grad()`` / ``torch.inference_mode()``.

    ``y = h(R_n + disc * h^-1(Q_target(s', a*)))`` with ``a* = argmax_a Q_online(s', a)``
    (double Q, van Hasselt et al. 2016) or ``argmax_a Q_target(s', a)`` (``double_q=False``);
    ``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x`` (the identity when ``value_rescaling`` is
    off).

    Args:
        n_step_return: ``float[B]``, ``sum_{k<m} gamma^k r_{t+k}``.
        bootstrap_discount: ``float[B]``, ``gamma^m``, or 0 after a termination.
        q_next_online: ``float[B, A]`` online Q at the bootstrap state (used only with
            ``double_q``; may be ``None`` otherwise).
        q_next_target: ``float[B, A]`` target-network Q at the bootstrap state (in the
            rescaled space when ``value_rescaling``).
        double_q: argmax by the online network (else by the target network).
        value_rescaling: apply ``h`` / ``h^-1`` around the bootstrap.
        eps: the ``eps`` of ``h``.

    Returns:
        ``float[B]`` targets.

    Raises:
        ValueError: ``q_next_target`` not ``[B, A]``; ``double_q`` without a
            ``q_next_online`` of the same shape.
    """
    if q_next_target.dim() != 2 or q_next_target.shape[0] != n_step_return.shape[0]:
        raise ValueError(
            f"q_next_target must be [B, A] with B={n_step_return.shape[0]}, got "
            f"{list(q_next_target.shape)}"
        )
    if double_q:
        if q_next_online is None or q_next_online.shape != q_next_target.shape:
            raise ValueError("double_q needs q_next_online with the shape of q_next_target")
        a_star = q_next_online.argmax(dim=1, keepdim=True)
    else:
        a_star = q_next_target.argmax(dim=1, keepdim=True)
    q_boot = q_next_target.gather(1, a_star).squeeze(1)
    if value_rescaling:
        q_boot = inverse_value_rescale(q_boot, eps)
    y = n_step_return + bootstrap_discount * q_boot
    return value_rescale(y, eps) if value_rescaling else y


@torch.no_grad()
def n_step_double_q_target(
    n_step_return: torch.Tensor,
    bootstrap_discount: torch.Tensor,
    q_next_online: torch.Tensor | None,
    q_next_target: torch.Tensor,
    *,
    double_q: bool = True,
    value_rescaling: bool = True,
    eps: float = 1e-3,
) -> torch.Tensor:
    """:func:`double_q_target` under ``torch.no_grad()``, with R2D2's defaults (double Q,
    value rescaling, ``eps = 1e-3``).

    Args / Returns / Raises: as :func:`double_q_target`; the result has no gradient.
    """
    return double_q_target(n_step_return, bootstrap_discount, q_next_online, q_next_target,
                           double_q=double_q, value_rescaling=value_rescaling, eps=eps)


def td_error(
    q_t: torch.Tensor, a_t: torch.Tensor, target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transition TD errors ``delta_i = Q(s_i, a_i) - y_i``.

    Args:
        q_t: ``float[B, A]`` online Q at ``s_t``.
        a_t: ``int64[B]`` actions in ``[0, A)`` (the executed env actions).
        target: ``float[B]`` targets ``y`` (no gradient).

    Returns:
        ``(q_a float[B], delta float[B])``: ``Q(s_i, a_i)`` and the TD errors.
    """
    q_a = q_t.gather(1, a_t[:, None]).squeeze(1)
    return q_a, q_a - target


def extra_action_td_error(
    q_t: torch.Tensor, agent_action: torch.Tensor, extra: torch.Tensor, target: torch.Tensor,
) -> torch.Tensor:
    """Behavior Transfer's a+ term (Campos et al. 2021, Sec. 3.2): ``delta+_i = Q(s_i,
    agent_action_i) - y_i`` where the agent chose a+ (``extra_i``), else 0.

    Args:
        q_t: ``float[B, A]`` online Q.
        agent_action: ``int64[B]`` the agent's choices (a+ is the last index ``A - 1``).
        extra: ``bool[B]``, where the agent chose a+ and the env executed ``a' ~ pi_p``.
        target: ``float[B]`` the shared targets.

    Returns:
        ``float[B]``.
    """
    q_agent = q_t.gather(1, agent_action[:, None]).squeeze(1)
    return torch.where(extra, q_agent - target, torch.zeros_like(target))


def transition_loss(
    delta: torch.Tensor, delta_plus: torch.Tensor | None, weights: torch.Tensor,
) -> torch.Tensor:
    """``mean_i 0.5 w_i (delta_i^2 + delta+_i^2)`` (``delta+ = None``: no a+ in the batch,
    the same value without the a+ ops).

    Args:
        delta: ``float[B]`` TD errors (:func:`td_error`).
        delta_plus: ``float[B]`` a+ TD errors (:func:`extra_action_td_error`) or ``None``.
        weights: ``float[B]`` importance-sampling weights (1 for uniform replay).

    Returns:
        Scalar loss.
    """
    if delta_plus is None:
        return (0.5 * weights * delta.square()).mean()
    return (0.5 * weights * (delta.square() + delta_plus.square())).mean()


def transition_priority(delta: torch.Tensor, delta_plus: torch.Tensor | None) -> torch.Tensor:
    """Proportional priority of each transition: ``max(|delta_i|, |delta+_i|)`` (``|delta_i|``
    when ``delta_plus`` is ``None``).

    Args:
        delta, delta_plus: ``float[B]`` (see :func:`transition_loss`).

    Returns:
        ``float[B]``, >= 0.
    """
    delta_abs = delta.abs()
    return delta_abs if delta_plus is None else torch.maximum(delta_abs, delta_plus.abs())


def sequence_td_errors(
    q: torch.Tensor,
    action: torch.Tensor,
    agent_action: torch.Tensor,
    extra: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TD errors over the training steps of replayed sequences (R2D2 Sec. 3), with a+.

    Args:
        q: ``float[N, L, A]`` online Q over the training part.
        action: ``int64[N, L]`` env actions, in ``[0, A)`` where ``mask``.
        agent_action: ``int64[N, L]`` the agent's choices (a+ where ``extra``).
        extra: ``bool[N, L]``.
        mask: ``bool[N, L]``, the steps that count (``loss_mask``).
        target: ``float[N, L]`` targets ``y`` (no gradient).

    Returns:
        ``(q_a, delta, delta_plus)``, each ``float[N, L]``: ``Q(s_t, a_t)``,
        ``(Q(s_t, a_t) - y_t) mask_t`` and ``Q(s_t, a+) - y_t`` where ``extra_t & mask_t``
        (else 0).
    """
    q_a = q.gather(2, action[:, :, None]).squeeze(2)
    q_agent = q.gather(2, agent_action[:, :, None]).squeeze(2)
    delta = (q_a - target) * mask.to(q.dtype)
    delta_plus = torch.where(extra & mask, q_agent - target, torch.zeros_like(target))
    return q_a, delta, delta_plus


def sequence_loss(
    delta: torch.Tensor, delta_plus: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
) -> torch.Tensor:
    """``mean_i w_i sum_t 0.5 (delta_t^2 + delta+_t^2) / max(1, sum_t mask_t)``.

    Args:
        delta, delta_plus: ``float[N, L]`` from :func:`sequence_td_errors` (0 off ``mask``).
        mask: ``bool[N, L]``.
        weights: ``float[N]`` importance-sampling weights.

    Returns:
        Scalar loss.
    """
    count = mask.to(delta.dtype).sum(dim=1).clamp(min=1.0)
    per_seq = (0.5 * (delta.square() + delta_plus.square())).sum(dim=1) / count
    return (weights * per_seq).mean()


def sequence_priority(abs_td: torch.Tensor, mask: torch.Tensor, eta: float) -> torch.Tensor:
    """R2D2's sequence priority ``eta max_t |d_t| + (1 - eta) mean_t |d_t|`` (Sec. 2).

    Args:
        abs_td: ``float[N, L]`` absolute TD errors.
        mask: ``bool[N, L]``, the steps that count; a row without any gives 0.
        eta: the mix (R2D2: 0.9).

    Returns:
        ``float[N]``.
    """
    m = mask.to(abs_td.dtype)
    d = abs_td * m
    mean = d.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return eta * d.max(dim=1).values + (1.0 - eta) * mean
