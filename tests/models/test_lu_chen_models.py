"""The shipped Lu & Chen models on digits (models/lu-chen.sh, docs/latent.md): intact,
described by their cards, of the family they say, and attackable in latent space."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

import rcert
from rcert.models.checkpoint import read_header
from rcert.settings import AdversarialTrainingConfig, as_dict

MODELS = Path(__file__).resolve().parents[2] / "models"
FAMILIES = {"kld-digits": "vae", "mmd-digits": "mmd-vae", "swt-digits": "swt-vae",
            "mmddae-digits": "mmd-dae", "swtdae-digits": "swt-dae",
            **{f"tcvae{b}-digits": "beta-tcvae" for b in (1, 5, 10, 30, 50)},
            "lat-digits": "vae"}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_card_describes_its_checkpoint_and_family(name):
    path = MODELS / f"{name}.safetensors"
    card = json.loads((MODELS / f"{name}.json").read_text())
    header = read_header(path)
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["architecture"] == header["model"]
    assert card["training"]["family"] == FAMILIES[name]
    assert card["architecture"]["latent_dim"] == 10
    assert card["architecture"]["likelihood"] == "gaussian"
    assert f"--out {name}.safetensors" in card["command"]
    assert re.sub(r"\d+$", "", name.split("-")[0]) in (MODELS / "lu-chen.sh").read_text()
    model = rcert.load(path)
    deterministic = FAMILIES[name].endswith("dae")
    assert model.traits.stochastic is not deterministic
    assert (card["recommended_r"] is None) is deterministic


def test_beta_one_tcvae_is_the_kld_vae_bit_for_bit():
    """beta = 1 makes the beta-TCVAE objective the ELBO exactly, so the same seed trains the
    same weights."""
    a = rcert.load(MODELS / "kld-digits.safetensors").state_dict()
    b = rcert.load(MODELS / "tcvae1-digits.safetensors").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_defended_model_records_algorithm_1():
    card = json.loads((MODELS / "lat-digits.json").read_text())
    record = card["adversarial_training"]
    assert record["algorithm"].startswith("Lu & Chen")
    expected = as_dict(AdversarialTrainingConfig(ssim_window=7))
    assert {k: v for k, v in record.items() if k != "algorithm"} == expected
    assert "adversarial_training" not in json.loads((MODELS / "kld-digits.json").read_text())


@pytest.mark.parametrize("name", ("kld-digits", "mmddae-digits"))
def test_a_latent_attack_degrades_reconstructions_with_the_budget(name):
    model = rcert.load(MODELS / f"{name}.safetensors")
    data = rcert.load_data("digits:test").subset(16)
    df = rcert.latent_attack(model, data.x, epsilons=(0.0, 0.5, 1.0),
                             fidelity=rcert.FidelityConfig(ssim_window=7),
                             index=data.index, run=rcert.RunConfig(progress=False))
    ssim = df.groupby("epsilon")["ssim"].mean().to_numpy()
    assert ssim[0] == pytest.approx(1.0) and ssim[0] > ssim[1] > ssim[2]


def test_the_papers_mnist_architecture_builds_without_batch_norm():
    """Lu & Chen's MNIST encoder: four kernel-4 stride-2 convolutions of 32, 64, 128 and 64
    channels with LeakyReLU (slope 0.2), d_z = 10; rcert leaves out its BatchNorm, which
    couples the inputs of a batch."""
    model = rcert.build_model("conv", input_shape=(1, 28, 28), latent_dim=10,
                              channels=(32, 64, 128, 64), activation="leaky_relu",
                              likelihood="gaussian", sigma_mode="none")
    convs = [m for m in model.encoder_convs.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in model.modules())
    x = torch.rand(3, 1, 28, 28)
    assert model.decode(model.encode(x)[0]).shape == x.shape
