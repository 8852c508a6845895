"""Value transforms shared by the learners: the invertible value rescaling h of R2D2 and
MuZero / EfficientZero (Pohlen et al. 2018, "Observe and Look Further", Prop. A.2).

One home for this math: R2D2 rescales its Q targets with h; EfficientZero applies h before
projecting scalars onto a categorical support.
"""

from __future__ import annotations

import torch


def value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x (Pohlen et al. 2018; R2D2 Sec. 2).

    Elementwise on a tensor of any shape; e.g. h(0) = 0, h(3) = 1 + 3 eps.
    """
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + eps * x


def inverse_value_rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """h^-1(x) = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1).

    The closed-form inverse of :func:`value_rescale` (Pohlen et al. 2018, Prop. A.2);
    for ``eps == 0`` it is ``sign(x)((|x| + 1)^2 - 1)``. Elementwise, any shape.
    """
    if eps == 0:
        return torch.sign(x) * ((torch.abs(x) + 1.0) ** 2 - 1.0)
    root = (torch.sqrt(1.0 + 4.0 * eps * (torch.abs(x) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(x) * (root**2 - 1.0)


class SupportError(ValueError):
    """Bad arguments to the categorical-support transforms (size or logits shape)."""


def _check_support_size(support_size: int) -> None:
    if isinstance(support_size, bool) or not isinstance(support_size, int) or support_size < 1:
        raise SupportError(
            f"support_size must be an int >= 1 (bins -S..S; Atari uses 300), got {support_size!r}"
        )


def support_bins(support_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The bin centres ``-S, ..., S`` of the categorical support: float32 ``[2S + 1]``.

    Raises:
        SupportError: ``support_size < 1``.
    """
    _check_support_size(support_size)
    return torch.arange(-support_size, support_size + 1, dtype=torch.float32, device=device)


def scalar_to_support(x: torch.Tensor, support_size: int, eps: float = 1e-3) -> torch.Tensor:
    """Categorical target of scalars: ``h(x)`` then a two-hot projection onto ``-S..S``.

    MuZero (Schrittwieser et al. 2020, Appendix F) / EfficientZero (Ye et al. 2021): ``y =
    h(x)`` (:func:`value_rescale`) is clipped to ``[-S, S]``; with ``l = floor(y)`` the bin ``l``
    gets ``1 - (y - l)`` and bin ``l + 1`` gets ``y - l``, so the expectation of the result over
    the bins is exactly ``y`` (for ``|y| <= S``). E.g. ``h(x) = 2.3`` -> 0.7 on bin 2, 0.3 on
    bin 3. Values with ``|h(x)| > S`` put all mass on the end bin.

    Args:
        x: scalars, any shape ``[...]``, any float dtype (computed in float32 or wider).
        support_size: ``S`` >= 1; ``2S + 1`` bins (601 for Atari, ``S = 300``).
        eps: the ``eps`` of ``h``.

    Returns:
        Probabilities ``[..., 2S + 1]`` (float32, or float64 for float64 ``x``); each row sums to 1.

    Raises:
        SupportError: ``support_size < 1``.
    """
    _check_support_size(support_size)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = value_rescale(x.to(dtype), eps).clamp(-float(support_size), float(support_size))
    lower = torch.floor(y)
    p_upper = y - lower
    lower_idx = (lower + support_size).long()
    upper_idx = (lower_idx + 1).clamp(max=2 * support_size)  # p_upper is 0 when y == S
    out = torch.zeros(*y.shape, 2 * support_size + 1, dtype=dtype, device=x.device)
    out.scatter_add_(-1, lower_idx.unsqueeze(-1), (1.0 - p_upper).unsqueeze(-1))
    out.scatter_add_(-1, upper_idx.unsqueeze(-1), p_upper.unsqueeze(-1))
    return out


def support_to_scalar(logits: torch.Tensor, support_size: int, eps: float = 1e-3) -> torch.Tensor:
    """Scalar of categorical logits: softmax expectation over bins ``-S..S``, then ``h^-1``.

    The inverse of :func:`scalar_to_support` for two-hot inputs (MuZero Appendix F;
    EfficientZero): ``x = h^-1(sum_i softmax(logits)_i * i)``.

    Args:
        logits: ``[..., 2S + 1]`` unnormalised log-probabilities (float).
        support_size: ``S`` >= 1.
        eps: the ``eps`` of ``h``.

    Returns:
        Scalars ``[...]`` (float64 for float64 ``logits``, else float32).

    Raises:
        SupportError: ``support_size < 1`` or the last dimension is not ``2S + 1``.
    """
    _check_support_size(support_size)
    if logits.ndim < 1 or logits.shape[-1] != 2 * support_size + 1:
        raise SupportError(
            f"logits must end in 2 * support_size + 1 = {2 * support_size + 1} bins, "
            f"got shape {tuple(logits.shape)}"
        )
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    # softmax in the input precision; expectation and h^-1 in float64 (h^-1 in float32 is off
    # by ~3e-5 near 0 because sqrt(1 + 4 eps (|x| + 1 + eps)) - 1 is divided by 2 eps).
    probs = torch.softmax(logits.to(out_dtype), dim=-1).double()
    bins = support_bins(support_size, logits.device).double()
    return inverse_value_rescale((probs * bins).sum(-1), eps).to(out_dtype)
