"""Benchmark: the Monte Carlo over encoder noise (rcert.montecarlo) and its memory bound.

On two randomly initialised MLP VAEs (digits-sized and MNIST-sized):

1. rcert: ``distortion_norms(model, mu, sigma, index, n_samples, seed=0, max_rows=rows)`` with
   ``rows = rows_for_budget(256, D)`` and ``mu``, ``sigma`` from one encode;
2. decoder floor: ``model.decode`` alone on the same number ``N * n`` of latent codes,
   pre-generated, in batches of ``rows``, under ``torch.no_grad()``.
   Target: rcert <= 1.5x the floor.
   The breakdown replays rcert's chunk loop one stage at a time (noise generation with
   ``rcert.engine.noise.gaussian``, ``mu + eta * sigma``, subtracting the reference and taking the
   norm) so that a miss can be explained.
3. Peak memory of ``rcert.certify(model, x, r=1.0, n_samples=n, memory_mb=64)`` on the MNIST
   model (N=64) for n = 500, 4000, 16000, each in a fresh subprocess: ``ru_maxrss`` at the end
   minus the RSS right after imports and model construction. It should stay roughly flat as n
   grows 32x; then memory_mb = 16, 64, 256 at fixed n show that the budget moves the peak.

Timings are interleaved (round-robin over the methods, so a busy neighbour on the machine hits
all of them alike) after warm-up runs; the figure is the median (the minimum is in the JSON).

Run ``python benchmarks/bench_montecarlo.py`` (``--quick`` for a short run, ``--threads 2,1``
to time at several thread counts). Prints tables and writes
``benchmarks/results/bench_montecarlo.json``. No timing assertions: this is not a test.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import common
import torch

from rcert.engine import certify, montecarlo, noise

NAME = "bench_montecarlo"
TARGET_FLOOR_RATIO = 1.5
BUDGET_MB = 256

# name, input_shape, latent_dim, hidden, (N, n) full, (N, n) --quick
MODELS = [
    ("digits", (1, 8, 8), 8, (128, 128), (256, 2000), (32, 200)),
    ("mnist", (1, 28, 28), 10, (512, 512), (64, 2000), (8, 200)),
]
MNIST = MODELS[1]

# Memory runs: (N, n values, memory_mb for the n sweep, fixed n for the budget sweep, budgets)
MEMORY_FULL = (64, (500, 4000, 16000), 64, 4000, (16, 64, 256))
MEMORY_QUICK = (16, (250, 2000, 8000), 64, 2000, (16, 64, 256))
MEMORY_FLAT_MAX = 2.0  # peak increase may grow at most this much while n grows 32x
MEMORY_MOVE_MIN_MB = 5.0  # the peak must rise by more than this from the smallest budget

CHILD = r"""
import json, resource, sys
import torch
import rcert
""" + common.STATUS_KB + r"""
n_inputs, n_samples, memory_mb, threads = (int(sys.argv[1]), int(sys.argv[2]),
                                           float(sys.argv[3]), int(sys.argv[4]))
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
model = rcert.build_model("mlp", input_shape=(1, 28, 28), latent_dim=10,
                          hidden=(512, 512)).eval()
x = torch.rand(n_inputs, 1, 28, 28)
base_rss = status_kb("VmRSS")
base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
df = rcert.certify(model, x, r=1.0, n_samples=n_samples, memory_mb=memory_mb)
assert len(df) == n_inputs
print(json.dumps({"base_rss_kb": base_rss, "base_maxrss_kb": base_maxrss,
                  "peak_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "peak_vmhwm_kb": status_kb("VmHWM"), "end_rss_kb": status_kb("VmRSS"),
                  "threads": torch.get_num_threads()}))
