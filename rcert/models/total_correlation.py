"""The total correlation of the aggregate posterior, estimated from one minibatch.

``TC = KL(q(z) || prod_j q(z_j))`` with ``q(z) = 1/N sum_n q(z | x_n)`` (Watanabe 1960), the
term the beta-TCVAE and the Seatbelt-VAE weight by ``beta`` (Willetts et al., spec section
2.3). Neither ``q(z)`` nor its marginals can be evaluated on a minibatch, so they are
estimated from the batch's own posteriors (Chen et al. 2018; Willetts et al. App C):

* **MWS**, minibatch-weighted sampling (spec section 2.4), the paper's estimator:
  ``log q(z_i) ~ logsumexp_k log q(z_i | x_k) - log(N M)``, and likewise per coordinate.
  With the batch equal to the whole dataset (``M = N``) it is the exact-mixture TC plus the
  constant ``(d_z - 1) log N``, which has no gradient; for ``M < N`` it is biased.
* **MSS**, minibatch stratified sampling (optional, not in the paper): each row of the
  importance weights puts ``1/N`` on its own point, ``(N - M)/(N M)`` on one designated
  other point and ``1/M`` on the other ``M - 1`` (a batch of ``M + 1``), so it sums to 1.
  The reference code sets column 0 instead of the diagonal (rtqichen/beta-tcvae PR #1);
  here the diagonal is set, and a test checks that every row sums to 1.

The hierarchical estimator of the Seatbelt-VAE's top layer (spec section 2.7) is the same
computation with ``mu`` and ``sigma`` the top layer's conditional parameters of each batch
member. Memory: ``O(M^2 d_z)``, the ``(M, M, d_z)`` log-densities and the same-sized
temporary of a logsumexp over them; nothing of size ``N``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.settings import TC_ESTIMATORS, choice

_LOG_2PI = math.log(2 * math.pi)


def _check(z: Tensor, mu: Tensor, sigma: Tensor, dataset_size: int) -> int:
    """The batch size, once the shapes and sizes are consistent."""
    if z.ndim != 2 or mu.shape != z.shape or sigma.shape != z.shape:
        raise RcertError(f"z, mu and sigma must share one (batch, d_z) shape, got "
                         f"{tuple(z.shape)}, {tuple(mu.shape)} and {tuple(sigma.shape)}")
    batch = z.shape[0]
    if batch < 2:
        raise RcertError(f"a total-correlation estimate needs a batch of at least 2 inputs, "
                         f"got {batch}; raise the batch size")
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) \
            or dataset_size < batch:
        raise RcertError(f"dataset_size must be an integer >= the batch size {batch}, got "
                         f"{dataset_size!r}")
    return batch


def log_normal_pairs(z: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """``log N(z_{i,j} | mu_{k,j}, sigma_{k,j}^2)`` for every sample ``i``, batch member ``k``
    and coordinate ``j``: the ``(M, M, d_z)`` tensor both estimators reduce."""
    diff = (z[:, None, :] - mu[None, :, :]) / sigma[None, :, :]
    return -0.5 * (diff * diff + _LOG_2PI) - torch.log(sigma)[None, :, :]


def mss_log_weights(batch: int, dataset_size: int, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> Tensor:
    """``log W``, the ``(batch, batch)`` stratified importance weights of MSS.

    With ``M = batch - 1`` other points per row: ``1/N`` on the diagonal (the sample's own
    point), ``(N - M) / (N M)`` on the next point (``(i + 1) mod batch``), ``1/M``
    elsewhere; each row sums to 1. A zero weight (``N = M``) is ``-inf``.
    """
    n, m = dataset_size, batch - 1
    weights = torch.full((batch, batch), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch)
    weights[rows, (rows + 1) % batch] = (n - m) / (n * m)
    weights[rows, rows] = 1.0 / n
    return weights.log().to(dtype=dtype, device=device)


def log_aggregate(z: Tensor, mu: Tensor, sigma: Tensor, dataset_size: int,
                  estimator: str = "mws") -> tuple[Tensor, Tensor]:
    """Per sample ``i``, the estimates of ``log q(z_i)`` and ``sum_j log q(z_{i,j})``.

    Parameters
    ----------
    z
        ``(M, d_z)`` samples, ``z_i ~ q(z | x_i)``.
    mu, sigma
        ``(M, d_z)`` posterior means and standard deviations of the batch members.
    dataset_size
        ``N``, the size of the training set the batch was drawn from (at least ``M``).
    estimator
        ``"mws"`` or ``"mss"`` (module docstring).
    """
    choice(estimator, "total-correlation estimator", TC_ESTIMATORS)
    batch = _check(z, mu, sigma, dataset_size)
    pairs = log_normal_pairs(z, mu, sigma)
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(dataset_size * batch),
                           dtype=pairs.dtype, device=pairs.device)
    else:
        log_w = mss_log_weights(batch, dataset_size, dtype=pairs.dtype, device=pairs.device)
    joint = torch.logsumexp(log_w + pairs.sum(dim=2), dim=1)
    # In place (no saved tensor of the graph is the sum's input), so the log-densities stay
    # the one (M, M, d_z) tensor besides logsumexp's own temporary.
    marginals = torch.logsumexp(pairs.add_(log_w[:, :, None]), dim=1).sum(dim=1)
    return joint, marginals


def total_correlation(z: Tensor, mu: Tensor, sigma: Tensor, dataset_size: int,
                      estimator: str = "mws") -> Tensor:
    """The minibatch estimate of ``TC(q(z))``: the mean over the batch of
    ``log q(z_i) - sum_j log q(z_{i,j})`` (:func:`log_aggregate`), differentiable in ``z``,
    ``mu`` and ``sigma``. MWS carries the constant ``(d_z - 1) log N`` at ``M = N``."""
    joint, marginals = log_aggregate(z, mu, sigma, dataset_size, estimator)
    return (joint - marginals).mean()
