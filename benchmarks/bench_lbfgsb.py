"""Batched box-constrained L-BFGS (rcert.attacks.lbfgsb) against a loop of scipy's L-BFGS-B.

The Willetts et al. attacks solve many independent problems (input-target pairs times
penalty weights lambda) over a perturbation ``d`` in a box. This builds ``B = pairs x lambdas``
such problems (default 10 x 50 = 500) on ``n = 4096`` inputs, with a fixed random encoder
``enc(x) = W2 tanh(W1 x + b1)`` (64 hidden units, 8 outputs) evaluated in float32:

    f_b(d) = ||enc(x_b + d) - enc(t_b)||^2 + lambda_b ||d||^2,   -x_b <= d <= 1 - x_b,

a smooth nonconvex objective whose box binds (the inputs ``x_b`` have pixels at 0 and 1). Both
methods start at ``d = 0`` with the same settings (``max_iter`` 100, memory 10, pgtol 1e-5,
ftol 2.2e-9, 20 line-search trials) and the same objective code:

1. **batched**: one ``minimize_box`` call on all ``B`` rows;
2. **scipy**: ``scipy.optimize.minimize(method="L-BFGS-B")`` one problem at a time, the
   objective evaluated by the same torch function on that row alone. By default only every
   10th problem (``--scipy-every``), and its time is extrapolated to all ``B``.

Prints wall times, the ratio, evaluations and iterations per problem, the stopping reasons,
and the agreement of the final values on the problems both solved (median relative
difference, and how often each method is lower). Writes ``benchmarks/results/bench_lbfgsb.json``.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np
import torch
from common import finish, parser, single_thread
from scipy import optimize

from rcert.attacks.lbfgsb import minimize_box

NAME = "bench_lbfgsb"
SETTINGS = {"max_iter": 100, "memory": 10, "pgtol": 1e-5, "ftol": 2.2e-9,
            "max_line_search": 20}


def problems(pairs: int, lambdas: int, n: int, hidden: int = 64, latent: int = 8):
    """The objective ``fun(d, rows)`` and the boxes of ``pairs * lambdas`` problems."""
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(hidden, n, generator=g) * (3.0 / n**0.5)
    b1 = 0.1 * torch.randn(hidden, generator=g)
    w2 = torch.randn(latent, hidden, generator=g) / hidden**0.5
    images = (1.4 * torch.rand(2 * pairs, n, generator=g) - 0.2).clamp(0, 1)

    def enc(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(x @ w1.T + b1)
        return h @ w2.T, h

    x = images[:pairs].repeat_interleave(lambdas, dim=0)
    target = enc(images[pairs:])[0].repeat_interleave(lambdas, dim=0)
    lam = torch.logspace(-4, 1, lambdas).repeat(pairs)

    def fun(d: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = d.float()
        z, h = enc(x[rows] + d)
        r = z - target[rows]
        grad = ((2 * r) @ w2 * (1 - h**2)) @ w1 + 2 * lam[rows, None] * d
        return (r**2).sum(1) + lam[rows] * (d**2).sum(1), grad

    return fun, (-x).double(), (1 - x).double()


def scipy_one(fun, i: int, lower: torch.Tensor, upper: torch.Tensor) -> dict:
    rows = torch.tensor([i])

    def f(d: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = fun(torch.from_numpy(d)[None], rows)
        return float(v[0]), g[0].double().numpy()

    res = optimize.minimize(
        f, np.zeros(lower.shape[1]), jac=True, method="L-BFGS-B",
        bounds=optimize.Bounds(lower[i].numpy(), upper[i].numpy()),
        options={"maxiter": SETTINGS["max_iter"], "maxcor": SETTINGS["memory"],
                 "gtol": SETTINGS["pgtol"], "ftol": SETTINGS["ftol"],
                 "maxls": SETTINGS["max_line_search"]})
    return {"value": float(res.fun), "nfev": int(res.nfev), "nit": int(res.nit),
            "status": "max_iter" if res.status == 1 else
            ("converged" if res.status == 0 else "stalled")}


def run(pairs: int, lambdas: int, n: int, every: int) -> dict:
    fun, lower, upper = problems(pairs, lambdas, n)
    b = lower.shape[0]
    # warm-up of both paths (first calls of torch kernels and of scipy's Fortran)
    minimize_box(fun, torch.zeros(2, n, dtype=torch.float64), lower[:2], upper[:2], max_iter=3)
    optimize.minimize(lambda v: (float(v @ v), 2 * v), np.ones(3), jac=True,
                      method="L-BFGS-B", bounds=optimize.Bounds(-1, 1))
    t0 = time.perf_counter()
    res = minimize_box(fun, torch.zeros(b, n, dtype=torch.float64), lower, upper, **SETTINGS)
    batched_s = time.perf_counter() - t0
    picked = list(range(0, b, every))
    t0 = time.perf_counter()
    ref = [scipy_one(fun, i, lower, upper) for i in picked]
    scipy_s = time.perf_counter() - t0
    ours = res.value[picked].numpy()
    theirs = np.array([r["value"] for r in ref])
    rel = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
    both = (res.status[picked] == "converged") & np.array([r["status"] == "converged"
                                                          for r in ref])
    return {
        "B": b, "n": n, "scipy_problems": len(picked),
        "batched_s": batched_s, "scipy_s_measured": scipy_s,
        "scipy_s_all": scipy_s * b / len(picked),
        "batched_evals_mean": float(res.evaluations.mean()),
        "batched_iters_mean": float(res.iterations.mean()),
        "scipy_evals_mean": float(np.mean([r["nfev"] for r in ref])),
        "scipy_iters_mean": float(np.mean([r["nit"] for r in ref])),
        "batched_status": dict(Counter(res.status.tolist())),
        "scipy_status": dict(Counter(r["status"] for r in ref)),
        "median_rel_diff": float(np.median(rel)), "max_rel_diff": float(rel.max()),
        "both_converged": int(both.sum()),
        "median_rel_diff_both_converged": float(np.median(rel[both])) if both.any() else None,
        "batched_lower": int((ours < theirs * (1 - 1e-6)).sum()),
        "scipy_lower": int((theirs < ours * (1 - 1e-6)).sum()),
    }


def report(r: dict) -> None:
    ratio = r["scipy_s_all"] / r["batched_s"]
    print(f"\nB = {r['B']} problems, n = {r['n']}")
    print(f"batched minimize_box : {r['batched_s']:8.2f} s for all {r['B']}; "
          f"{r['batched_evals_mean']:.1f} evaluations, {r['batched_iters_mean']:.1f} "
          f"iterations per problem; {r['batched_status']}")
    print(f"scipy L-BFGS-B loop  : {r['scipy_s_measured']:8.2f} s for {r['scipy_problems']} "
          f"problems, extrapolated {r['scipy_s_all']:.2f} s for {r['B']}; "
          f"{r['scipy_evals_mean']:.1f} evaluations, {r['scipy_iters_mean']:.1f} iterations "
          f"per problem; {r['scipy_status']}")
    print(f"scipy / batched      : {ratio:8.2f}x (scipy time extrapolated from "
          f"{r['scipy_problems']} of {r['B']} problems)")
    print(f"final values on the {r['scipy_problems']} shared problems: median relative "
          f"difference {r['median_rel_diff']:.2e} (max {r['max_rel_diff']:.2e}); lower by "
          f"more than 1e-6 relative: batched {r['batched_lower']}, scipy {r['scipy_lower']}")
    if r["both_converged"]:
        print(f"  on the {r['both_converged']} that both stopped as converged: median relative "
              f"difference {r['median_rel_diff_both_converged']:.2e}")


def main() -> None:
    p = parser(__doc__, NAME)
    p.add_argument("--scipy-every", type=int, default=10,
                   help="run scipy on every k-th problem and extrapolate (1: all)")
    args = p.parse_args()
    threads = single_thread(args.threads)
    pairs, lambdas, n = (4, 10, 1024) if args.quick else (10, 50, 4096)
    load_before = os.getloadavg()
    result = run(pairs, lambdas, n, args.scipy_every)
    report(result)
    finish(NAME, args.out, load_before, threads=threads, settings=SETTINGS, result=result)


if __name__ == "__main__":
    main()
