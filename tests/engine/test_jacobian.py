import numpy as np
import pytest
import torch
from torch import nn

from rcert.engine.jacobian import encoder_jacobian, jacobian_norms
from rcert.errors import RcertError


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform test inputs, drawn on the CPU from a seeded generator."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_linear_encoder_jacobian_is_exact(linear_vae, device):
    x = _rand(7, 12)
    out = encoder_jacobian(linear_vae.to(device), x.to(device))
    assert out.jacobian.device.type == device.type
    jac, mu, sigma = out.jacobian.cpu(), out.mu.cpu(), out.sigma.cpu()
    a = linear_vae.A.detach().cpu()
    assert jac.shape == (7, 3, 12)
    assert torch.allclose(jac, a.expand(7, 3, 12))
    assert torch.allclose(mu, x @ a.T, atol=1e-6)
    assert torch.allclose(sigma, torch.full((7, 3), 0.5))


def test_matches_autograd_per_input(tiny_vae, device):
    x = _rand(5, 10)
    out = encoder_jacobian(tiny_vae.to(device), x.to(device))
    tiny_vae.cpu()  # the brute force runs on the CPU
    for i in range(5):
        brute = torch.autograd.functional.jacobian(lambda v: tiny_vae.encode(v[None])[0][0], x[i])
        assert torch.allclose(out.jacobian[i].cpu(), brute, atol=1e-6)


class ConvEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            self.conv = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(4 * 4 * 4, 6))

    def encode(self, x):
        h = self.conv(x)
        return h[:, :3], torch.exp(h[:, 3:])


def test_image_inputs_are_flattened_in_input_order(device):
    model = ConvEncoder()
    x = _rand(3, 2, 8, 8, seed=1)
    out = encoder_jacobian(model.to(device), x.to(device))
    assert out.jacobian.shape == (3, 3, 128)
    model.cpu()
    brute = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0][0], x[1])
    # cuDNN may pick another convolution algorithm than the CPU: agreement to float rounding.
    assert torch.allclose(out.jacobian[1].cpu(), brute.reshape(3, 128), atol=1e-5)


def test_norms_match_numpy(device):
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(4, 3, 9))
    sigma = rng.uniform(0.1, 1.0, size=(4, 3))
    norms = jacobian_norms(torch.tensor(jac, device=device), torch.tensor(sigma, device=device))
    norms = {k: v.cpu() for k, v in norms.items()}
    for i in range(4):
        assert np.isclose(norms["jacobian_fro"][i], np.linalg.norm(jac[i]))
        assert np.isclose(norms["jacobian_spec"][i], np.linalg.norm(jac[i], 2))
        assert np.isclose(norms["jacobian_whitened"][i],
                          np.linalg.norm(jac[i] / sigma[i][:, None], 2))


def test_zero_jacobian_gives_zero_norms(device):
    norms = jacobian_norms(torch.zeros(2, 3, 5, device=device), torch.ones(2, 3, device=device))
    for value in norms.values():
        assert torch.equal(value.cpu(), torch.zeros(2, dtype=torch.float64))


class _NumpyStep(nn.Module):
    """An encoder with a numpy step: torch.func cannot differentiate it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def encode(self, x):
        h = torch.from_numpy(np.tanh(x.detach().cpu().numpy())).float()
        mu = self.lin(h)
        return mu, torch.full_like(mu, 0.5)


def test_an_encoder_torch_func_cannot_differentiate_is_one_line_not_a_bug():
    with pytest.raises(RcertError, match=r"^the exact Jacobian of encode cannot be computed "
                                         r"with torch\.func \(.*\); keep encode in "
                                         r"differentiable torch operations"):
        encoder_jacobian(_NumpyStep(), torch.rand(3, 4))


def test_an_allocation_failure_is_left_to_the_guard(monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "8000000000000 bytes")

    monkeypatch.setattr(torch.func, "vjp", no_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        encoder_jacobian(_NumpyStep(), torch.rand(3, 4))
