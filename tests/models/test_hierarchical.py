"""Hierarchical VAEs (Seatbelt-VAE, DLGM) against independent references: torch.distributions
for the ELBO, the exact mixture for the hierarchical MWS, the flat VAEs for L = 1 (spec C11),
and direct ancestral sampling for the engine's Monte Carlo (SPEC section 8)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from torch import distributions as D

import rcert
from rcert.engine.certificates import columns_for
from rcert.errors import RcertError
from rcert.models.architectures import build_model
from rcert.models.objectives import beta_tc_elbo, elbo, free_bits_kl
from rcert.models.total_correlation import total_correlation
from rcert.models.training import check_family, family_architecture
from rcert.settings import TrainConfig

SHAPE = (1, 6, 6)


def _model(seed=0, *, upper=(3, 2), inference="input", likelihood_on="all", base="mlp",
           likelihood="bernoulli", **kw):
    widths = {"hidden": (16,)} if base == "mlp" else {"channels": (4, 8)}
    torch.manual_seed(seed)
    return build_model("hierarchical", input_shape=SHAPE, latent_dim=4, upper_dims=upper,
                       base=base, inference=inference, likelihood_on=likelihood_on,
                       conditional_hidden=(8,), likelihood=likelihood,
                       **widths, **kw).eval()


def _x(n=6, seed=1):
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("base", ["mlp", "conv"])
def test_one_layer_is_the_flat_vae_bit_for_bit(base):
    # C11 (d): L = 1 is the beta-TCVAE, with the same weights the same numbers.
    flat = build_model(base, input_shape=SHAPE, latent_dim=4,
                       **({"hidden": (16,)} if base == "mlp" else {"channels": (4, 8)}))
    hier = _model(upper=(), base=base)
    hier.load_state_dict(flat.state_dict(), strict=True)
    x = _x()
    for a, b in zip(flat.encode(x), hier.encode(x), strict=True):
        assert torch.equal(a, b)
    mu = flat.encode(x)[0]
    assert torch.equal(flat.decode(mu), hier.decode(mu))
    for fn in (lambda m, g: elbo(m, x, generator=g),
               lambda m, g: beta_tc_elbo(m, x, beta=4.0, dataset_size=50, generator=g)):
        assert torch.equal(fn(flat, torch.Generator().manual_seed(3)),
                           fn(hier, torch.Generator().manual_seed(3)))


def _reference_elbo(model, x, seed):
    """The same one-sample ELBO with torch.distributions, the noise drawn in the model's order."""
    g = torch.Generator().manual_seed(seed)
    h = model.features(x)
    mu, sigma = model.encode(x)
    zs, log_q = [], []
    for i in range(len(model.dims)):
        if i:
            mu, sigma = model.conditional(i - 1, zs[-1], h)
        q = D.Normal(mu, sigma)
        zs.append(mu + sigma * torch.randn(mu.shape, generator=g))
        log_q.append(q.log_prob(zs[-1]).sum(1))
        top = q
    kls = []
    for i in range(len(model.upper_dims)):
        pm, ps = model.p_nets[i](zs[i + 1]).chunk(2, dim=1)
        prior = D.Normal(pm, torch.nn.functional.softplus(ps) + 1e-4)
        kls.append(log_q[i] - prior.log_prob(zs[i]).sum(1))
    kls.append(D.kl_divergence(top, D.Normal(0.0, 1.0)).sum(1))
    inp = torch.cat(zs, 1) if model.likelihood_on == "all" else zs[0]
    logits = model.decoder(inp).reshape(x.shape)
    # Grey values: x log p + (1 - x) log(1 - p), the continuous relaxation rcert trains on.
    ll = (x * D.Bernoulli(logits=logits).log_prob(torch.ones_like(x))
          + (1 - x) * D.Bernoulli(logits=logits).log_prob(torch.zeros_like(x))).flatten(1).sum(1)
    return ll, torch.stack(kls)


@pytest.mark.parametrize(("inference", "likelihood_on"),
                         [("input", "all"), ("chain", "all"), ("input", "first")])
