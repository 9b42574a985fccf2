"""Training objectives of the VAE families (the beta-ELBO)."""

from __future__ import annotations

import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.models.nets import VAE
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
    if not isinstance(model, VAE):
        raise RcertError(
            f"elbo needs an rcert architecture (rcert.build_model), got {type(model).__name__}"
        )
    beta = check_beta(beta)
    mu, sigma = model.encode(x)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + sigma * eps
    kl = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(1)
    return model.log_likelihood(x, z) - beta * kl
