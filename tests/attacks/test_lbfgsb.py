"""The batched box-constrained L-BFGS minimiser: optima against scipy's L-BFGS-B and KKT,
row independence, the box, and which rows ``fun`` sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from rcert.attacks.lbfgsb import LbfgsbResult, minimize_box

F64 = torch.float64
TIGHT = {"pgtol": 1e-10, "ftol": 0.0, "max_iter": 2000}


def quadratics(seed: int, batch: int, n: int, spread: float = 3.0):
    """Strictly convex ``0.5 x'Ax - b'x`` per row, and boxes that cut off some of the
    unconstrained optima's coordinates (so some bounds are active at the solution)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(batch, n, n, generator=g, dtype=F64))[0]
    eig = torch.exp(spread * (torch.rand(batch, n, generator=g, dtype=F64) - 0.5))
    a = q @ torch.diag_embed(eig) @ q.transpose(1, 2)
    b = 2 * torch.randn(batch, n, generator=g, dtype=F64)
    free_opt = torch.linalg.solve(a, b)
    width = 0.2 + torch.rand(batch, n, generator=g, dtype=F64)
    shift = torch.randn(batch, n, generator=g, dtype=F64)
    lower, upper = free_opt + shift - width, free_opt + shift + width
    lower[:, 0] = -torch.inf  # a half-open coordinate in every row
    # A box that excludes the unconstrained optimum makes some bound active at the solution.
    lower[:, 1] = free_opt[:, 1] + 0.5
    upper[:, 1] = lower[:, 1] + width[:, 1]

    def fun(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ax = (a[rows] * x[:, None, :]).sum(-1)
        return 0.5 * (x * ax).sum(-1) - (b[rows] * x).sum(-1), ax - b[rows]

    return fun, lower, upper


def rosenbrock(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The extended Rosenbrock function: ``100 (x_2k - x_2k-1^2)^2 + (1 - x_2k-1)^2`` summed
    over the pairs, and ``(1 - x_n)^2`` for an odd ``n``'s last coordinate.

    With ``x >= 0`` each pair has one local minimum in any box: for fixed ``u = x_2k-1`` the
    best ``v = x_2k`` is ``clip(u^2)``, and what is left of ``u`` falls, then follows the
    valley as ``(1 - u)^2``, then rises. The chained variant has several constrained local
    minima in such boxes, so scipy and this minimiser could rightly end at different ones.
    """
    pairs = x.shape[1] // 2
    u, v = x[:, 0:2 * pairs:2], x[:, 1:2 * pairs:2]
    value = (100 * (v - u**2) ** 2 + (1 - u) ** 2).sum(-1)
    grad = torch.zeros_like(x)
    grad[:, 0:2 * pairs:2] = -400 * u * (v - u**2) - 2 * (1 - u)
    grad[:, 1:2 * pairs:2] = 200 * (v - u**2)
    if x.shape[1] % 2:
        value = value + (1 - x[:, -1]) ** 2
        grad[:, -1] = -2 * (1 - x[:, -1])
    return value, grad


def scipy_row(fun, i: int, x0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
    """scipy's L-BFGS-B on row ``i``, restarted from its own answer while that is not a KKT
    point (with ``ftol=0`` it can stop where a step no longer changes f, e.g. pg 0.26 on a
    2-d Rosenbrock)."""
    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = fun(torch.from_numpy(x)[None], torch.tensor([i]))
        return float(v[0]), g[0].numpy()

    lo, hi = lower[i].numpy(), upper[i].numpy()
    x = x0[i].numpy()
    for _ in range(4):
        res = optimize.minimize(f, x, jac=True, method="L-BFGS-B", bounds=optimize.Bounds(lo, hi),
                                options={"ftol": 0.0, "gtol": 1e-12, "maxiter": 5000})
        x = res.x
        if np.abs(np.clip(x - f(x)[1], lo, hi) - x).max() < 1e-8:
            break
    return res


def projected_gradient(fun, res: LbfgsbResult, lower, upper) -> torch.Tensor:
    _, g = fun(res.x, torch.arange(res.x.shape[0]))
    return (torch.clamp(res.x - g, lower, upper) - res.x).abs().amax(dim=1)


@settings(deadline=None, max_examples=6)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 6), n=st.integers(2, 12))
def test_convex_quadratics_reach_the_boxed_optimum(seed, batch, n):
    fun, lower, upper = quadratics(seed, batch, n)
    x0 = torch.zeros(batch, n, dtype=F64)
    res = minimize_box(fun, x0, lower, upper, **TIGHT)
    assert set(res.status) <= {"converged", "stalled"}
    assert float(projected_gradient(fun, res, lower, upper).max()) < 1e-6
    for i in range(batch):
        ref = scipy_row(fun, i, x0, lower, upper)
        np.testing.assert_allclose(res.x[i].numpy(), ref.x, atol=1e-5, rtol=0)
        assert float(res.value[i]) <= ref.fun + 1e-9
    active = (res.x == lower) | (res.x == upper)
    assert bool(active.any())  # the boxes did bind


@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 10))
def test_rosenbrock_matches_scipy(seed, n):
    batch = 6
    g = torch.Generator().manual_seed(seed)
    lower = 0.5 * torch.rand(batch, n, generator=g, dtype=F64)  # x >= 0, see rosenbrock
    upper = lower + 0.3 + 1.5 * torch.rand(batch, n, generator=g, dtype=F64)
    lower[:2], upper[:2] = 0.0, 2.0  # these boxes hold the optimum (1, ..., 1)
    x0 = lower + (upper - lower) * torch.rand(batch, n, generator=g, dtype=F64)
    res = minimize_box(rosenbrock, x0, lower, upper, **TIGHT)
    assert float(projected_gradient(rosenbrock, res, lower, upper).max()) < 1e-5
    for i in range(batch):
        ref = scipy_row(rosenbrock, i, x0, lower, upper)
        np.testing.assert_allclose(res.x[i].numpy(), ref.x, atol=1e-4, rtol=0)
    np.testing.assert_allclose(res.x[:2].numpy(), 1.0, atol=1e-4)


def test_a_row_alone_and_in_a_batch_take_the_same_path():
    fun, lower, upper = quadratics(3, 6, 9, spread=6.0)
    x0 = torch.zeros(6, 9, dtype=F64)
    # row 2 starts at its optimum, so it stops at once while the others run on
    x0[2] = minimize_box(fun, x0, lower, upper, **TIGHT).x[2]
    batch = minimize_box(fun, x0, lower, upper, pgtol=1e-6, max_iter=300)
    assert batch.iterations[2] == 0 and batch.iterations.max() > 20
    for i in range(6):
        one = torch.tensor([i])
        alone = minimize_box(lambda x, rows, one=one: fun(x, one[rows]), x0[i:i + 1],
                             lower[i:i + 1], upper[i:i + 1], pgtol=1e-6, max_iter=300)
        assert float((alone.x[0] - batch.x[i]).abs().max()) <= 1e-10
        assert alone.iterations[0] == batch.iterations[i]
        assert alone.evaluations[0] == batch.evaluations[i]
        assert alone.status[0] == batch.status[i]


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 5), n=st.integers(1, 8),
       max_iter=st.integers(0, 30))
def test_the_box_is_always_respected(seed, batch, n, max_iter):
    g = torch.Generator().manual_seed(seed)
    lower = torch.randn(batch, n, generator=g, dtype=F64)
    upper = lower + torch.rand(batch, n, generator=g, dtype=F64) * 2
    upper[:, 0] = lower[:, 0]  # a coordinate fixed by its box
    if n > 1:
        lower[0, 1], upper[-1, -1] = -torch.inf, torch.inf
    x0 = 5 * torch.randn(batch, n, generator=g, dtype=F64)  # mostly outside the box
    pull = 10 * torch.randn(batch, n, generator=g, dtype=F64)

    def fun(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # bounded below on every box (quartic), with a strong tilt against the bounds
        return (0.25 * x**4 - pull[rows] * x).sum(-1), x**3 - pull[rows]

    res = minimize_box(fun, x0, lower, upper, max_iter=max_iter)
    assert res.x.dtype == F64
    assert bool(((res.x >= lower) & (res.x <= upper)).all())
    if max_iter == 0:
        assert torch.equal(res.x, torch.clamp(x0, lower, upper))
        assert (res.iterations == 0).all() and (res.evaluations == 1).all()
    assert (res.iterations <= max_iter).all()
    assert torch.equal(res.value, fun(res.x, torch.arange(batch))[0])


def test_a_flat_start_converges_at_once_and_max_iter_zero_returns_x0():
    centre = torch.tensor([[0.3, -0.2], [0.0, 0.0], [1.0, 2.0]], dtype=F64)

    def fun(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ((x - centre[rows]) ** 2).sum(-1), 2 * (x - centre[rows])

    lower, upper = torch.full((3, 2), -1.0, dtype=F64), torch.full((3, 2), 1.5, dtype=F64)
    x0 = torch.tensor([[0.3, -0.2], [1.0, 1.0], [1.0, 1.5]], dtype=F64)
    res = minimize_box(fun, x0, lower, upper)
    # row 0 starts at its optimum; row 2 at the box corner that is its constrained optimum
    assert res.status[0] == "converged" and res.status[2] == "converged"
    assert torch.equal(res.x[0], x0[0]) and torch.equal(res.x[2], x0[2])
    assert res.iterations[0] == 0 and res.evaluations[0] == 1 and res.iterations[2] == 0
    assert res.status[1] == "converged" and float(res.x[1].abs().max()) < 1e-6

    outside = x0 + torch.tensor([[3.0], [-3.0], [0.0]], dtype=F64)
    none = minimize_box(fun, outside, lower, upper, max_iter=0)
    assert torch.equal(none.x, torch.clamp(outside, lower, upper))
    assert none.status.tolist() == ["max_iter", "max_iter", "converged"]
    assert none.iterations.tolist() == [0, 0, 0] and none.evaluations.tolist() == [1, 1, 1]


def test_fun_never_sees_a_stopped_row():
    fun, lower, upper = quadratics(7, 5, 6, spread=5.0)
    x0 = torch.zeros(5, 6, dtype=F64)
    x0[4] = minimize_box(fun, x0, lower, upper, **TIGHT).x[4]  # stops after one evaluation
    seen: list[list[int]] = []

    def recording(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert rows.dtype == torch.int64 and x.shape[0] == rows.shape[0]
        assert len(set(rows.tolist())) == rows.shape[0]
        seen.append(rows.tolist())
        return fun(x, rows)

    res = minimize_box(recording, x0, lower, upper, pgtol=1e-6, max_iter=12)
    counts = np.bincount([r for call in seen for r in call], minlength=5)
    np.testing.assert_array_equal(counts, res.evaluations)
    assert counts[4] == 1 and all(4 not in call for call in seen[1:])
    for i in range(5):  # a row alone needs exactly the calls it got in the batch
        calls = []
        one = torch.tensor([i])

        def single(x, rows, one=one, calls=calls):
            calls.append(1)
            return fun(x, one[rows])

        minimize_box(single, x0[i:i + 1], lower[i:i + 1], upper[i:i + 1], pgtol=1e-6,
                     max_iter=12)
        assert counts[i] == len(calls)
    last = {r: k for k, call in enumerate(seen) for r in call}
    assert len(seen[-1]) < 5 and min(last.values()) < len(seen) - 1  # rows left early


def test_a_non_finite_start_stalls_alone():
    def fun(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = torch.where(rows == 1, torch.nan, (x**2).sum(-1))
        return value, 2 * x

    box = torch.full((3, 2), 2.0, dtype=F64)
    res = minimize_box(fun, torch.ones(3, 2, dtype=F64), -box, box)
    assert res.status.tolist() == ["converged", "stalled", "converged"]
    assert res.evaluations[1] == 1 and torch.equal(res.x[1], torch.ones(2, dtype=F64))
    assert float(res.x[[0, 2]].abs().max()) < 1e-6


def test_float32_objectives_and_an_empty_batch():
    def fun(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x.float()
        return ((y - 0.25) ** 2).sum(-1), 2 * (y - 0.25)

    res = minimize_box(fun, torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
    assert res.x.dtype == F64 and res.status.tolist() == ["converged", "converged"]
    assert float((res.x - 0.25).abs().max()) < 1e-6
    empty = minimize_box(fun, torch.zeros(0, 3), torch.zeros(0, 3), torch.ones(0, 3))
    assert empty.x.shape == (0, 3) and empty.status.shape == (0,)
    with pytest.raises(ValueError, match="lower <= upper"):
        minimize_box(fun, torch.zeros(1, 3), torch.ones(1, 3), torch.zeros(1, 3))
