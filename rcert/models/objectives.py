"""Training objectives of the VAE families: the beta-ELBO and the beta-TCVAE objective."""

from __future__ import annotations

import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.models.nets import VAE
from rcert.models.total_correlation import log_aggregate
from rcert.settings import check_beta


def elbo(
    model: VAE, x: Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Per-input beta-ELBO with one reparameterised sample [C Sec 2.1, 2.3].

    ``ELBO_beta(x) = log p(x | z) - beta * KL(q(z|x) || N(0, I))`` with
    ``z = mu(x) + sigma(x) * eps``, ``eps ~ N(0, I)`` (the reparameterisation trick; the
    estimator is Kingma & Welling 2014, Eq. 10) and the closed-form Gaussian KL (ibid.,
    Appendix B)::

        KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

    ``beta = 1`` is the true ELBO, a lower bound on ``log p(x)``; other values give the
    beta-VAE objective (Higgins et al. 2017).

    Parameters
    ----------
    model
        An rcert architecture (needs ``log_likelihood``).
    x
        ``(B, *input_shape)`` inputs.
    beta
        Weight of the KL term, finite and > 0 (:func:`rcert.settings.check_beta`).
    generator
        Source of ``eps``; the global RNG when ``None``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` ELBO per input, in nats.
    """
    beta = check_beta(beta)
    _, _, z, kl = _sample(model, x, generator, "elbo")
    return model.log_likelihood(x, z) - beta * kl


def _sample(model: VAE, x: Tensor, generator: torch.Generator | None, objective: str
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``mu``, ``sigma``, one reparameterised ``z`` and the closed-form ``KL(q(z|x) || p(z))``
    per input: what every objective here starts from."""
    if not isinstance(model, VAE):
        raise RcertError(f"{objective} needs an rcert architecture (rcert.build_model), got "
                         f"{type(model).__name__}")
    mu, sigma = model.encode(x)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + sigma * eps
    kl = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(1)
    return mu, sigma, z, kl


def beta_tc_elbo(
    model: VAE, x: Tensor, *, beta: float, dataset_size: int, estimator: str = "mws",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-input beta-TCVAE objective, the per-datapoint form of Willetts et al. (spec 2.3)::

        L_i = ELBO(x_i) - (beta - 1) * [log q(z_i) - sum_j log q(z_ij)]

    with the ELBO of :func:`elbo` (``beta = 1``, the same sample ``z_i``) and the bracket the
    minibatch estimate of the total correlation at ``z_i``
    (:func:`rcert.models.total_correlation.log_aggregate`, MWS by default), so the batch
    mean is ``mean ELBO - (beta - 1) * TC``. One unit of TC is already inside the KL, hence
    ``beta - 1``; ``beta = 1`` gives the ELBO exactly (spec C11 c). The paper uses
    ``beta >= 1``; any finite ``beta > 0`` is accepted.

    Parameters
    ----------
    x
        ``(M, *input_shape)`` inputs, a minibatch of at least 2 drawn from the training set.
    dataset_size
        ``N``, the training set's size, which the estimators weight by.
    estimator
        ``"mws"`` (the paper's) or ``"mss"``.
    """
    beta = check_beta(beta)
    mu, sigma, z, kl = _sample(model, x, generator, "beta_tc_elbo")
    joint, marginals = log_aggregate(z, mu, sigma, dataset_size, estimator)
    return model.log_likelihood(x, z) - kl - (beta - 1.0) * (joint - marginals)