"""


# --- timing -------------------------------------------------------------------------------


def chunking(n_inputs: int, n_samples: int, max_rows: int) -> list[tuple[slice, int, int]]:
    """rcert's chunk loop (montecarlo.distortion_norms): (input rows, first sample, samples)."""
    inputs_per_call = max(1, min(n_inputs, max_rows))
    samples_per_call = max(1, min(n_samples, max_rows // inputs_per_call))
    return [(slice(i0, i0 + inputs_per_call), s0, min(samples_per_call, n_samples - s0))
            for i0 in range(0, n_inputs, inputs_per_call)
            for s0 in range(0, n_samples, samples_per_call)]


def bench_model(name, input_shape, latent_dim, hidden, n_inputs, n_samples, *, warmup,
                repeats) -> dict:
    model = common.build(input_shape, latent_dim, hidden)
    torch.manual_seed(1)
    x = torch.rand(n_inputs, *input_shape)
    size = x[0].numel()
    rows = montecarlo.rows_for_budget(BUDGET_MB, size)
    with torch.no_grad():
        mu, sigma = model.encode(x)
    index = torch.arange(n_inputs)
    chunks = chunking(n_inputs, n_samples, rows)
    codes = torch.randn(n_inputs * n_samples, latent_dim)

    def run_rcert():
        return montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=n_samples,
                                           seed=0, max_rows=rows)

    @torch.no_grad()
    def run_floor():
        for start in range(0, codes.shape[0], rows):
            model.decode(codes[start:start + rows])

    def run_noise():
        for sl, s0, s in chunks:
            noise.gaussian(0, index[sl], s, latent_dim, start=s0, dtype=mu.dtype)

    etas = [noise.gaussian(0, index[sl], s, latent_dim, start=s0, dtype=mu.dtype)
            for sl, s0, s in chunks]

    def run_affine():
        for (sl, _, _), eta in zip(chunks, etas, strict=True):
            (mu[sl, None, :] + eta * sigma[sl, None, :]).reshape(-1, latent_dim)

    with torch.no_grad():
        reference = model.decode(mu).flatten(1)
        sl0 = chunks[0][0]
        z0 = (mu[sl0, None, :] + etas[0] * sigma[sl0, None, :]).reshape(-1, latent_dim)
        g_first = model.decode(z0).flatten(1)
    out = torch.empty(n_inputs, n_samples)

    def run_norm():
        for sl, s0, s in chunks:
            n_rows = len(range(n_inputs)[sl])  # chunks never exceed the first one
            g = g_first[: n_rows * s].reshape(n_rows, s, -1) - reference[sl, None, :]
            out[sl, s0:s0 + s] = torch.linalg.vector_norm(g, dim=-1).float()

    times = common.time_interleaved({"rcert": run_rcert, "decoder_floor": run_floor,
                              "noise": run_noise, "affine": run_affine,
                              "subtract_norm": run_norm},
                             warmup=warmup, repeats=repeats)
    med = {k: v["median_s"] for k, v in times.items()}
    parts = med["decoder_floor"] + med["noise"] + med["affine"] + med["subtract_norm"]
    ratio = med["rcert"] / med["decoder_floor"]
    return {
        "model": name, "input_shape": list(input_shape), "latent_dim": latent_dim,
        "hidden": list(hidden), "n_inputs": n_inputs, "n_samples": n_samples,
        "max_rows": rows, "rows_per_decoder_call": chunks[0][2] * min(n_inputs, rows),
        "decoder_calls": len(chunks), "times": times,
        "rcert_over_floor": ratio,
        "rcert_over_floor_min": times["rcert"]["min_s"] / times["decoder_floor"]["min_s"],
        "share_of_rcert": {k: med[k] / med["rcert"]
                           for k in ("decoder_floor", "noise", "affine", "subtract_norm")},
        "sum_of_parts_s": parts,
        "codes_per_s_rcert": n_inputs * n_samples / med["rcert"],
        "floor_target_pass": ratio <= TARGET_FLOOR_RATIO,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"


def print_timing(runs: list[dict]) -> None:
    head = (f"{'model':7} {'thr':>3} {'N':>4} {'n':>5} {'rows':>6} {'rcert ms':>9} "
            f"{'floor ms':>9} {'noise ms':>9} {'z ms':>7} {'norm ms':>8} {'rc/floor':>8} "
            f"{'[min]':>6}")
    print(head)
    print("-" * len(head))
    for r in runs:
        t = {k: v["median_s"] for k, v in r["times"].items()}
        print(f"{r['model']:7} {r['threads']:>3} {r['n_inputs']:>4} {r['n_samples']:>5} "
              f"{r['rows_per_decoder_call']:>6} {ms(t['rcert'])} {ms(t['decoder_floor'])} "
              f"{ms(t['noise'])} {t['affine'] * 1e3:7.1f} {t['subtract_norm'] * 1e3:8.1f} "
              f"{r['rcert_over_floor']:8.2f} {r['rcert_over_floor_min']:6.2f}")
    print()
    for r in runs:
        sh = r["share_of_rcert"]
        print(f"{'PASS' if r['floor_target_pass'] else 'MISS'}  {r['model']} (N={r['n_inputs']}, "
              f"n={r['n_samples']}, {r['threads']} threads): rcert takes "
              f"{r['rcert_over_floor']:.2f}x the decoder alone (target <= "
              f"{TARGET_FLOOR_RATIO:g}x); of rcert's time: decoder {100 * sh['decoder_floor']:.0f}%"
              f", noise {100 * sh['noise']:.0f}%, mu+eta*sigma {100 * sh['affine']:.0f}%, "
              f"subtract+norm {100 * sh['subtract_norm']:.0f}%")


# --- memory -------------------------------------------------------------------------------


def run_child(n_inputs: int, n_samples: int, memory_mb: float, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(n_inputs), str(n_samples), str(memory_mb),
         str(threads)],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{proc.stderr}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    d_z, size = MNIST[2], 28 * 28
    chunk = certify._inputs_per_chunk(memory_mb, d_z, size, n_samples)
    per_chunk = min(chunk, n_inputs)
    return {
        "n_inputs": n_inputs, "n_samples": n_samples, "memory_mb": memory_mb, **child,
        "peak_increase_mb": (child["peak_maxrss_kb"] - child["base_rss_kb"]) / 1024,
        "peak_increase_vmhwm_mb": (child["peak_vmhwm_kb"] - child["base_rss_kb"]) / 1024,
        "inputs_per_chunk": per_chunk,
        "decoder_rows": montecarlo.rows_for_budget(memory_mb, size),
        "distances_per_chunk_mb": per_chunk * n_samples * 4 / 2**20,
        "unchunked_decoder_output_mb": n_inputs * n_samples * size * 4 / 2**20,
    }


def bench_memory(config, threads: int) -> dict:
    n_inputs, n_values, sweep_mb, fixed_n, budgets = config
    by_n = [run_child(n_inputs, n, sweep_mb, threads) for n in n_values]
    by_budget = [run_child(n_inputs, fixed_n, mb, threads) for mb in budgets]
    growth = by_n[-1]["peak_increase_mb"] / max(by_n[0]["peak_increase_mb"], 1e-9)
    incs = [r["peak_increase_mb"] for r in by_budget]
    moves = (incs[-1] - incs[0] > MEMORY_MOVE_MIN_MB
             and all(b >= a - 1.0 for a, b in itertools.pairwise(incs)))
    return {"by_n_samples": by_n, "by_budget": by_budget,
            "n_growth": n_values[-1] / n_values[0], "peak_growth": growth,
            "flat": growth <= MEMORY_FLAT_MAX, "budget_moves": moves}


def print_memory(mem: dict) -> None:
    head = (f"{'N':>4} {'n':>6} {'budget MB':>9} {'chunk':>5} {'dec rows':>8} "
            f"{'base RSS MB':>11} {'peak MB':>8} {'increase MB':>11} {'(VmHWM)':>8} "
            f"{'dist/chunk MB':>13} {'unchunked MB':>12}")
    print(head)
    print("-" * len(head))
    for r in mem["by_n_samples"] + mem["by_budget"]:
        print(f"{r['n_inputs']:>4} {r['n_samples']:>6} {r['memory_mb']:>9g} "
              f"{r['inputs_per_chunk']:>5} {r['decoder_rows']:>8} "
              f"{r['base_rss_kb'] / 1024:11.1f} {r['peak_maxrss_kb'] / 1024:8.1f} "
              f"{r['peak_increase_mb']:11.1f} {r['peak_increase_vmhwm_mb']:8.1f} "
              f"{r['distances_per_chunk_mb']:13.2f} {r['unchunked_decoder_output_mb']:12.0f}")
    print("(increase = ru_maxrss at the end of the child - RSS after imports and model; VmHWM: "
          "the same from /proc/self/status, which exec resets)")
    print()
    first, last = mem["by_n_samples"][0], mem["by_n_samples"][-1]
    print(f"{'PASS' if mem['flat'] else 'MISS'}  peak increase grows {mem['peak_growth']:.2f}x "
          f"({first['peak_increase_mb']:.1f} -> {last['peak_increase_mb']:.1f} MB) while n "
          f"grows {mem['n_growth']:g}x (roughly flat: <= {MEMORY_FLAT_MAX:g}x); the distances "
          f"kept per chunk (N x n x 4 bytes) are {last['distances_per_chunk_mb']:.1f} MB at "
          f"n={last['n_samples']}, against {last['unchunked_decoder_output_mb']:.0f} MB for "
          f"unchunked decoder outputs")
    budgets = mem["by_budget"]
    print(f"{'PASS' if mem['budget_moves'] else 'MISS'}  the budget moves the peak: "
          + ", ".join(f"memory_mb={r['memory_mb']:g} -> +{r['peak_increase_mb']:.1f} MB"
                      for r in budgets)
          + f" (n={budgets[0]['n_samples']}; needs a monotone rise of > "
            f"{MEMORY_MOVE_MIN_MB:g} MB)")
    over = [r for r in mem["by_n_samples"] + budgets if r["peak_increase_mb"] > r["memory_mb"]]
    print("NOTE  peak increase within memory_mb in every run: " + (
        "yes" if not over else "no, over in " + ", ".join(
            f"n={r['n_samples']}/memory_mb={r['memory_mb']:g}" for r in over)
        + " (fixed costs not covered by the budget, e.g. torch.func's first-call imports)"))
    bad = [r for r in mem["by_n_samples"] + budgets
           if abs(r["peak_increase_mb"] - r["peak_increase_vmhwm_mb"]) > 5]
    if bad:
        print("NOTE  ru_maxrss and VmHWM disagree by > 5 MB in some runs (ru_maxrss can carry "
              "the parent's peak over fork/exec); see the JSON")


def main() -> None:
    parser = common.parser(__doc__, NAME)
    parser.add_argument("--skip-memory", action="store_true", help="timings only")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    threads = common.thread_counts(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    warmup = 1
    load_before = os.getloadavg()
    memory = None
    if not args.skip_memory:
        # First, while this process is small: a child's ru_maxrss can carry over the peak RSS
        # of the parent that spawned it (fork/vfork then exec), so spawn before timing.
        print("  memory runs (fresh subprocesses) ...", flush=True)
        child_threads = threads[0] if args.threads else 0
        memory = bench_memory(MEMORY_QUICK if args.quick else MEMORY_FULL, child_threads)
        memory["threads"] = threads[0]
    runs = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for name, shape, d_z, hidden, full, quick in MODELS:
            n_inputs, n_samples = quick if args.quick else full
            result = bench_model(name, shape, d_z, hidden, n_inputs, n_samples,
                                 warmup=warmup, repeats=repeats)
            result["threads"] = n_threads
            runs.append(result)
            print(f"  timed {name} N={n_inputs} n={n_samples} at {n_threads} threads",
                  flush=True)
    torch.set_num_threads(default_threads)
    print()
    print_timing(runs)
    if memory is not None:
        print()
        print_memory(memory)
    common.finish(NAME, args.out, load_before, quick=args.quick,
                  default_threads=default_threads, repeats=repeats, warmup=warmup,
                  budget_mb=BUDGET_MB,
                  targets={"rcert_over_floor_max": TARGET_FLOOR_RATIO,
                           "memory_peak_growth_max": MEMORY_FLAT_MAX,
                           "memory_budget_move_min_mb": MEMORY_MOVE_MIN_MB},
                  runs=runs, memory=memory)


if __name__ == "__main__":
    main()
