"""Benchmark: peak memory of ``rcert.certify`` as inputs and draws grow, before and after.

The issue: ``certify`` kept every input's sorted distance sample (``N * n`` floats) although
it reads two order statistics (SPEC section 3). Target: N = 10,000 inputs and n = 10^5
draws in under 1 GB (before: ~4 GB of sorted distances, twice that at the final concatenate).

On an MNIST-sized MLP VAE (input (1, 28, 28), latent 16, hidden (256,), randomly initialised,
eval mode), each measurement runs in a fresh subprocess:
``rcert.certify(model, x, r=1.0, n_samples=n, memory_mb=B)`` with ``x = rand(N, 1, 28, 28)``.
The figure is VmHWM (peak RSS) at the end minus VmRSS after imports, model, data and a
tiny warm-up call (rcert imports lazily): what certify itself added. The same grid runs on
the current code and on the code before this work: a git worktree of commit 3038d47 (the
code before issue 7) imported through ``PYTHONPATH``.

A fit ``peak = a + b * N * n`` per version gives the growth per (input, draw); the figure for
N = 10^4, n = 10^5 is EXTRAPOLATED from it unless ``--target`` runs it (10^9 decoder rows:
hours on a 2-core CPU). ``--empirical N`` instead measures
``rcert.empirical_margin(model, x, r=1.5, memory_mb=B)`` on N inputs.

Run ``python benchmarks/bench_memory.py`` (``--quick`` for a short run). Prints a table and
writes ``benchmarks/results/bench_memory.json``. No assertions: this is not a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np

NAME = "bench_memory"
# The last commit before issue 7 (bounded memory, settings, layout).
BEFORE_TAG = "3038d473408173ef414779b8f31283eb3e442b4f"
BEFORE_TREE = Path("/tmp/rcert-before")
REPO = Path(__file__).resolve().parent.parent
TARGET = (10_000, 100_000)
TARGET_MB = 1024
# (N, n): sized so that each run takes a few minutes at ~2e4 decoder rows/s (2 CPU cores).
GRID_FULL = [(2, 100_000), (8, 100_000), (32, 100_000), (1_000, 1_000)]
GRID_QUICK = [(2, 20_000), (16, 20_000), (200, 1_000)]

CHILD = r"""
import json, sys, time
import torch
import rcert
""" + common.STATUS_KB + r"""
mode, n_inputs, n_samples, memory_mb = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                        float(sys.argv[4]))
torch.manual_seed(0)
model = rcert.build_model("mlp", input_shape=(1, 28, 28), latent_dim=16,
                          hidden=(256,)).eval()
x = torch.rand(n_inputs, 1, 28, 28)
# rcert imports lazily: one tiny call first, so the imports are in the baseline.
rcert.certify(model, x[:1], r=1.0, n_samples=16, memory_mb=memory_mb)
base = status_kb("VmRSS")
t0 = time.perf_counter()
if mode == "certify":
    df = rcert.certify(model, x, r=1.0, n_samples=n_samples, memory_mb=memory_mb)
else:
    # r = 1.5 lies above every input's r_min (1.0-1.2 for this random model), so the
    # attacks run; at r = 1.0 every input is broken unperturbed and nothing is attacked.
    df = rcert.empirical_margin(model, x, r=1.5, memory_mb=memory_mb)
assert len(df) == n_inputs
print(json.dumps({"base_rss_kb": base, "peak_vmhwm_kb": status_kb("VmHWM"),
                  "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
                  "rcert": rcert.__file__}))
"""


def before_tree() -> Path:
    """The worktree of commit 3038d47, made on first use (it leaves the main tree alone)."""
    if not (BEFORE_TREE / "rcert").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", str(BEFORE_TREE),
                        BEFORE_TAG], check=True, capture_output=True)
    return BEFORE_TREE


def measure(version: str, mode: str, n_inputs: int, n_samples: int,
            memory_mb: float) -> dict:
    """One run in a fresh interpreter; its peak minus its baseline, in MB."""
    root = before_tree() if version == "before" else REPO
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(n_inputs), str(n_samples),
                           str(memory_mb)], capture_output=True, text=True, env=env, cwd=root,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{version} child failed:\n{proc.stderr[-2000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    if not child["rcert"].startswith(str(root)):
        raise RuntimeError(f"{version} child imported {child['rcert']}, not {root}")
    row = {"version": version, "mode": mode, "n_inputs": n_inputs, "n_samples": n_samples,
           "memory_mb": memory_mb, **child,
           "peak_increase_mb": (child["peak_vmhwm_kb"] - child["base_rss_kb"]) / 1024,
           "rows_per_s": n_inputs * n_samples / child["seconds"]}
    print(f"{version:>6} {mode:>9} N={n_inputs:>6} n={n_samples:>7} "
          f"peak +{row['peak_increase_mb']:8.1f} MB  {child['seconds']:7.1f} s", flush=True)
    return row


def fit(rows: list[dict]) -> dict:
    """Least squares ``peak_mb = a + b * N * n``; ``b`` in bytes per (input, draw)."""
    nn_ = np.array([r["n_inputs"] * r["n_samples"] for r in rows], dtype=np.float64)
    peak = np.array([r["peak_increase_mb"] for r in rows])
    b, a = np.polyfit(nn_, peak, 1)
    return {"a_mb": a, "b_bytes_per_input_draw": b * 2**20,
            "extrapolated_target_mb": a + b * TARGET[0] * TARGET[1],
            "max_residual_mb": float(np.max(np.abs(a + b * nn_ - peak)))}


def chunk_of(row: dict) -> int:
    """Inputs per chunk of the current code for a run's n and budget."""
    from rcert.engine import certify as certify_mod

    return certify_mod._inputs_per_chunk(row["memory_mb"], 16, 28 * 28, row["n_samples"])


