import numpy as np
import torch
from torch import nn

from rcert.engine.jacobian import encoder_jacobian, jacobian_norms


def test_linear_encoder_jacobian_is_exact(linear_vae):
    x = torch.rand(7, 12)
    out = encoder_jacobian(linear_vae, x)
    assert out.jacobian.shape == (7, 3, 12)
    assert torch.allclose(out.jacobian, linear_vae.A.detach().expand(7, 3, 12))
    assert torch.allclose(out.mu, x @ linear_vae.A.detach().T)
    assert torch.allclose(out.sigma, torch.full((7, 3), 0.5))


def test_matches_autograd_per_input(tiny_vae):
    x = torch.rand(5, 10)
    out = encoder_jacobian(tiny_vae, x)
    for i in range(5):
        brute = torch.autograd.functional.jacobian(lambda v: tiny_vae.encode(v[None])[0][0], x[i])
        assert torch.allclose(out.jacobian[i], brute, atol=1e-6)


class ConvEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(4 * 4 * 4, 6))

    def encode(self, x):
        h = self.conv(x)
        return h[:, :3], torch.exp(h[:, 3:])


def test_image_inputs_are_flattened_in_input_order():
    model = ConvEncoder()
    x = torch.rand(3, 2, 8, 8)
    out = encoder_jacobian(model, x)
    assert out.jacobian.shape == (3, 3, 128)
    brute = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0][0], x[1])
    assert torch.allclose(out.jacobian[1], brute.reshape(3, 128), atol=1e-6)


def test_norms_match_numpy():
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(4, 3, 9))
    sigma = rng.uniform(0.1, 1.0, size=(4, 3))
    norms = jacobian_norms(torch.tensor(jac), torch.tensor(sigma))
    for i in range(4):
        assert np.isclose(norms["jacobian_fro"][i], np.linalg.norm(jac[i]))
        assert np.isclose(norms["jacobian_spec"][i], np.linalg.norm(jac[i], 2))
        assert np.isclose(norms["jacobian_whitened"][i],
                          np.linalg.norm(jac[i] / sigma[i][:, None], 2))


def test_zero_jacobian_gives_zero_norms():
    norms = jacobian_norms(torch.zeros(2, 3, 5), torch.ones(2, 3))
    for value in norms.values():
        assert torch.equal(value, torch.zeros(2, dtype=torch.float64))
