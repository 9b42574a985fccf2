"""Training objectives of the VAE families: the beta-ELBO, and the beta-TCVAE objective (also
the Seatbelt-VAE's and the TC-penalised DLGM's, on their top layer), with free bits; the
MMD and Shapiro-Wilk objectives of Lu & Chen, for VAEs and deterministic autoencoders."""

from __future__ import annotations

import torch
from torch import Tensor

from rcert.errors import RcertError
from rcert.models.nets import VAE, ElboTerms
from rcert.models.regularisers import mmd_squared, swt_penalty
from rcert.models.total_correlation import log_aggregate
from rcert.settings import check_beta
from rcert.values import nonnegative_float


def elbo(
    model: VAE, x: Tensor, *, beta: float = 1.0, free_bits: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-input beta-ELBO with one reparameterised sample [C Sec 2.1, 2.3].

    ``ELBO_beta(x) = log p(x | z) - beta * KL`` with ``z = mu(x) + sigma(x) * eps``,
    ``eps ~ N(0, I)`` (the reparameterisation trick; the estimator is Kingma & Welling 2014,
    Eq. 10) and the KL of :meth:`rcert.models.nets.VAE.elbo_terms`: in closed form for one
    layer, ``1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)``, summed over the layers
    of a hierarchical VAE (:class:`rcert.models.hierarchical.HierarchicalVAE`).

    ``beta = 1`` is the true ELBO, a lower bound on ``log p(x)``; other values give the
    beta-VAE objective (Higgins et al. 2017).

    Parameters
    ----------
    model
        An rcert architecture (needs ``elbo_terms``).
    x
        ``(B, *input_shape)`` inputs.
    beta
        Weight of the KL term, finite and > 0 (:func:`rcert.settings.check_beta`).
    free_bits
        Nats per layer below which a layer's batch-mean KL is not penalised
        (:func:`free_bits_kl`); 0 (the default) is the plain objective.
    generator
        Source of ``eps``; the global RNG when ``None``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` ELBO per input, in nats.
    """
    beta = check_beta(beta)
    terms = _terms(model, x, generator, "elbo", needs_sigma="the KL")
    return terms.log_likelihood - beta * free_bits_kl(terms.kl, free_bits).sum(0)


def free_bits_kl(kl: Tensor, threshold: float) -> Tensor:
    """The KL terms ``(L, B)`` with free bits (Kingma et al. 2016, Eq. 15): per layer, the
    batch mean ``K_l`` is replaced by ``max(threshold, K_l)``.

    Each input's value is shifted by ``max(threshold, K_l) - K_l``, so the batch mean of
    the result is the free-bits objective and a layer whose mean KL is below the threshold
    gets no gradient from it. ``threshold = 0`` returns ``kl`` unchanged.
    """
    threshold = nonnegative_float(threshold, "free_bits")
    if threshold == 0.0:
        return kl
    mean = kl.mean(dim=1, keepdim=True)
    return kl + (mean.clamp_min(threshold) - mean)


def _terms(model: VAE, x: Tensor, generator: torch.Generator | None, objective: str,
           needs_sigma: str | None = None) -> ElboTerms:
    """One sample's ELBO terms of ``model``: what every objective here starts from.

    ``needs_sigma`` names the term of the objective that is a function of the encoder's
    Gaussian (the KL, the total correlation): a deterministic autoencoder has none, so the
    objective is refused for it rather than computed with ``sigma = 0`` (log 0)."""
    if not isinstance(model, VAE):
        raise RcertError(f"{objective} needs an rcert architecture (rcert.build_model), got "
                         f"{type(model).__name__}")
    if needs_sigma is not None and model.deterministic:
        raise RcertError(f"{needs_sigma} needs sigma; a deterministic autoencoder trains with "
                         f"family mmd-dae or swt-dae")
    return model.elbo_terms(x, generator)


def beta_tc_elbo(
    model: VAE, x: Tensor, *, beta: float, dataset_size: int, estimator: str = "mws",
    free_bits: float = 0.0, generator: torch.Generator | None = None,
) -> Tensor:
    """Per-input beta-TCVAE and Seatbelt-VAE objective (spec sections 2.3 and 2.6)::

        L_i = ELBO(x_i) - (beta - 1) * [log q(z^L_i) - sum_j log q(z^L_ij)]

    with the ELBO of :func:`elbo` (``beta = 1``, the same sample) and the bracket the
    minibatch estimate of the total correlation of the top layer at its sample ``z^L_i``
    (:func:`rcert.models.total_correlation.log_aggregate`, MWS by default; for a hierarchical
    VAE, with each batch member's conditional ``q(z^L | z^{L-1}_k[, x_k])``: the hierarchical
    MWS of spec section 2.7). The batch mean is ``mean ELBO - (beta - 1) * TC``. One unit of
    TC is already inside the KL, hence ``beta - 1``; ``beta = 1`` gives the ELBO exactly
    (spec C11 c), and a one-layer Seatbelt-VAE the beta-TCVAE (C11 d). The paper uses
    ``beta >= 1``; any finite ``beta > 0`` is accepted.

    Parameters
    ----------
    x
        ``(M, *input_shape)`` inputs, a minibatch of at least 2 drawn from the training set.
    dataset_size
        ``N``, the training set's size, which the estimators weight by.
    estimator
        ``"mws"`` (the paper's) or ``"mss"``.
    free_bits
        As in :func:`elbo`, per layer.
    """
    beta = check_beta(beta)
    terms = _terms(model, x, generator, "beta_tc_elbo", needs_sigma="the total correlation")
    joint, marginals = log_aggregate(*terms.top, dataset_size, estimator)
    kl = free_bits_kl(terms.kl, free_bits).sum(0)
    return terms.log_likelihood - kl - (beta - 1.0) * (joint - marginals)


#: The penalty of each family :func:`regularised_elbo` trains: a DAE's is its VAE's.
REGULARISED = {"mmd-vae": "mmd", "swt-vae": "swt", "mmd-dae": "mmd", "swt-dae": "swt"}


def regularised_elbo(model: VAE, x: Tensor, *, family: str, beta: float = 1.0,
                     kernel: str = "rbf", generator: torch.Generator | None = None) -> Tensor:
    """Per-input objective of the MMD-VAE and the SWT-VAE (Lu & Chen 2023, Eqs 2-3), and of
    their deterministic autoencoders, the MMD-DAE and the SWT-DAE (section 2.2: "the same
    objective as the corresponding VAE"): the log-likelihood of one code ``z`` minus
    ``beta`` times a batch penalty on the codes, in place of the KL::

        mmd-vae, mmd-dae:  log p(x_i | z_i) - beta * MMD^2(z, z_s),  z_s ~ N(0, I)
        swt-vae, swt-dae:  log p(x_i | z_i) - beta * (1 - mean_j W_j(z))

    (:mod:`rcert.models.regularisers`), ``z`` a reparameterised sample of a VAE's encoder
    or the code ``f_enc(x)`` of a deterministic one (:meth:`rcert.models.nets.VAE.elbo_terms`);
    ``z_s`` as many prior draws as codes. The penalty is the batch's, so the batch mean is
    ``mean log p - beta * penalty``. The prior draws come from ``generator`` after the
    encoder noise (a DAE draws none). Which family fits which encoder is
    :func:`rcert.models.training.check_family`'s to say.
    """
    beta = check_beta(beta)
    if family not in REGULARISED:
        raise RcertError(f"regularised_elbo trains {', '.join(REGULARISED)}, not {family!r}")
    terms = _terms(model, x, generator, family)
    z = terms.top[0]
    if REGULARISED[family] == "mmd":
        prior = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        penalty = mmd_squared(z, prior, kernel)
    else:
        penalty = swt_penalty(z)
    return terms.log_likelihood - beta * penalty