def test_elbo_terms_match_torch_distributions(inference, likelihood_on):
    model = _model(inference=inference, likelihood_on=likelihood_on)
    x = _x()
    terms = model.elbo_terms(x, torch.Generator().manual_seed(5))
    ll, kl = _reference_elbo(model, x, 5)
    torch.testing.assert_close(terms.log_likelihood, ll, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-4)
    assert terms.kl.shape == (3, 6)


def test_beta_one_is_the_hierarchical_elbo_exactly():
    # C11 (c) for the Seatbelt-VAE: the TC term vanishes at beta = 1.
    model, x = _model(), _x(8)
    a = elbo(model, x, generator=torch.Generator().manual_seed(2))
    b = beta_tc_elbo(model, x, beta=1.0, dataset_size=100, generator=torch.Generator()
                     .manual_seed(2))
    assert torch.equal(a, b)


def _exact_mixture_tc(z, mu, sigma) -> float:
    z, mu, sigma = (t.detach().double().numpy() for t in (z, mu, sigma))
    n = len(z)
    dens = stats.norm.logpdf(z[:, None, :], loc=mu[None], scale=sigma[None])
    joint = special.logsumexp(dens.sum(axis=2), axis=1) - math.log(n)
    marginals = (special.logsumexp(dens, axis=1) - math.log(n)).sum(axis=1)
    return float(np.mean(joint - marginals))


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 24), seed=st.integers(0, 10**6))
def test_hierarchical_mws_on_the_whole_dataset_is_the_exact_tc_plus_a_constant(n, seed):
    # C11 (a) on the top layer (spec 2.7): each member's conditional q(z^L | z^{L-1}_k, x_k)
    # is one component of the aggregate posterior's mixture.
    model = _model(seed % 7)
    with torch.no_grad():
        z, mu, sigma = (t.double() for t in model.elbo_terms(
            _x(n, seed), torch.Generator().manual_seed(seed)).top)
    d = z.shape[1]
    mws = float(total_correlation(z, mu, sigma, dataset_size=n))
    assert mws == pytest.approx(_exact_mixture_tc(z, mu, sigma) + (d - 1) * math.log(n),
                                rel=1e-9, abs=1e-9)


