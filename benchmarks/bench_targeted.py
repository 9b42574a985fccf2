"""The full targeted-attack protocol of Willetts et al. on a dSprites model, on 2 cores.

Issue 10 asks for the time of the full 10-pair x 50-lambda protocol for one attack mode on a
dSprites model, and its cost per attack relative to one objective-and-gradient evaluation.
On a shipped dSprites model (default ``seatbelt8-dsprites``, 3 layers, 32x32 inputs) this
times:

* ``protocol``: ``rcert.targeted_attack`` with the KL attack (all layers), 10 pairs x 50
  lambdas, ``max_iter`` 100: 500 bound-constrained problems in one batched L-BFGS;
* ``one evaluation``: the objective and its gradient for one attack (a batch of 1), and
  for all 500 rows at once (one batched evaluation);

and prints the protocol's wall time, the time per attack, the evaluations per attack and the
protocol's cost in units of one single-attack evaluation and of one batched evaluation.
Results go to ``benchmarks/results/bench_targeted.json`` (or ``--out``).
"""

from __future__ import annotations

import os
import time

import torch
from common import ROOT, finish, parser, time_interleaved

import rcert
from rcert.attacks.divergences import penalty
from rcert.attacks.targeted import Objective, draw_pairs, lambdas_of

NAME = "bench_targeted"


def evaluation_times(model, x: torch.Tensor, config: rcert.TargetedConfig,
                     repeats: int) -> dict:
    """Median seconds of one objective-and-gradient evaluation: 1 row, and all rows."""
    pairs = draw_pairs(len(x), config.pairs, config.seed)
    x_in = x[torch.as_tensor(pairs.inputs)]
    objective = Objective(model, x_in, x[torch.as_tensor(pairs.targets)], config)
    lam = torch.as_tensor(lambdas_of(config), dtype=x.dtype)
    rows = len(pairs.inputs) * len(lam)
    pair_of = torch.arange(rows) // len(lam)

    def evaluate(n: int) -> None:
        d = torch.zeros(n, *x.shape[1:], requires_grad=True)
        value = objective(x_in[pair_of[:n]] + d, pair_of[:n]) + lam.repeat(
            len(pairs.inputs))[:n] * penalty(config.penalty, d)
        torch.autograd.grad(value.sum(), d)

    times = time_interleaved({"one": lambda: evaluate(1), "all": lambda: evaluate(rows)},
                             warmup=1, repeats=repeats)
    return {k: v["median_s"] for k, v in times.items()}


def main() -> None:
    p = parser(__doc__, NAME)
    p.add_argument("--model", default="seatbelt8-dsprites")
    args = p.parse_args()
    threads = int(args.threads) if args.threads else 2
    torch.set_num_threads(threads)
    model = rcert.load(ROOT / "models" / f"{args.model}.safetensors").eval()
    x = rcert.load_data("dsprites:test:n=6000:range=-1,1:res=32").x
    pairs, lambdas = (3, 10) if args.quick else (10, 50)
    config = rcert.TargetedConfig(kind="kl", pairs=pairs, lambdas=lambdas, max_iter=100)
    load_before = os.getloadavg()
    start = time.perf_counter()
    df = rcert.targeted_attack(model, x, config)
    protocol = time.perf_counter() - start
    evals = evaluation_times(model, x, config, args.repeats or 5)
    attacks = len(df)
    per_attack = protocol / attacks
    summary = {
        "model": args.model, "attacks": attacks, "protocol_s": protocol,
        "per_attack_s": per_attack,
        "evaluations_per_attack": float(df["evaluations"].mean()),
        "iterations_per_attack": float(df["iterations"].mean()),
        "status": df["status"].value_counts().to_dict(),
        "one_evaluation_s": evals["one"], "batched_evaluation_s": evals["all"],
        "per_attack_over_one_evaluation": per_attack / evals["one"],
        "protocol_over_batched_evaluation": protocol / evals["all"],
    }
    for key, value in summary.items():
        print(f"{key:>34}: {value:.4g}" if isinstance(value, float) else
              f"{key:>34}: {value}")
    finish(NAME, args.out, load_before, threads=threads, **summary)


if __name__ == "__main__":
    main()
