"""The code-layer regularisers of Lu & Chen (2023): the MMD to the prior and the
Shapiro-Wilk statistic (spec section 3.2).

* **MMD** (MMD-VAE and MMD-DAE, [004] Eq. 2): the unbiased estimate of the squared maximum
  mean discrepancy between a batch of codes ``z`` and as many prior draws ``z_s ~ N(0, I)``,

      MMD^2 = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(s_i, s_j)] - 2/n^2 sum_{i, j} k(z_i, s_j),

  with the RBF kernel ``exp(-||a - b||^2 / (2 h^2))``, ``h^2 = d`` (InfoVAE's choice), or the
  inverse multiquadric ``C / (C + ||a - b||^2)``, ``C = 2d`` (WAE's). The paper states
  neither; both are offered and named with each model.
* **Shapiro-Wilk** (SWT-VAE and SWT-DAE, [004] Eq. 3): ``W`` of each code coordinate over the
  batch with Royston's (1992, AS R94) coefficients, the ones R and SciPy use, and the loss
  ``1 - mean_j W_j``. ``W`` is invariant to location and scale, so it shapes each marginal and
  leaves its mean and spread free (spec section 7.5). It is differentiable almost
  everywhere, through ``sort``.
"""

from __future__ import annotations

import math

import torch
from scipy import stats
from torch import Tensor

from rcert.errors import RcertError
from rcert.settings import MMD_KERNELS
from rcert.values import choice

#: Royston's polynomial coefficients in ``u = n^-1/2`` of the last two Shapiro-Wilk weights.
_LAST = (0.221157, -0.147981, -2.071190, 4.434685, -2.706056)
_SECOND_LAST = (0.042981, -0.293762, -1.752461, 5.682633, -3.582633)
#: Royston's approximation holds for these batch sizes (below 6 its second weight differs).
MIN_SW, MAX_SW = 6, 5000


def _kernel(a: Tensor, b: Tensor, kernel: str) -> Tensor:
    d = a.shape[1]
    sq = torch.cdist(a, b).square()
    if kernel == "rbf":
        return torch.exp(-sq / (2.0 * d))
    return (2.0 * d) / (2.0 * d + sq)


def mmd_squared(z: Tensor, z_prior: Tensor, kernel: str = "rbf") -> Tensor:
    """The unbiased ``MMD^2`` between the codes ``z`` ``(n, d)`` and prior draws ``z_prior``
    ``(n, d)`` (module docstring); 0 in expectation when both come from one distribution."""
    choice(kernel, "MMD kernel", MMD_KERNELS)
    if z.ndim != 2 or z.shape != z_prior.shape or z.shape[0] < 2:
        raise RcertError(f"the MMD needs codes and prior draws of one shape (n >= 2, d), got "
                         f"{tuple(z.shape)} and {tuple(z_prior.shape)}")
    n = z.shape[0]
    off = 1.0 - torch.eye(n, dtype=z.dtype, device=z.device)
    within = ((_kernel(z, z, kernel) + _kernel(z_prior, z_prior, kernel)) * off).sum()
    return within / (n * (n - 1)) - 2.0 * _kernel(z, z_prior, kernel).mean()


def shapiro_wilk_weights(n: int, *, dtype: torch.dtype = torch.float64,
                         device: torch.device | str = "cpu") -> Tensor:
    """Royston's Shapiro-Wilk weights ``a`` for ``n`` order statistics (AS R94): antisymmetric,
    ``sum a^2 = 1``."""
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_SW <= n <= MAX_SW:
        raise RcertError(f"the Shapiro-Wilk statistic needs a batch of {MIN_SW} to {MAX_SW} "
                         f"codes, got {n!r}; change the batch size")
    i = torch.arange(1, n + 1, dtype=torch.float64)
    m = torch.as_tensor(stats.norm.ppf(((i - 0.375) / (n + 0.25)).numpy()))
    c = m / m.norm()
    u = 1.0 / math.sqrt(n)
    last = float(c[-1]) + sum(k * u ** (p + 1) for p, k in enumerate(_LAST))
    second = float(c[-2]) + sum(k * u ** (p + 1) for p, k in enumerate(_SECOND_LAST))
    m_sq = float(m.square().sum())
    phi = (m_sq - 2 * float(m[-1]) ** 2 - 2 * float(m[-2]) ** 2) / \
        (1 - 2 * last**2 - 2 * second**2)
    a = m / math.sqrt(phi)  # the middle weights, rescaled so that sum a^2 = 1
    a[-1], a[-2], a[0], a[1] = last, second, -last, -second
    return a.to(dtype=dtype, device=device)


def shapiro_wilk(z: Tensor) -> Tensor:
    """``W`` of each column of ``z`` ``(n, d)`` over its ``n`` rows, ``(d,)``:
    ``(sum_i a_i z_(i))^2 / sum_i (z_i - mean)^2`` with :func:`shapiro_wilk_weights`."""
    if z.ndim != 2:
        raise RcertError(f"the Shapiro-Wilk statistic takes codes of shape (n, d), got "
                         f"{tuple(z.shape)}")
    a = shapiro_wilk_weights(z.shape[0], dtype=z.dtype, device=z.device)
    ordered = torch.sort(z, dim=0).values
    centred = z - z.mean(dim=0, keepdim=True)
    return (a[:, None] * ordered).sum(dim=0).square() / centred.square().sum(dim=0)


def swt_penalty(z: Tensor) -> Tensor:
    """The SWT regulariser ``1 - mean_j W_j`` of a batch of codes ([004] Eq. 3, the
    coordinate-wise multivariate reading of spec section 3.2)."""
    return 1.0 - shapiro_wilk(z).mean()
