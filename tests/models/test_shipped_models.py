"""The shipped reference models: intact, described by their cards, and as the paper says."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import rcert
from rcert.attacks.latent import latent_attack
from rcert.attacks.objectives import Encoded
from rcert.engine.noise import STREAM_CHECK
from rcert.models.checkpoint import read_header
from rcert.settings import AttackConfig
from rcert.statistics.binomial import clopper_pearson_upper

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = ("vae-digits", "beta0.1-digits", "beta10-digits", "floor0.5-digits", "conv-dsprites",
         "tcvae1-dsprites", "tcvae8-dsprites", "seatbelt1-dsprites", "seatbelt8-dsprites",
         "dlgm8-dsprites")
#: The hierarchical models of Willetts et al. (docs/willetts.md), and their families.
HIERARCHICAL = {"seatbelt1-dsprites": "seatbelt", "seatbelt8-dsprites": "seatbelt",
                "dlgm8-dsprites": "dlgm"}


@pytest.mark.parametrize("name", NAMES)
def test_card_describes_its_checkpoint(name):
    path = MODELS / f"{name}.safetensors"
    card = json.loads((MODELS / f"{name}.json").read_text())
    header = read_header(path)
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["recommended_r"] == header["recommended_r"] > 0
    assert card["data"] == header["data"]
    assert card["architecture"] == header["model"]
    assert card["command"].startswith("rcert train ")
    assert f"--out {name}.safetensors" in card["command"]
    elbo = card["metrics"]["best_val_elbo"], card["metrics"]["test_elbo"]
    if card["architecture"]["likelihood"] == "gaussian":  # a density: any sign
        assert all(math.isfinite(v) for v in elbo)
    else:  # the Bernoulli log-likelihood of values in [0, 1] is at most 0
        assert max(elbo) < 0
    assert name in (MODELS / "regenerate.sh").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_certifies_its_default_data(name):
    model = rcert.load(MODELS / f"{name}.safetensors")
    data = rcert.load_data(rcert.data.specs.default_eval_spec(model.meta["data"])).subset(8)
    df = rcert.certify(model, data.x, r=model.meta["recommended_r"], n_samples=200)
    assert len(df) == 8
    assert (df.bound_certified <= df.bound_whitened).all()


def test_beta_orders_sigma_and_jacobian_as_in_the_paper():
    """Camuto et al. (2021) Fig 9 (c, d): larger beta, larger sigma and smaller ||J||_F."""
    x = rcert.load_data("digits:test").subset(60).x
    stats = {}
    for name in ("beta0.1-digits", "vae-digits", "beta10-digits"):
        df = rcert.certify(rcert.load(MODELS / f"{name}.safetensors"), x, r=1.5, n_samples=200)
        stats[name] = (df.sigma_min.mean(), df.jacobian_fro.mean(), df.bound_certified.mean())
    low, mid, high = (stats[n] for n in ("beta0.1-digits", "vae-digits", "beta10-digits"))
    assert low[0] < mid[0] < high[0]
    assert low[1] > mid[1] > high[1]
    assert low[2] < mid[2] < high[2]


def test_sigma_floor_holds():
    model = rcert.load(MODELS / "floor0.5-digits.safetensors")
    with torch.no_grad():
        _, sigma = model.encode(rcert.load_data("digits:test").x)
    assert float(sigma.min()) >= 0.5


@pytest.mark.parametrize("name", HIERARCHICAL)
def test_hierarchical_models_are_what_their_cards_say(name):
    model = rcert.load(MODELS / f"{name}.safetensors")
    card = json.loads((MODELS / f"{name}.json").read_text())
    assert card["training"]["family"] == HIERARCHICAL[name]
    assert model.traits.stochastic_layers == 3
    # The shipped ones are certifiable: the perturbation reaches the first layer only.
    assert model.traits.perturbation_reaches_first_layer_only


def _data_for(name: str) -> rcert.data.Dataset:
    model_data = json.loads((MODELS / f"{name}.json").read_text())["data"]
    return rcert.load_data(rcert.data.specs.default_eval_spec(model_data))


@pytest.mark.parametrize("name", ("vae-digits", "floor0.5-digits", "beta0.1-digits",
                                  *HIERARCHICAL))
def test_latent_attack_never_beats_the_latent_margin(name):
    """SPEC section 5: no shift of the latent mean below latent_margin brings P(robust) to m.

    The certificate is exact (no linearisation), so an attack on the latent mean at 90% of
    the certified radius must fail on fresh draws, up to Monte Carlo error.
    """
    model = rcert.load(MODELS / f"{name}.safetensors")
    # The 32x32 convolutional models cost 100x the digits MLPs per decoder call.
    small = name in HIERARCHICAL
    data = _data_for(name).subset(8 if small else 24)
    r = model.meta["recommended_r"]
    df = rcert.certify(model, data.x, r=r, n_samples=1000, alpha=0.001)
    keep = (~df.abstain).to_numpy().copy()
    x = data.x[torch.as_tensor(keep)]
    index = torch.as_tensor(data.index[keep])
    radius = 0.9 * torch.as_tensor(df.latent_margin.to_numpy()[keep], dtype=torch.float32)
    shift = latent_attack(model, x, radius, r=r, index=index, seed=0,
                          config=AttackConfig(restarts=2 if small else 3,
                                              steps=20 if small else 40,
                                              n_noise=32 if small else 64))
    assert (shift.norm(dim=1) <= radius * (1 + 1e-5)).all()
    clean = Encoded.of(model, x)
    n = 2000
    dist = rcert.engine.montecarlo.distortion_norms(
        model, clean.mu + shift, clean.sigma, index=index, n_samples=n, seed=0,
        max_rows=65536, stream=STREAM_CHECK, reference=clean.reference)
    k = (dist <= r).sum(dim=1).numpy()
    # Beating the certificate would need P(robust) <= m at the shift; fresh draws say no.
    assert (clopper_pearson_upper(k, n, 0.001) > 0.5).all()
    # The attack does push: the shifted probability is below the clean one on average.
    assert (k / n).mean() < df.p_hat.to_numpy()[keep].mean()
