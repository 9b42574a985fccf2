"""Benchmark: exact encoder Jacobians and their three norms (rcert.jacobian).

Compares, on two randomly initialised MLP VAEs (digits-sized and MNIST-sized):

1. rcert: ``encoder_jacobian(model, x)`` then ``jacobian_norms(J, sigma)`` on the whole batch
   (``jacobian_fro``, ``jacobian_spec`` and ``jacobian_whitened``);
2. naive: per input, one encode and one ``torch.autograd.grad`` per latent, then ``||J||_F``
   (the graph kept between latents); and naive-fresh, the literal loop over each input and
   each latent with its own encode and ``torch.autograd.grad`` call;
3. floor: one batched forward and ``d_z`` batched input-gradient passes (the exact Jacobian,
   row ``i`` of every input at once), nothing else.

Targets: rcert >= 10x faster than naive; rcert <= 1.5x the floor. The rcert time is also
split into its Jacobian and its norms to explain a miss. Methods are timed interleaved
(round-robin, so a busy neighbour on the machine hits all of them alike), after warm-up runs;
the figure is the median over the repeats (the minimum is kept in the JSON too).

Run ``python benchmarks/bench_jacobian.py`` (``--quick`` for a short run, ``--threads 2,1``
to measure at several thread counts). Prints a table and writes
``benchmarks/results/bench_jacobian.json``. No timing assertions: this is not a test.
"""

from __future__ import annotations

import os

import common
import torch

from rcert.engine.jacobian import encoder_jacobian, jacobian_norms

NAME = "bench_jacobian"
TARGET_NAIVE_SPEEDUP = 10.0
TARGET_FLOOR_RATIO = 1.5

# name, input_shape, latent_dim, hidden, N (full), N (--quick)
MODELS = [
    ("digits", (1, 8, 8), 8, (128, 128), 512, 64),
    ("mnist", (1, 28, 28), 10, (512, 512), 256, 32),
]


# --- the three methods ---------------------------------------------------------------------