def test_free_bits_keep_the_batch_mean_and_stop_the_gradient_below_the_threshold():
    kl = torch.tensor([[0.1, 0.3], [2.0, 4.0]], requires_grad=True)
    out = free_bits_kl(kl, 0.5)
    torch.testing.assert_close(out.mean(1), torch.tensor([0.5, 3.0]))
    out.sum().backward()
    assert torch.equal(kl.grad, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert free_bits_kl(kl, 0.0) is kl
    with pytest.raises(RcertError, match="free_bits must be a finite number >= 0"):
        free_bits_kl(kl, -1.0)


def test_codes_cover_every_layer_and_the_chain_of_means_is_the_reference():
    model, x = _model(), _x()
    mu, _ = model.encode(x)
    ctx = model.context(x)
    assert model.upper_noise_dim == 5
    zero = torch.cat((mu, torch.zeros(6, 5)), 1)
    assert torch.equal(model.decode(mu, context=ctx), model.decode(zero, context=ctx))
    other = torch.cat((mu, torch.ones(6, 5)), 1)
    assert not torch.equal(model.decode(other, context=ctx), model.decode(mu, context=ctx))
    with pytest.raises(RcertError, match=r"pass context=model\.context"):
        model.decode(mu)
    with pytest.raises(RcertError, match=r"expects \(batch, 4 or 9\)"):
        model.decode(torch.zeros(6, 7), context=ctx)


def test_the_dlgm_reconstruction_sees_the_first_layer_only():
    model = _model(likelihood_on="first")
    assert model.upper_noise_dim == 0 and model.context(_x()) is None
    assert not model.traits.input_feeds_upper_layers
    assert model.traits.stochastic_layers == 3


@pytest.mark.parametrize(("inference", "likelihood_on", "first_order"), [
    ("chain", "all", True), ("input", "all", False), ("input", "first", True)])
def test_certificates_follow_the_traits(inference, likelihood_on, first_order):
    cols = columns_for(_model(inference=inference, likelihood_on=likelihood_on).traits)
    assert ("bound_whitened" in cols) == first_order
    assert ("latent_margin" in cols) == first_order
    assert {"p_lower", "r_min", "sigma_min"} <= set(cols)


@pytest.mark.parametrize("inference", ["chain", "input"])
def test_monte_carlo_draws_every_layer_as_ancestral_sampling_does(inference):
    model, x = _model(4, inference=inference, likelihood="gaussian"), _x(3)
    df = rcert.certify(model, x, r=0.6, n_samples=4000, seed=1,
                       run=rcert.RunConfig(allow=("decoder-range",)))
    with torch.no_grad():
        mu, sigma = model.encode(x)
        h = model.features(x)
        ref = model.decode(mu, context=model.context(x)).flatten(1)
        g = torch.Generator().manual_seed(9)
        n = 20000
        rep = lambda t: t.repeat_interleave(n, 0)  # noqa: E731
        z1 = rep(mu) + rep(sigma) * torch.randn(3 * n, 4, generator=g)
        zs = [z1]
        for i in range(2):
            m, s = model.conditional(i, zs[-1], rep(h))
            zs.append(m + s * torch.randn(m.shape, generator=g))
        out = model._decode_layers(zs).flatten(1)
        p = ((out - rep(ref)).norm(dim=1) <= 0.6).reshape(3, n).double().mean(1).numpy()
    se = np.sqrt(p * (1 - p) / 4000 + p * (1 - p) / n)
    assert (np.abs(df.p_hat.to_numpy() - p) < 4 * se + 1e-3).all()
    assert ((p > 0.02) & (p < 0.98)).any()  # the check is not trivially 0 or 1


def test_family_and_layers_must_agree():
    with pytest.raises(RcertError, match="family vae trains one-layer VAEs"):
        check_family(_model(), "vae")
    with pytest.raises(RcertError, match="family dlgm trains hierarchical VAEs with "
                                         "likelihood_on='first'"):
        check_family(_model(), "dlgm")
    with pytest.raises(RcertError, match="family seatbelt trains hierarchical"):
        check_family(build_model("mlp", input_shape=SHAPE, latent_dim=2), "seatbelt")
    check_family(_model(upper=()), "beta-tcvae")
    with pytest.raises(RcertError, match="upper_dims only apply to the hierarchical"):
        family_architecture("vae", "mlp", {"upper_dims": (2,)})
    assert family_architecture("dlgm", "conv", {}) == (
        "hierarchical", {"base": "conv", "likelihood_on": "first"})


@pytest.mark.parametrize(("kw", "message"), [
    ({"upper_dims": (3, 0)}, r"upper_dims"),
    ({"upper_dims": (1,) * 8}, r"at most 8 stochastic layers, got 9"),
    ({"inference": "both"}, r"unknown inference 'both'"),
    ({"likelihood_on": "top"}, r"unknown likelihood_on 'top'"),
    ({"channels": (4,)}, r"channels does not apply to base 'mlp'"),
    ({"data_range": (-1, 1)}, r"a bernoulli likelihood needs data in \[0, 1\]"),
])
def test_impossible_layer_configurations_are_one_line(kw, message):
    base = {"upper_dims": (3,), "hidden": (8,)}
    with pytest.raises(RcertError, match=message):
        build_model("hierarchical", input_shape=SHAPE, latent_dim=4, **{**base, **kw})


def test_fit_trains_a_seatbelt_vae_deterministically():
    x = rcert.load_data("digits:train").subset(96).x
    x = x.reshape(len(x), 1, 8, 8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("hierarchical", input_shape=(1, 8, 8), latent_dim=4,
                            upper_dims=(2,), hidden=(32,), conditional_hidden=(16,))
        config = TrainConfig(family="seatbelt", beta=4.0, free_bits=0.1, epochs=3,
                             batch_size=32)
        h = rcert.fit(model, x[:80], x[80:], config, progress=False)
        runs.append((h, model.state_dict()))
    assert runs[0][0]["history"] == runs[1][0]["history"]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key])
    assert math.isfinite(runs[0][0]["best_val_elbo"])
