"""Benchmark: the empirical margin (rcert.empirical) against the Lipschitz-VAE radius scan.

Target (the issue): "The baseline is the approach of the public Lipschitz-VAE code: a linear
radius grid scanned from the top, with 5 random starts and 40 samples per check. At a radius
resolution of 0.05, the empirical margin must cost at least 10x fewer decoder evaluations than
that baseline, and must find an equal or smaller margin."

Cost is counted, not timed: every latent code passed through ``model.decode`` (forward rows)
by both methods, through a counter patched onto the model instance. Backward passes are not
counted separately; both methods take one backward pass per attack evaluation. Wall times
are printed too (one run each, at 1 thread unless ``--threads`` says otherwise).

1. Baseline (``estimate_R_margin`` of FabianBarrett/Lipschitz_VAEs, rebuilt with
   ``rcert.attacks``): candidates ``np.arange(0.05, max_R + 1e-9, 0.05)``; the smallest is
   tested first and returned if broken; otherwise candidates are scanned from the largest down
   and the first robust one is returned. A test at radius ``c`` runs 5 attacks from random
   starts, each followed by a check on 40 fresh draws (``rcert.evaluation.empirical.within_counts``,
   ``p_hat = k / 40``); broken if any start gives ``p_hat <= 0.5``, robust if all give
   ``p_hat > 0.5``. Its *breaking radius* (the smallest candidate at which an attack
   succeeded: the candidate just above the returned one) is what compares with rcert's
   ``margin_empirical``. Attack per start: ``rcert.attacks.optimizers.maximise`` with
   ``AttackConfig(threat="mean", restarts=1, steps=10, optimizer="lbfgs", n_noise=1)`` on
   ``expected_damage`` (the original's objective: the distortion of one noise draw, L-BFGS-B
   from a random start). max_R = 10 is Lipschitz_VAEs' ``--max_R`` default; max_R = 2 is
   reported as a kinder variant. A PGD variant (10 steps) is reported too.
2. rcert: ``rcert.empirical_margin(model, x, r=r, resolution=0.05, start=..., seed=0)``
   with ``start = clip(2 * bound_whitened, 0.05, 10)`` (``bound_whitened`` from
   ``rcert.certify(model, x, r=r, n_samples=1000)``; the certificate's own decodes are not
   counted) and without a start; with the default attack settings and with lighter ones
   passed as arguments (``SETTINGS``).
3. Recheck (not counted): every success of both methods (the baseline's strongest start at
   each broken radius; rcert's perturbation of each successful round, recorded by wrapping
   ``rcert.attacks.optimizers.maximise`` and ``rcert.evaluation.empirical.within_counts``
   for the call) is checked
   again on 4000 fresh draws. The *verified* margin is the smallest radius whose success
   still gives ``P(||Delta|| <= r) <= 1/2``; it shows how much of each margin is Monte Carlo
   luck of a 40- or 200-draw check.

Margin targets: per input, rcert's margin at most the baseline's breaking radius plus one
0.05 step (the two grids differ), with no positive mean difference; and, both verified, no
positive mean difference.

Models: ``models/vae-digits.safetensors`` and ``models/floor0.5-digits.safetensors``, r = their
``recommended_r`` and 1.5; inputs: the first 20 of ``digits:test`` (``--quick``: 4 inputs,
recommended r only, fewer settings).

Run ``python benchmarks/bench_empirical.py`` (~2.5 min; ``--quick`` ~35 s). Prints tables and
PASS/MISS lines and writes ``benchmarks/results/bench_empirical.json``.
"""

from __future__ import annotations

import os
import time

import common
import numpy as np
import torch
from empirical_report import (
    TARGET_RATIO,
    compare,
    print_config_table,
    print_counter_note,
    print_summary,
    summarise,
    verdicts,
)
from empirical_spy import run_rcert
from lipschitz_scan import (
    BASE_ATTACKS,
    BASE_MAX_R,
    BASE_MAX_R_KIND,
    BASE_SAMPLES,
    BASE_STARTS,
    MAIN_BASE,
    RESOLUTION,
    DecodeCounter,
    baseline_scan,
)

import rcert

NAME = "bench_empirical"
MODELS = ("vae-digits", "floor0.5-digits")
EXTRA_R = 1.5

