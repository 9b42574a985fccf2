"""Lu & Chen's latent PGD attack (spec sections 2.1-2.3): closed-form optima of linear
decoders, the balls, the random starts, determinism across batches and chunks, the scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

from rcert.attacks.latent_pgd import (
    STREAM_LATENT_START,
    latent_pgd,
    latent_pgd_chunked,
    latent_starts,
)
from rcert.errors import RcertError
from rcert.settings import LatentAttackConfig
from rcert.statistics import fidelity

RANGE = (0.0, 1.0)
D = torch.float64


def _linear(n: int, singular: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``W`` (n, d) with the given singular values, and a bias."""
    g = torch.Generator().manual_seed(seed)
    d = len(singular)
    left, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=D))
    right, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=D))
    w = left @ torch.diag(torch.tensor(singular, dtype=D)) @ right.T
    return w, 0.1 * torch.randn(n, generator=g, dtype=D)


def _rowwise(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x @ a.T`` by broadcasting and summing: each row's result is the same bit for bit in
    any batch, which a BLAS matmul does not promise (MKL rounds a row differently by batch
    size; bitwise batch invariance of the attack presumes a decoder without that)."""
    return (x[:, None, :] * a).sum(-1)


class Mlp:
    """A fixed smooth decoder ``R^d -> R^n`` in float64, batch-invariant bit for bit."""

    def __init__(self, d: int, n: int = 6, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(8, d, generator=g, dtype=D)
        self.b = torch.randn(n, 8, generator=g, dtype=D) / 3

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        # tanh, not sigmoid: CPU sigmoid rounds the vectorised part and the tail differently.
        return 0.5 + 0.5 * torch.tanh(_rowwise(torch.tanh(_rowwise(z, self.a)), self.b))


def _codes(b: int, d: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=D)


def _eps(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def _run(decode, z0, eps, *, index=None, **options):
    target = options.pop("target", None)
    scale = options.pop("scale", None)
    ssim = options.pop("ssim", None)
    config = LatentAttackConfig(**options)
    index = torch.arange(len(z0)) if index is None else index
    return latent_pgd(decode, z0, eps, config=config, index=index, scale=scale,
                      target=target, data_range=RANGE, ssim=ssim)


# --------------------------------------------------------------------------- optima


def test_l2_step_reaches_the_top_singular_value_on_the_sphere():
    # max ||W d||^2 / n over ||d|| <= eps is eps^2 sigma_max^2 / n (the top singular vector).
    w, bias = _linear(12, [3.0, 1.5, 1.0, 0.5, 0.2])
    z0 = _codes(3, 5)
    eps = _eps(0.0, 0.5, 1.0, 2.0)
    got = _run(lambda z: z @ w.T + bias, z0, eps, step="l2", step_size=10.0, steps=40,
               restarts=2)
    expected = eps**2 * 9.0 / 12
    np.testing.assert_allclose(got.loss[:, 1:], expected[1:].expand(3, 3), rtol=1e-4)
    shift = (got.z - z0[:, None]).norm(dim=2)
    np.testing.assert_allclose(shift[:, 1:], eps[1:].expand(3, 3), rtol=1e-9)
    assert torch.equal(got.z[:, 0], z0) and torch.equal(got.loss[:, 0], torch.zeros(3, dtype=D))


def test_sign_step_in_the_box_matches_bounded_least_squares():
    # min ||W z + b - t||^2 over |z - z0| <= eps: a vertex here (checked), which sign-PGD
    # with a step at least eps reaches; scipy's bounded least squares is the reference.
    w, bias = _linear(10, [2.0, 1.2, 0.8, 0.4])
    z0 = _codes(2, 4)
    far = z0 + 3.0 * torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0]], dtype=D)
    target = far @ w.T + bias
    eps = _eps(0.3, 0.7)
    got = _run(lambda z: z @ w.T + bias, z0, eps, goal="targeted", target=target,
               norm="linf", step="sign", step_size=1.0, steps=15, random_start=False)
    for i in range(2):
        for e, radius in enumerate(eps.tolist()):
            ref = lsq_linear(w.numpy(), (target[i] - bias).numpy(),
                             bounds=(z0[i].numpy() - radius, z0[i].numpy() + radius),
                             tol=1e-12)
            assert np.all(ref.active_mask != 0), "the reference optimum must be a vertex"
            np.testing.assert_allclose(got.z[i, e].numpy(), ref.x, rtol=0, atol=1e-12)
            np.testing.assert_allclose(got.loss[i, e].item(), 2 * ref.cost / 10, rtol=1e-10)


def test_untargeted_without_a_random_start_is_refused():
    with pytest.raises(RcertError, match="random_start"):
        LatentAttackConfig(goal="untargeted", random_start=False)


def test_targeted_at_the_clean_reconstruction_never_moves():
    # Hazard 2 of spec 2.3: at the minimum of D the gradient is 0 and PGD stays at z0.
    decode = Mlp(4)
    z0 = _codes(3, 4)
    for step in ("sign", "l2"):
        got = _run(decode, z0, _eps(0.5, 1.0), goal="targeted", target=decode(z0),
                   random_start=False, step=step)
        assert torch.equal(got.z, z0[:, None].expand(3, 2, 4))
        assert torch.equal(got.loss, torch.zeros(3, 2, dtype=D))


def test_targeted_attack_pulls_towards_black():
    decode = Mlp(4)
    z0 = _codes(4, 4)
    target = torch.zeros(4, 6, dtype=D)
    got = _run(decode, z0, _eps(0.0, 0.5, 1.0, 2.0), goal="targeted", target=target,
               random_start=False, iterate="best", step_size=0.2)
    np.testing.assert_array_equal(got.loss[:, 0], ((decode(z0) - target) ** 2).mean(1))
    assert torch.all(got.loss[:, 1:] <= got.loss[:, :1])
    assert torch.all(got.loss[:, -1] < got.loss[:, 0])


def test_ssim_distance_is_one_minus_ssim_at_the_returned_code():
    w = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=D)

    def decode(z):
        return torch.sigmoid(_rowwise(z, w)).reshape(-1, 1, 8, 8)

    z0 = _codes(2, 3)
    got = _run(decode, z0, _eps(0.0, 1.0, 3.0), distance="ssim", ssim=(7, 1.5), restarts=2)
    assert torch.all(got.loss[:, 0] == 0) and torch.all(got.loss[:, 1:] > 0.05)
    for e in range(3):
        score = fidelity.ssim(decode(got.z[:, e]), decode(z0), data_range=RANGE, window=7,
                              sigma=1.5)
        np.testing.assert_allclose(got.loss[:, e], 1 - score, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- the ball


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), d=st.integers(1, 6),
       eps=st.lists(st.floats(0.0, 3.0, allow_subnormal=False), min_size=1, max_size=3),
       norm=st.sampled_from(["l2", "linf"]), step=st.sampled_from(["sign", "l2"]),
       scaled=st.booleans(), seed=st.integers(0, 2**31), step_size=st.sampled_from([0.1, 1.0]))
def test_every_code_lies_in_its_ball(b, d, eps, norm, step, scaled, seed, step_size):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(b, d, generator=g, dtype=D)
    scale = 0.1 + 5 * torch.rand(b, d, generator=g, dtype=D) if scaled else None
    budget = torch.tensor(eps, dtype=D)
    got = _run(Mlp(d), z0, budget, norm=norm, step=step, steps=3, restarts=2, seed=seed,
               scale=scale, step_size=step_size)
    shift = got.z - z0[:, None]
    whitened = shift if scale is None else shift / scale[:, None]
    size = whitened.norm(dim=2) if norm == "l2" else whitened.abs().amax(dim=2)
    assert torch.all(size <= budget * (1 + 1e-12) + 1e-15)
    zero = budget == 0
    assert torch.equal(got.z[:, zero], z0[:, None].expand(b, int(zero.sum()), d))


def test_starts_are_uniform_in_the_ball():
    config = LatentAttackConfig(restarts=400, seed=5)
    d = 3
    starts = latent_starts(config, torch.arange(5), _eps(2.0), d, dtype=D).reshape(-1, d)
    radius = starts.norm(dim=1) / 2.0
    assert torch.all(radius <= 1)
    # Uniform in the 3-ball: P(r <= t) = t^3, so r^3 is uniform on (0, 1).
    assert abs(float((radius**3).mean()) - 0.5) < 0.03
    box = latent_starts(LatentAttackConfig(norm="linf", restarts=400), torch.arange(5),
                        _eps(2.0), d, dtype=D).reshape(-1)
    assert box.abs().max() <= 2.0 and abs(float(box.mean())) < 0.1
    assert abs(float((box / 2).square().mean()) - 1 / 3) < 0.02
    assert STREAM_LATENT_START == 10


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_result_and_another_seed_another():
    decode, z0, eps = Mlp(4), _codes(3, 4), _eps(0.5, 1.0)
    first = _run(decode, z0, eps, restarts=3, seed=4)
    again = _run(decode, z0, eps, restarts=3, seed=4)
    other = _run(decode, z0, eps, restarts=3, seed=5)
    assert torch.equal(first.z, again.z) and torch.equal(first.loss, again.loss)
    assert not torch.equal(first.z, other.z)


def test_a_row_is_the_same_alone_in_a_batch_and_in_chunks():
    decode, z0, eps = Mlp(4), _codes(5, 4), _eps(0.0, 0.3, 1.0)
    index = torch.tensor([7, 3, 11, 0, 2])
    options = {"restarts": 2, "steps": 4, "iterate": "best"}
    whole = _run(decode, z0, eps, index=index, **options)
    config = LatentAttackConfig(**options)
    for memory_mb in (1e-6, 1e6):  # one input per chunk, all in one
        chunked = latent_pgd_chunked(lambda rows: decode, z0, eps, config=config, index=index,
                                     data_range=RANGE, memory_mb=memory_mb, output_size=6,
                                     device="cpu")
        assert torch.equal(chunked.z, whole.z) and torch.equal(chunked.loss, whole.loss)
    for i in range(5):
        alone = _run(decode, z0[i:i + 1], eps, index=index[i:i + 1], **options)
        assert torch.equal(alone.z[0], whole.z[i]) and torch.equal(alone.loss[0], whole.loss[i])


def test_chunks_slice_a_per_input_context():
    # A hierarchical decoder's context is per input: decode_for hands each chunk its slice,
    # and latent_pgd's rows are input-major, so the context repeats N // B times per input.
    decode, z0, eps = Mlp(3), _codes(4, 3), _eps(0.5, 1.0)
    shift = torch.linspace(-1, 1, 4, dtype=D)[:, None]

    def decode_for(rows):
        ctx = shift[rows]
        return lambda z: decode(z) + ctx.repeat_interleave(len(z) // len(ctx), 0)

    config = LatentAttackConfig(restarts=2, steps=3)
    opts = {"config": config, "index": torch.arange(4), "data_range": RANGE,
            "output_size": 6, "device": "cpu"}
    small = latent_pgd_chunked(decode_for, z0, eps, memory_mb=1e-6, **opts)
    large = latent_pgd_chunked(decode_for, z0, eps, memory_mb=1e6, **opts)
    assert torch.equal(small.z, large.z) and torch.equal(small.loss, large.loss)


def test_restart_zero_does_not_depend_on_the_restart_count():
    index, eps = torch.tensor([4, 9]), _eps(0.5, 1.0, 2.0)
    for norm in ("l2", "linf"):
        one = latent_starts(LatentAttackConfig(norm=norm), index, eps, 3, dtype=D)
        three = latent_starts(LatentAttackConfig(norm=norm, restarts=3), index, eps, 3, dtype=D)
        assert torch.equal(one[:, :, 0], three[:, :, 0])
        assert not torch.equal(three[:, :, 0], three[:, :, 1])
    # More restarts keep restart 0's trajectory, so the best of them is at least as far.
    decode, z0 = Mlp(3), _codes(2, 3)
    single = _run(decode, z0, eps, index=index, restarts=1)
    several = _run(decode, z0, eps, index=index, restarts=3)
    assert torch.all(several.loss >= single.loss)


def test_the_best_iterate_is_at_least_the_last():
    decode, z0, eps = Mlp(4), _codes(4, 4), _eps(0.2, 0.6, 1.5)
    for step in ("sign", "l2"):
        last = _run(decode, z0, eps, step=step, step_size=0.3, restarts=2)
        best = _run(decode, z0, eps, step=step, step_size=0.3, restarts=2, iterate="best")
        assert torch.all(best.loss >= last.loss)
    # Targeted, "best" means the smallest distance seen.
    target = torch.full((4, 6), 0.5, dtype=D)
    last = _run(decode, z0, eps, goal="targeted", target=target, step_size=0.3)
    best = _run(decode, z0, eps, goal="targeted", target=target, step_size=0.3, iterate="best")
    assert torch.all(best.loss <= last.loss)


def test_no_parameter_gradient_accumulates():
    layer = torch.nn.Linear(3, 5).double()
    _run(layer, _codes(2, 3), _eps(0.5))
    assert all(p.grad is None for p in layer.parameters())


# --------------------------------------------------------------------------- the scale


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("step", ["sign", "l2"])
def test_a_scaled_ball_is_a_raw_ball_of_the_precomposed_decoder(norm, step):
    # ||(z - z0) / s|| <= eps around z0 for g is ||w - z0 / s|| <= eps around z0 / s for
    # w -> g(s w); the two attacks take the same steps.
    b, d = 3, 4
    decode, z0, eps = Mlp(d), _codes(b, d), _eps(0.0, 0.4, 1.2)
    s = 0.2 + 2 * torch.rand(b, d, generator=torch.Generator().manual_seed(8), dtype=D)
    opts = {"norm": norm, "step": step, "restarts": 2, "steps": 5, "step_size": 0.3}
    scaled = _run(decode, z0, eps, scale=s, **opts)

    def precomposed(w):
        return decode(s.repeat_interleave(len(w) // b, 0) * w)

    raw = _run(precomposed, z0 / s, eps, **opts)
    np.testing.assert_allclose(scaled.z, s[:, None] * raw.z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scaled.loss, raw.loss, rtol=1e-9, atol=1e-15)
    unit = _run(decode, z0, eps, scale=torch.ones(b, d, dtype=D), **opts)
    plain = _run(decode, z0, eps, **opts)
    assert torch.equal(unit.z, plain.z) and torch.equal(unit.loss, plain.loss)


# --------------------------------------------------------------------------- errors


def test_bad_inputs_are_refused_in_one_line():
    decode, z0 = Mlp(3), _codes(2, 3)
    cases = [
        ({"goal": "targeted"}, {}, "needs one target per input"),
        ({}, {"target": torch.zeros(2, 6, dtype=D)}, "takes no target"),
        ({"distance": "ssim"}, {}, "ssim=\\(window, sigma\\)"),
        ({}, {"scale": -torch.ones(2, 3, dtype=D)}, "scale must be"),
        ({}, {"eps": _eps(-0.1)}, "epsilons must be"),
        ({}, {"index": torch.arange(3)}, "index must"),
    ]
    for config, call, message in cases:
        eps = call.pop("eps", _eps(0.5))
        with pytest.raises(RcertError, match=message) as info:
            _run(decode, z0, eps, **config, **call)
        assert "\n" not in str(info.value)
