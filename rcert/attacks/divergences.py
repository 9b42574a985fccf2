"""What the targeted attacks of Willetts et al. minimise: divergences between two diagonal
Gaussian posteriors, the penalty on the distortion, and the lambda grid (spec sections
3.1-3.5).

The latent attacks minimise ``Delta = r(q(z | x + d), q(z | x_t)) + lambda * ||d||`` with
``r`` the KL divergence (Tabacof et al. 2016) or the 2-Wasserstein distance; both have closed
forms for diagonal Gaussians. The paper writes the penalty ``lambda ||d||_2``, unsquared, and
``W_2`` without saying whether it is squared: the defaults follow the text (unsquared), and
the squared forms are offered as named choices, recorded with each result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.settings import choice

#: The divergences between the attacked and the target posterior.
DIVERGENCES = ("kl", "w2", "w2_squared")
#: The penalties on the distortion ``d``.
PENALTIES = ("l2", "l2_squared")


def gaussian_kl(mu_a: Tensor, sigma_a: Tensor, mu_t: Tensor, sigma_t: Tensor) -> Tensor:
    """``KL(N(mu_a, diag sigma_a^2) || N(mu_t, diag sigma_t^2))`` per row (spec 3.1)::

        sum_j [log(sigma_t / sigma_a) + (sigma_a^2 + (mu_a - mu_t)^2) / (2 sigma_t^2) - 1/2]
    """
    ratio = (sigma_a / sigma_t).square()
    shift = ((mu_a - mu_t) / sigma_t).square()
    return 0.5 * (ratio + shift - 1.0 - ratio.log()).sum(dim=-1)


def gaussian_w2_squared(mu_a: Tensor, sigma_a: Tensor, mu_t: Tensor, sigma_t: Tensor) -> Tensor:
    """The squared 2-Wasserstein distance between two diagonal Gaussians, per row (spec
    3.2): ``||mu_a - mu_t||^2 + ||sigma_a - sigma_t||^2``."""
    return (mu_a - mu_t).square().sum(dim=-1) + (sigma_a - sigma_t).square().sum(dim=-1)


def divergence(kind: str, mu_a: Tensor, sigma_a: Tensor, mu_t: Tensor,
               sigma_t: Tensor) -> Tensor:
    """The divergence ``kind`` (:data:`DIVERGENCES`) of the attacked posterior from the
    target's, per row. ``w2`` is the square root of :func:`gaussian_w2_squared`; its gradient
    at a perfect match (distance 0) is taken as 0, not NaN."""
    choice(kind, "divergence", DIVERGENCES)
    if kind == "kl":
        return gaussian_kl(mu_a, sigma_a, mu_t, sigma_t)
    squared = gaussian_w2_squared(mu_a, sigma_a, mu_t, sigma_t)
    if kind == "w2_squared":
        return squared
    # sqrt has an infinite derivative at 0; clamping keeps the optimiser's gradient finite.
    return squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt()


def penalty(kind: str, d: Tensor) -> Tensor:
    """``||d||_2`` (``l2``, the paper's text) or ``||d||_2^2`` (``l2_squared``) per row of
    the distortion ``d`` (any shape after the first axis)."""
    choice(kind, "penalty", PENALTIES)
    squared = d.flatten(1).square().sum(dim=1)
    if kind == "l2_squared":
        return squared
    return squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt()


def lambda_grid(count: int = 50, low: float = -20.0, high: float = 20.0) -> np.ndarray:
    """The penalty weights of the protocol (spec 3.5): ``count`` values geometric in base 2
    from ``2**low`` to ``2**high``, both included (50 from ``2**-20`` to ``2**20`` by
    default, a ratio of ``2**(40/49)`` between neighbours)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RcertError(f"a lambda grid needs at least 1 value, got {count!r}")
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise RcertError(f"a lambda grid needs finite exponents low <= high, got {low!r} and "
                         f"{high!r}")
    return np.logspace(low, high, count, base=2.0)
