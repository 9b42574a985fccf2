"""The entry points hand the user's model back as it came (``rcert.validate.borrow``): every
submodule's train/eval flag, every parameter's ``requires_grad``, its device, and BatchNorm
running statistics untouched, also when the run fails half-way."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyMLPVAE
from torch import nn

import rcert
from rcert.attacks.damage import attack
from rcert.engine import certify as engine
from rcert.errors import RcertError
from rcert.evaluation.curves import curve
from rcert.evaluation.empirical import empirical_margin
from rcert.settings import AttackConfig, RunConfig
from rcert.validate import borrow

SMALL_ATTACK = AttackConfig(restarts=1, steps=2, n_noise=4, n_check=20)


class BatchNormVAE(TinyMLPVAE):
    """TinyMLPVAE with a BatchNorm after its hidden layer; in eval mode it uses its running
    statistics, so it passes the batch-coupling check."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(16)

    def encode(self, x):
        h = self.bn(self.enc(x))
        return self.mu_head(h), nn.functional.softplus(self.sigma_head(h)) + 0.05


class NegativeSigmaAfterTheProbe(BatchNormVAE):
    """Negative sigma for inputs whose first feature is below 0.05: none of the probe's."""

    def encode(self, x):
        mu, sigma = super().encode(x)
        return mu, torch.where(x[:, :1] < 0.05, -sigma, sigma)


def _in_training(model: BatchNormVAE) -> BatchNormVAE:
    """The model as a user in mid-training holds it: train mode with running statistics of
    its own, one submodule in eval mode, one parameter frozen."""
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model.encode(_x(16, seed=10 + seed))
    model.dec.eval()
    model.mu_head.bias.requires_grad_(False)
    return model


def _state(model: nn.Module) -> dict:
    return {"modes": [(name, m.training) for name, m in model.named_modules()],
            "grads": [(name, p.requires_grad) for name, p in model.named_parameters()],
            "devices": {t.device for t in [*model.parameters(), *model.buffers()]},
            "tensors": {k: v.clone() for k, v in model.state_dict().items()}}


def _assert_same(before: dict, model: nn.Module) -> None:
    after = _state(model)
    assert after["modes"] == before["modes"]
    assert after["grads"] == before["grads"]
    assert after["devices"] == before["devices"]
    assert after["tensors"].keys() == before["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(after["tensors"][key], value), key


def _x(n: int = 6, d: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


ENTRY_POINTS = {
    "api.certify": lambda m, x: rcert.certify(m, x, r=1.0, n_samples=20),
    "api.certify+attack": lambda m, x: rcert.certify(m, x, r=1.0, n_samples=20,
                                                     attack=SMALL_ATTACK),
    "engine.certify": lambda m, x: engine.certify(m, x, r=1.0, n_samples=20),
    "attack": lambda m, x: attack(m, x, SMALL_ATTACK, L=0.5),
    "empirical_margin": lambda m, x: empirical_margin(m, x, r=1.0, attack=SMALL_ATTACK),
    "curve": lambda m, x: curve(m, x, r=1.0, radii=[0.0, 0.5], n_samples=20),
}


@pytest.mark.parametrize("run", ENTRY_POINTS.values(), ids=ENTRY_POINTS)
def test_the_model_comes_back_as_it_came(run):
    model = _in_training(BatchNormVAE())
    before = _state(model)
    assert model.training and not model.dec.training
    run(model, _x())
    _assert_same(before, model)


@pytest.mark.parametrize("run", ENTRY_POINTS.values(), ids=ENTRY_POINTS)
def test_a_failed_model_check_hands_the_model_back_too(run):
    model = _in_training(BatchNormVAE())
    model.data_range = None
    before = _state(model)
    with pytest.raises(RcertError, match="model check failed: no-data-range"):
        run(model, _x())
    _assert_same(before, model)


def test_an_error_in_the_middle_of_certify_hands_the_model_back():
    model = _in_training(NegativeSigmaAfterTheProbe())
    x = 0.5 + 0.5 * _x(10)
    x[9, 0] = 0.0  # past the probe of 8: the checks pass, the certificate refuses
    before = _state(model)
    with pytest.raises(RcertError, match=r"sigma <= 0 or non-finite .* for input 9"):
        rcert.certify(model, x, r=1.0, n_samples=20)
    _assert_same(before, model)


def test_borrow_restores_on_any_exception_and_refuses_non_modules():
    model = _in_training(BatchNormVAE())
    before = _state(model)
    with pytest.raises(KeyError), borrow(model):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        raise KeyError("boom")
    _assert_same(before, model)
    with pytest.raises(RcertError, match=r"must be a torch\.nn\.Module"):
        rcert.certify(object(), _x(), r=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_model_run_on_the_gpu_comes_back_to_the_cpu():
    model = _in_training(BatchNormVAE())
    before = _state(model)
    rcert.certify(model, _x(), r=1.0, n_samples=20, run=RunConfig(device="cuda"))
    _assert_same(before, model)
