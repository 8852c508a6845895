"""The learner's optimizer step: gradient clipping (R2D2: global norm clipped at 40,
Kapturowski et al. 2019, Table 2) and Adam (:func:`adam_step`, torch's Adam bit for bit with
less overhead)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import optimizer as _torch_optimizer

__all__ = ["adam_step", "clip_grad_norm"]


@torch.no_grad()
def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm)``, bit for bit, returning the norm.

    torch always scales the gradients by ``min(1, max_norm / (norm + 1e-6))``; here the
    scaling is skipped when that factor is exactly 1 (``g * 1.0 == g`` in IEEE arithmetic), the
    usual case, which saves a pass over every gradient (~15 us per update for the 85k
    parameters of the MinAtar comparison network on one CPU thread). The norm and the factor
    are computed by torch's own ``get_total_norm`` and the same float32 tensor arithmetic as
    ``clip_grads_with_norm_``; torch < 2.6 (no ``get_total_norm``) calls
    ``clip_grad_norm_`` itself.

    Args:
        params: the optimized parameters; those without a gradient are skipped.
        max_norm: the clipping threshold (L2 norm over all gradients).

    Returns:
        The total L2 norm of the gradients before clipping (NaN/inf when non-finite).
    """
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    clip_grads_with_norm = getattr(torch.nn.utils, "clip_grads_with_norm_", None)
    if get_total_norm is None or clip_grads_with_norm is None:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    grads = [p.grad for p in params if p.grad is not None]
    total_norm = get_total_norm(grads, 2.0, False, None)
    factor = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    if not float(factor) == 1.0:  # also NaN: scaled as torch does
        clip_grads_with_norm(params, max_norm, total_norm, None)
    return float(total_norm)


_FLOAT32_TINY = float(torch.finfo(torch.float32).tiny)
"""The smallest normal float32."""


def _plain_adam_group(group: dict[str, Any]) -> bool:
    """Whether ``group`` uses only what :func:`adam_step` implements: foreach, float
    hyperparameters, no weight decay, amsgrad, maximize, capturable, differentiable, fused."""
    return bool(
        group["foreach"] and not group["amsgrad"] and not group["maximize"]
        and not group["capturable"] and not group["differentiable"] and not group["fused"]
        and group["weight_decay"] == 0
        and all(isinstance(group[k], float) for k in ("lr", "eps"))
        and all(isinstance(b, float) for b in group["betas"])
    )


@torch.no_grad()
def adam_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` for a plain foreach ``torch.optim.Adam`` on CPU, bit for bit.

    Adam (Kingma & Ba 2015, Alg. 1) with torch's foreach arithmetic and op order (``step +=
    1``; ``m.lerp_(g, 1 - beta1)``; ``v.mul_(beta2).addcmul_(g, g, 1 - beta2)``; ``denom =
    sqrt(v) / sqrt(1 - beta2^t) + eps``; ``p.addcdiv_(m, denom, -lr / (1 - beta1^t))``) and the
    same state (``step``, ``exp_avg``, ``exp_avg_sq``), without ``Optimizer.step``'s Python
    bookkeeping. One difference that changes no bit: ``sqrt`` runs on ``max(v, floor)``, with
    ``floor = (ulp(eps) / 8 * sqrt(1 - beta2^t))^2`` (~1e-26 for eps 1e-5), because torch's
    CPU ``sqrt`` is 2-30x slower on 0 and on numbers below ~1e-29 than on others (measured
    on an AMD EPYC with AVX-512, torch 2.13), and ``v = 0`` is common: weights whose inputs
    were always 0, e.g. most of the first layer on MinAtar's sparse planes (~80 us of ~1.2 ms
    per update there). For every ``v <= floor``, ``sqrt(v) / sqrt(1 - beta2^t)`` is below a
    quarter of ``eps``'s float32 ulp, so ``... + eps`` rounds to ``eps``, as it does for the
    unclamped ``v``; used when ``eps > 0`` and ``floor`` is a normal float32.

    Anything else (other optimizers or options, hooks, a parameter on another device or
    dtype, sparse or missing gradients, uninitialised state) runs ``optimizer.step()``.

    Args:
        optimizer: the optimizer to step (gradients already in ``p.grad``).
    """
    if (type(optimizer) is not torch.optim.Adam or optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
            or _torch_optimizer._global_optimizer_pre_hooks
            or _torch_optimizer._global_optimizer_post_hooks):
        optimizer.step()
        return
    state = optimizer.state
    work = []
    for group in optimizer.param_groups:
        if not _plain_adam_group(group):
            optimizer.step()
            return
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        exp_avgs: list[torch.Tensor] = []
        exp_avg_sqs: list[torch.Tensor] = []
        steps: list[torch.Tensor] = []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            s = state.get(p)
            if (not s or grad.is_sparse or p.dtype != torch.float32 or p.device.type != "cpu"
                    or grad.dtype != torch.float32 or grad.device.type != "cpu"):
                optimizer.step()
                return
            params.append(p)
            grads.append(grad)
            exp_avgs.append(s["exp_avg"])
            exp_avg_sqs.append(s["exp_avg_sq"])
            steps.append(s["step"])
        if params:
            work.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
    for group, params, grads, exp_avgs, exp_avg_sqs, steps in work:
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        step_values = torch.stack(steps).tolist()
        step_size = [(lr / (1 - beta1 ** t)) * -1 for t in step_values]
        bias_correction2_sqrt = [(1 - beta2 ** t) ** 0.5 for t in step_values]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        # Every v <= floor gives denom == eps exactly: sqrt(floor) / sqrt(1 - beta2^t) is
        # at most half of a quarter of eps's float32 ulp.
        quarter_ulp = 2.0 ** (math.frexp(float(torch.tensor(eps, dtype=torch.float32)))[1] - 26)
        floor = (quarter_ulp * min(bias_correction2_sqrt) / 2) ** 2
        if eps > 0 and floor >= _FLOAT32_TINY:
            denom = torch._foreach_clamp_min(exp_avg_sqs, floor)
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)
