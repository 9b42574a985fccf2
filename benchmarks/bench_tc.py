"""Cost of the beta-TCVAE objective against the ELBO: one training step, and the TC alone.

Issue 10 asks that minibatch-weighted sampling build no more than ``M x M x d_z`` numbers per
layer and that its cost be measured against the ELBO step. For batch sizes ``M`` and latent
sizes ``d_z`` on a digits-sized MLP (64 inputs, hidden 128-128), this times, interleaved:

* ``elbo``: forward and backward of ``-elbo(model, x).mean()``;
* ``beta-tc``: the same with ``-beta_tc_elbo(model, x, beta=4, dataset_size=N).mean()``;
* ``tc only``: forward and backward of ``total_correlation`` on fixed ``(z, mu, sigma)``;

and prints the medians, the ratio ``beta-tc / elbo`` and the size of the ``(M, M, d_z)``
tensor in MB. Results go to ``benchmarks/results/bench_tc.json`` (or ``--out``).
"""

from __future__ import annotations

import os

import torch
from common import build, finish, parser, single_thread, time_interleaved

import rcert
from rcert.models.objectives import beta_tc_elbo, elbo
from rcert.models.total_correlation import total_correlation

NAME = "bench_tc"
DATASET = 60_000


def step(loss_fn) -> None:
    loss = loss_fn()
    loss.backward()


def case(batch: int, latent: int, repeats: int) -> dict:
    model = build((64,), latent, (128, 128)).train()
    x = torch.rand(batch, 64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(batch, latent, generator=g, requires_grad=True)
    sigma = (0.5 + torch.rand(batch, latent, generator=g)).requires_grad_(True)
    z = mu.detach() + sigma.detach() * torch.randn(batch, latent, generator=g)
    fns = {
        "elbo": lambda: step(lambda: -elbo(model, x).mean()),
        "beta-tc": lambda: step(lambda: -beta_tc_elbo(model, x, beta=4.0,
                                                      dataset_size=DATASET).mean()),
        "tc only": lambda: step(lambda: total_correlation(z, mu, sigma, DATASET)),
    }
    times = time_interleaved(fns, warmup=2, repeats=repeats)
    med = {k: v["median_s"] * 1e3 for k, v in times.items()}
    return {"batch": batch, "d_z": latent, "median_ms": med,
            "ratio_beta_tc_over_elbo": med["beta-tc"] / med["elbo"],
            "pairs_tensor_mb": batch * batch * latent * 4 / 2**20}


def hierarchical_case(batch: int, repeats: int) -> dict:
    """The Seatbelt-VAE's step (3 layers 8-4-2, TC on the top layer) against its ELBO step."""
    torch.manual_seed(0)
    model = rcert.build_model("hierarchical", input_shape=(64,), latent_dim=8,
                              upper_dims=(4, 2), hidden=(128, 128)).train()
    x = torch.rand(batch, 64, generator=torch.Generator().manual_seed(0))
    fns = {
        "elbo": lambda: step(lambda: -elbo(model, x).mean()),
        "beta-tc": lambda: step(lambda: -beta_tc_elbo(model, x, beta=4.0,
                                                      dataset_size=DATASET).mean()),
    }
    times = time_interleaved(fns, warmup=2, repeats=repeats)
    med = {k: v["median_s"] * 1e3 for k, v in times.items()}
    return {"batch": batch, "d_top": 2, "median_ms": med,
            "ratio_beta_tc_over_elbo": med["beta-tc"] / med["elbo"],
            "pairs_tensor_mb": batch * batch * 2 * 4 / 2**20}


def main() -> None:
    p = parser(__doc__, NAME)
    args = p.parse_args()
    threads = single_thread(args.threads)
    repeats = args.repeats or (5 if args.quick else 20)
    grid = [(64, 4), (256, 4), (256, 10)] if args.quick else \
        [(64, 4), (64, 10), (256, 4), (256, 10), (1024, 4), (1024, 10)]
    load_before = os.getloadavg()
    rows = [case(m, d, repeats) for m, d in grid]
    print(f"\n{'M':>5} {'d_z':>4} {'elbo ms':>9} {'beta-tc ms':>11} {'tc only ms':>11} "
          f"{'ratio':>6} {'MxMxd MB':>9}")
    for r in rows:
        t = r["median_ms"]
        print(f"{r['batch']:>5} {r['d_z']:>4} {t['elbo']:>9.2f} {t['beta-tc']:>11.2f} "
              f"{t['tc only']:>11.2f} {r['ratio_beta_tc_over_elbo']:>6.2f} "
              f"{r['pairs_tensor_mb']:>9.2f}")
    hier = [hierarchical_case(m, repeats) for m in ((64, 256) if args.quick else
                                                   (64, 256, 1024))]
    print(f"\nSeatbelt-VAE, layers 8-4-2 (TC of the top layer)\n{'M':>5} {'elbo ms':>9} "
          f"{'beta-tc ms':>11} {'ratio':>6} {'MxMxd MB':>9}")
    for r in hier:
        t = r["median_ms"]
        print(f"{r['batch']:>5} {t['elbo']:>9.2f} {t['beta-tc']:>11.2f} "
              f"{r['ratio_beta_tc_over_elbo']:>6.2f} {r['pairs_tensor_mb']:>9.3f}")
    finish(NAME, args.out, load_before, threads=threads, repeats=repeats, rows=rows,
           hierarchical=hier)


if __name__ == "__main__":
    main()
