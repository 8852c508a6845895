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