# rcert settings tried through empirical_margin's arguments; the first is the defaults.
SETTINGS = {
    "default": {},
    "r5-s10-n16": {"restarts": 5, "steps": 10, "n_noise": 16},
    "r3-s10-n16": {"restarts": 3, "steps": 10, "n_noise": 16},
    "r2-s10-n16": {"restarts": 2, "steps": 10, "n_noise": 16},
    "r1-s10-n32": {"restarts": 1, "steps": 10, "n_noise": 32},
    "r1-s20-n16": {"restarts": 1, "steps": 20, "n_noise": 16},
    "r1-s10-n16": {"restarts": 1, "steps": 10, "n_noise": 16},
    "r1-s5-n16": {"restarts": 1, "steps": 5, "n_noise": 16},
    "r1-s10-n8": {"restarts": 1, "steps": 10, "n_noise": 8},
    "r1-s10-n16-c100": {"restarts": 1, "steps": 10, "n_noise": 16, "n_check": 100},
    "r1-s10-n32-c400": {"restarts": 1, "steps": 10, "n_noise": 32, "n_check": 400},
    "r1-lbfgs10-n16": {"restarts": 1, "steps": 10, "n_noise": 16, "optimizer": "lbfgs"},
    "r1-s10-n4-c40": {"restarts": 1, "steps": 10, "n_noise": 4, "n_check": 40},
    "r5-s10-n1-c40": {"restarts": 5, "steps": 10, "n_noise": 1, "n_check": 40},
}
QUICK_SETTINGS = ("default", "r1-s10-n32", "r1-s10-n16")


def bench_config(model_name: str, r: float, n_inputs: int, setting_names, *,
                 base_attacks) -> dict:
    model, _ = common.shipped(f"models/{model_name}.safetensors")
    counter = DecodeCounter(model)
    data = rcert.load_data("digits:test").subset(n_inputs)
    x = data.x.to(torch.float32)
    index = np.asarray(data.index)
    index_t = torch.as_tensor(index, dtype=torch.int64)

    before = counter.rows
    cert = rcert.certify(model, x, r=r, n_samples=1000, index=index)
    certify_rows = (counter.rows - before) / n_inputs
    bound = cert["bound_whitened"].to_numpy(dtype=float)
    start = np.clip(np.nan_to_num(2 * bound, nan=RESOLUTION), RESOLUTION, BASE_MAX_R)

    baselines = {}
    for name, optimizer, steps in base_attacks:
        for max_r in (BASE_MAX_R, BASE_MAX_R_KIND):
            baselines[f"{name}@{max_r:g}"] = baseline_scan(
                model, counter, x, index_t, r=r, max_r=max_r, optimizer=optimizer,
                steps=steps)
            common.log(f"    baseline {name} max_R={max_r:g}: "
                f"{baselines[f'{name}@{max_r:g}']['wall_s']:.1f} s")

    runs = {}
    for sname in setting_names:
        for mode, st in (("start", start), ("nostart", None)):
            runs[f"{sname}/{mode}"] = run_rcert(model, counter, x, index, r=r, start=st,
                                                kwargs=SETTINGS[sname])
    comparisons = {rk: {**{bk: compare(rv, bv) for bk, bv in baselines.items()},
                        **{f"{bk}/verified": compare(rv, bv, "breaking_verified", "margin_verified")
                           for bk, bv in baselines.items()}}
                   for rk, rv in runs.items()}
    return {"model": model_name, "r": r, "n_inputs": n_inputs,
            "recommended_r": model.meta.get("recommended_r"),
            "bound_whitened": bound.tolist(), "start": start.tolist(),
            "certify_rows_per_input": certify_rows, "baselines": baselines, "rcert": runs,
            "comparisons": comparisons}


def main() -> None:
    parser = common.parser(__doc__, NAME)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    threads = common.single_thread(args.threads)
    n_inputs = 4 if args.quick else 20
    setting_names = QUICK_SETTINGS if args.quick else tuple(SETTINGS)
    base_attacks = BASE_ATTACKS[:1] if args.quick else BASE_ATTACKS
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    configs = []
    for model_name in MODELS:
        _, meta_r = common.shipped(f"models/{model_name}.safetensors")
        rs = [meta_r] if args.quick else [meta_r, EXTRA_R]
        for r in rs:
            common.log(f"  {model_name} r={r:g} ...")
            configs.append(bench_config(model_name, float(r), n_inputs, setting_names,
                                        base_attacks=base_attacks))
    for cfg in configs:
        print_config_table(cfg)
    summary = summarise(configs, setting_names)
    print_summary(summary, configs)
    print()
    lines = verdicts(summary, configs)
    print_counter_note(configs)
    total = time.perf_counter() - t0
    print(f"total wall time {total:.0f} s at {threads} thread(s)")
    common.finish(NAME, args.out, load_before, quick=args.quick, threads=threads,
                  default_threads=default_threads, resolution=RESOLUTION,
                  targets={"min_ratio": TARGET_RATIO},
                  baseline={"starts": BASE_STARTS, "samples": BASE_SAMPLES,
                            "max_R": BASE_MAX_R, "max_R_kind": BASE_MAX_R_KIND,
                            "attacks": [list(a) for a in base_attacks],
                            "objective": "expected_damage (one draw)", "main": MAIN_BASE},
                  settings={k: SETTINGS[k] for k in setting_names}, summary=summary,
                  verdicts=lines, configs=configs, total_wall_s=total)


if __name__ == "__main__":
    main()