def plateau(rows: list[dict], memory_mb: float) -> dict:
    """The current code's peak once N exceeds a chunk, plus its O(N) per-input state.

    A linear fit would extrapolate noise by 10^13 / (N n); instead: the largest peak among
    runs with several chunks at the target's n, plus what grows with N, the per-input
    columns (at most 8 bytes each, counted three times for the chunks' parts, their
    concatenation and the DataFrame).
    """
    from rcert.engine import certify as certify_mod

    chunk = certify_mod._inputs_per_chunk(memory_mb, 16, 28 * 28, TARGET[1])
    multi = [r for r in rows if r["n_inputs"] > chunk and r["n_samples"] == TARGET[1]]
    state_mb = TARGET[0] * len(certify_mod.COLUMNS) * 8 * 3 / 2**20
    top = max((r["peak_increase_mb"] for r in multi), default=float("nan"))
    return {"inputs_per_chunk_at_target_n": chunk, "plateau_mb": top,
            "per_input_state_at_target_mb": state_mb,
            "extrapolated_target_mb": top + state_mb}


def main() -> None:
    p = common.parser(__doc__, NAME)
    p.add_argument("--memory-mb", type=float, default=16.0)
    p.add_argument("--versions", default="before,after")
    p.add_argument("--target", action="store_true",
                   help=f"also run N={TARGET[0]}, n={TARGET[1]} on the current code (hours)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="re-fit the runs of a previous results JSON instead of measuring")
    p.add_argument("--empirical", type=int, default=None, metavar="N",
                   help="measure empirical_margin on N inputs instead of certify")
    args = p.parse_args()
    load = os.getloadavg()
    versions = args.versions.split(",")
    if args.empirical is not None:
        rows = [measure(v, "empirical", args.empirical, 0, args.memory_mb) for v in versions]
        common.finish(NAME, args.out.with_name(f"{NAME}_empirical.json"), load, runs=rows)
        return
    grid = GRID_QUICK if args.quick else GRID_FULL
    if args.reuse:
        # Re-analyse a previous run's measurements (they take many minutes).
        runs = json.loads(args.reuse.read_text())["runs"]
    else:
        runs = [measure(v, "certify", n_in, n, args.memory_mb)
                for n_in, n in grid for v in versions]
    if args.target:
        runs.append(measure("after", "certify", *TARGET, args.memory_mb))
    # Within one chunk the current code fills its budget, by design; past it, it is flat.
    fits = {v: fit([r for r in runs if r["version"] == v
                    and (v == "before" or r["n_inputs"] > chunk_of(r))]) for v in versions}
    print(f"\nfit peak = a + b * N * n (memory_mb={args.memory_mb}; current code: runs of "
          "several chunks only):")
    for v, f in fits.items():
        print(f"{v:>6}: a = {f['a_mb']:.1f} MB, b = {f['b_bytes_per_input_draw']:.2f} bytes "
              f"per (input, draw); EXTRAPOLATED to N={TARGET[0]}, n={TARGET[1]}: "
              f"{f['extrapolated_target_mb']:.0f} MB (target < {TARGET_MB} MB)")
    if "after" in versions:
        fits["after_plateau"] = pl = plateau([r for r in runs if r["version"] == "after"],
                                             args.memory_mb)
        print(f" after: {pl['inputs_per_chunk_at_target_n']} inputs per chunk at n={TARGET[1]}; "
              f"peak with several chunks {pl['plateau_mb']:.1f} MB + per-input state "
              f"{pl['per_input_state_at_target_mb']:.1f} MB = EXTRAPOLATED "
              f"{pl['extrapolated_target_mb']:.0f} MB at N={TARGET[0]}, n={TARGET[1]}")
    common.finish(NAME, args.out, load, memory_mb=args.memory_mb, grid=grid, runs=runs,
                  fits=fits, target=TARGET, target_mb=TARGET_MB,
                  started=time.strftime("%H:%M:%S", time.localtime()))


if __name__ == "__main__":
    main()