def rcert_norms(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = encoder_jacobian(model, x)
    return jacobian_norms(out.jacobian, out.sigma)


def naive_jacobians(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: one encode, then one autograd.grad per latent; J and ``||J||_F`` per input."""
    jacs, fros = [], []
    for xi in x:
        xi = xi.detach().unsqueeze(0).requires_grad_(True)
        mu, _ = model.encode(xi)
        mu = mu[0]
        rows = [torch.autograd.grad(mu[i], xi, retain_graph=True)[0].flatten()
                for i in range(mu.shape[0])]
        jac = torch.stack(rows)
        jacs.append(jac)
        fros.append(jac.norm())
    return torch.stack(jacs), torch.stack(fros)


def naive_fresh_jacobians(model, x: torch.Tensor) -> torch.Tensor:
    """The literal loop: for each input and each latent, an encode and one autograd.grad."""
    d_z = model.latent_dim
    jacs = []
    for xi in x:
        rows = []
        for i in range(d_z):
            xi_ = xi.detach().unsqueeze(0).requires_grad_(True)
            mu, _ = model.encode(xi_)
            rows.append(torch.autograd.grad(mu[0, i], xi_)[0].flatten())
        jacs.append(torch.stack(rows))
    return torch.stack(jacs)


def floor_rows(model, x: torch.Tensor, d_z: int) -> list[torch.Tensor]:
    """d_z batched input-gradient passes after one forward: row i of every input's J."""
    x = x.detach().requires_grad_(True)
    mu, _ = model.encode(x)
    return [torch.autograd.grad(mu[:, i].sum(), x, retain_graph=True)[0] for i in range(d_z)]


def floor_jacobian(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([r.flatten(1) for r in rows], dim=1)


# --- one configuration ---------------------------------------------------------------------


def bench_model(name, input_shape, latent_dim, hidden, n_inputs, *, warmup, repeats,
                naive_repeats) -> dict:
    model = common.build(input_shape, latent_dim, hidden)
    torch.manual_seed(1)
    x = torch.rand(n_inputs, *input_shape)

    # Numerical agreement (outside the timings).
    enc = encoder_jacobian(model, x)
    norms = jacobian_norms(enc.jacobian, enc.sigma)
    j_naive, fro_naive = naive_jacobians(model, x)
    j_floor = floor_jacobian(floor_rows(model, x, latent_dim))
    agree = {
        "max_abs_diff_J_rcert_naive": float((enc.jacobian - j_naive).abs().max()),
        "max_abs_diff_J_rcert_floor": float((enc.jacobian - j_floor).abs().max()),
        "max_abs_diff_J_naive_floor": float((j_naive - j_floor).abs().max()),
        "max_abs_J": float(enc.jacobian.abs().max()),
        "max_rel_diff_fro_rcert_naive": float(
            ((norms["jacobian_fro"] - fro_naive.double()).abs() / norms["jacobian_fro"]).max()),
    }

    jac = enc.jacobian
    sigma = enc.sigma
    fast = common.time_interleaved({
        "rcert": lambda: rcert_norms(model, x),
        "floor": lambda: floor_rows(model, x, latent_dim),
        "rcert_jacobian_only": lambda: encoder_jacobian(model, x),
        "rcert_norms_only": lambda: jacobian_norms(jac, sigma),
    }, warmup=warmup, repeats=repeats)
    slow = common.time_interleaved({"naive": lambda: naive_jacobians(model, x),
                             "naive_fresh": lambda: naive_fresh_jacobians(model, x)},
                            warmup=1, repeats=naive_repeats)
    times = {**fast, **slow}
    med = {k: v["median_s"] for k, v in times.items()}
    mins = {k: v["min_s"] for k, v in times.items()}
    naive_speedup = med["naive"] / med["rcert"]
    floor_ratio = med["rcert"] / med["floor"]
    return {
        "model": name, "input_shape": list(input_shape), "latent_dim": latent_dim,
        "hidden": list(hidden), "n_inputs": n_inputs, "times": times,
        "naive_over_rcert": naive_speedup,
        "rcert_over_floor": floor_ratio,
        "naive_over_rcert_min": mins["naive"] / mins["rcert"],
        "rcert_over_floor_min": mins["rcert"] / mins["floor"],
        "naive_over_floor": med["naive"] / med["floor"],
        "naive_fresh_over_rcert": med["naive_fresh"] / med["rcert"],
        "naive_fresh_over_floor": med["naive_fresh"] / med["floor"],
        "rcert_jacobian_only_over_floor": med["rcert_jacobian_only"] / med["floor"],
        "rcert_norms_share": med["rcert_norms_only"] / med["rcert"],
        "naive_target_pass": naive_speedup >= TARGET_NAIVE_SPEEDUP,
        "floor_target_pass": floor_ratio <= TARGET_FLOOR_RATIO,
        "agreement": agree,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def print_table(runs: list[dict]) -> None:
    head = (f"{'model':7} {'thr':>3} {'N':>4} {'rcert ms':>9} {'(J':>9} {'+norms)':>9} "
            f"{'floor ms':>9} {'naive ms':>9} {'naive/rc':>8} {'rc/floor':>8} "
            f"{'[min]':>6} {'maxdiff J':>9}")
    print(head)
    print("-" * len(head))
    for r in runs:
        t = {k: v["median_s"] for k, v in r["times"].items()}
        diff = max(r["agreement"][k] for k in r["agreement"] if k.startswith("max_abs_diff"))
        print(f"{r['model']:7} {r['threads']:>3} {r['n_inputs']:>4} {ms(t['rcert'])} "
              f"{ms(t['rcert_jacobian_only'])} {ms(t['rcert_norms_only'])} {ms(t['floor'])} "
              f"{ms(t['naive'])} {r['naive_over_rcert']:8.1f} {r['rcert_over_floor']:8.2f} "
              f"{r['rcert_over_floor_min']:6.2f} {diff:9.1e}")
    print()
    for r in runs:
        tag = f"{r['model']} (N={r['n_inputs']}, {r['threads']} threads)"
        print(f"{'PASS' if r['naive_target_pass'] else 'MISS'}  {tag}: rcert is "
              f"{r['naive_over_rcert']:.1f}x faster than the naive loop "
              f"(target >= {TARGET_NAIVE_SPEEDUP:g}x; the floor itself is "
              f"{r['naive_over_floor']:.1f}x faster)")
        fresh = r["naive_fresh_over_rcert"]
        print(f"{'PASS' if fresh >= TARGET_NAIVE_SPEEDUP else 'MISS'}  {tag}: rcert is "
              f"{fresh:.1f}x faster than the literal loop, an encode per input and latent "
              f"(the floor: {r['naive_fresh_over_floor']:.1f}x)")
        print(f"{'PASS' if r['floor_target_pass'] else 'MISS'}  {tag}: rcert takes "
              f"{r['rcert_over_floor']:.2f}x the d_z-backward floor (target <= "
              f"{TARGET_FLOOR_RATIO:g}x; Jacobian alone {r['rcert_jacobian_only_over_floor']:.2f}x,"
              f" norms {100 * r['rcert_norms_share']:.0f}% of rcert)")
        a = r["agreement"]
        print(f"      max |J_rcert - J_naive| = {a['max_abs_diff_J_rcert_naive']:.2e}, "
              f"max |J_rcert - J_floor| = {a['max_abs_diff_J_rcert_floor']:.2e} "
              f"(max |J| = {a['max_abs_J']:.2e}); "
              f"max rel diff ||J||_F = {a['max_rel_diff_fro_rcert_naive']:.1e}")


def main() -> None:
    args = common.parser(__doc__, NAME).parse_args()
    default_threads = torch.get_num_threads()
    repeats = args.repeats or (5 if args.quick else 21)
    warmup = 2 if args.quick else 3
    naive_repeats = 3 if args.quick else 5
    load_before = os.getloadavg()
    runs = []
    for n_threads in common.thread_counts(args.threads):
        torch.set_num_threads(n_threads)
        for name, shape, d_z, hidden, n_full, n_quick in MODELS:
            n = n_quick if args.quick else n_full
            result = bench_model(name, shape, d_z, hidden, n, warmup=warmup, repeats=repeats,
                                 naive_repeats=naive_repeats)
            result["threads"] = n_threads
            runs.append(result)
            print(f"  measured {name} N={n} at {n_threads} threads", flush=True)
    torch.set_num_threads(default_threads)
    print()
    print_table(runs)
    common.finish(NAME, args.out, load_before, quick=args.quick,
                  default_threads=default_threads, repeats=repeats, warmup=warmup,
                  naive_repeats=naive_repeats,
                  targets={"naive_over_rcert_min": TARGET_NAIVE_SPEEDUP,
                           "rcert_over_floor_max": TARGET_FLOOR_RATIO},
                  runs=runs)


if __name__ == "__main__":
    main()
