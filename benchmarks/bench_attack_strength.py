"""Benchmark: how often a stronger attack lowers the empirical margin (issue 8, item 7).

The empirical margin is an upper bound on the true margin only if its attack finds the
breaking perturbation. This script asks how often a stronger attack finds a smaller margin
than a weaker one, to choose the default (``rcert.settings.EMPIRICAL_ATTACK``) as one that a
stronger run rarely beats.

Models (``MODELS`` below; edit the paths when the checkpoints move):

* shipped checkpoints, loaded with ``rcert.load``, at their ``recommended_r``;
* a foreign model: a pythae ``VAE(VAEConfig(input_dim=(1, 8, 8), latent_dim=2,
  reconstruction_loss="bce"))`` trained here (``PYTHAE``: seeded, Adam, a few hundred steps
  on ``digits:train`` in [0, 1], the last 10% held out), saved with pythae's ``save`` and
  read back with ``rcert.load_model``, as a user would; its r is ``rcert.recommend_r`` on
  the held-out digits, as ``rcert train`` records it. (With
  pythae's default MSE loss, a few hundred steps give a collapsed encoder whose margins
  are mostly ``inf``: nothing to compare.)

Per model, the first ``--limit`` inputs of ``digits:test`` are certified
(``rcert.certify``, 1000 draws) and attacked with every attack of ``ATTACKS``,
by ``rcert.empirical_margin(model, x, r=r, attack=..., start=2 * bound_whitened, seed=0)``,
the start that ``certify(empirical=True)`` uses, at the default resolution (2% of the
margin). An attack *lowers* a weaker one's margin when its margin lies below the weaker's by
more than that resolution (``rcert.statistics.summary.lowered``, the criterion of the
attack-strength audit); the *drop* is ``1 - strong / weak``
(``rcert.statistics.summary.relative_drop``).

Printed per model and attack: restarts, steps and draws; the median margin; the inputs no
attack broke; seconds (one torch thread unless ``--threads``). Then, for each pair of
attacks, how many margins of one the other lowered, and the largest drop. Then the same
pooled over the models.

Run ``python benchmarks/bench_attack_strength.py`` (~10 min on 2 cores;
``--limit 8 --attacks fast,careful`` ~1 min). Writes
``benchmarks/results/bench_attack_strength.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import common
import numpy as np
import pandas as pd
import torch

import rcert
from rcert.evaluation.audit import audit_columns
from rcert.evaluation.verdicts import start_radii
from rcert.settings import attack_label, stronger
from rcert.source import ModelSource
from rcert.statistics.summary import (
    AUDIT_COLUMN,
    AUDIT_P_COLUMN,
    audit_summary,
    lowered,
    relative_drop,
)

NAME = "bench_attack_strength"
#: Shipped checkpoints, relative to the repository; "pythae" is the foreign model below.
MODELS = ["models/vae-digits.safetensors", "models/floor0.5-digits.safetensors", "pythae"]
#: The foreign model's configuration and training.
PYTHAE = {"latent_dim": 2, "reconstruction_loss": "bce", "steps": 500, "batch_size": 64,
          "lr": 1e-3, "seed": 0}
#: Attacks compared, as ``rcert.AttackConfig`` keyword arguments (and ``seed``, default 0).
#: ``fast`` was the empirical margin's default before this benchmark, ``careful`` is now;
#: ``-seed1`` runs show what a different seed alone changes.
ATTACKS: dict[str, dict[str, Any]] = {
    "fast": {"preset": "fast"},
    "fast-seed1": {"preset": "fast", "seed": 1},
    "r1-s10-n64": {"restarts": 1, "steps": 10, "n_noise": 64},
    "careful": {"preset": "careful"},
    "careful-seed1": {"preset": "careful", "seed": 1},
    "r1-s10-n512": {"restarts": 1, "steps": 10, "n_noise": 512},
    "standard": {"preset": "standard"},
    "thorough": {"preset": "thorough"},
}
#: Attacks whose audit (``rcert.evaluation.audit.audit_columns`` on every input) is run too:
#: the old and the new default. An auditing attack not in the table joins it.
AUDITED = ("fast", "careful")
DATA = "digits:test"


def pythae_vae(latent_dim: int, reconstruction_loss: str, steps: int, batch_size: int,
               lr: float, seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The foreign model, read by rcert's pythae loader, and its held-out training digits."""
    from pythae.models import VAE, VAEConfig

    torch.manual_seed(seed)
    vae = VAE(VAEConfig(input_dim=(1, 8, 8), latent_dim=latent_dim,
                        reconstruction_loss=reconstruction_loss))
    x = torch.as_tensor(rcert.load_data("digits:train").x, dtype=torch.float32)
    held_out = len(x) // 10
    train, val = x[:-held_out], x[-held_out:]
    optimiser = torch.optim.Adam(vae.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (batch_size,), generator=batches)]
        loss = vae({"data": batch}).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with tempfile.TemporaryDirectory() as folder:
        vae.save(folder)
        model = rcert.load_model(ModelSource(folder))
    return model, val


def load_model(name: str) -> tuple[torch.nn.Module, float]:
    """A model of ``MODELS`` and the r it is certified at."""
    if name == "pythae":
        model, val = pythae_vae(**PYTHAE)
        return model, rcert.recommend_r(model, val, seed=0)
    return common.shipped(name)


def bench_model(name: str, attacks: list[str], limit: int, log) -> dict[str, Any]:
    """Every attack's margins and seconds on one model."""
    model, r = load_model(name)
    data = rcert.load_data(DATA).subset(limit)
    x = torch.as_tensor(data.x, dtype=torch.float32)
    index = np.asarray(data.index)
    cert = rcert.certify(model, x, r=r, index=index, seed=0)
    start = start_radii(cert)
    runs: dict[str, dict[str, Any]] = {}
    audits: dict[str, dict[str, Any]] = {}
    for attack in attacks:
        settings = dict(ATTACKS[attack])
        seed = settings.pop("seed", 0)
        config = rcert.AttackConfig(**settings)
        df, seconds = common.timed(rcert.empirical_margin, model, x, r=r, attack=config,
                                   start=start, index=index, seed=seed)
        runs[attack] = {"margin": df["margin_empirical"].tolist(), "seconds": seconds,
                        "restarts": config.restarts, "steps": config.steps,
                        "n_noise": config.n_noise}
        log(f"    {name} {attack}: {runs[attack]['seconds']:.1f} s")
        if attack in AUDITED:
            audits[attack] = audit(model, x, index, start, r, config, df)
    for found in audits.values():
        strong = found.pop("run")
        knobs = [(v["restarts"], v["steps"], v["n_noise"]) for v in runs.values()]
        if (strong["restarts"], strong["steps"], strong["n_noise"]) not in knobs:
            runs[f"r{strong['restarts']}-s{strong['steps']}-n{strong['n_noise']}"] = strong
    return {"model": name, "r": r, "n_inputs": limit,
            "bound_certified": cert["bound_certified"].tolist(), "runs": runs,
            "audits": audits}


def audit(model: torch.nn.Module, x: torch.Tensor, index: np.ndarray, start: np.ndarray,
          r: float, attack: rcert.AttackConfig, weak: pd.DataFrame) -> dict[str, Any]:
    """The attack-strength audit of ``attack``'s rows ``weak``, every input audited."""
    strong = stronger(attack)
    columns, seconds = common.timed(audit_columns, model, x, rcert.CertifyConfig(r=r, seed=0),
                                    attack, index=index, start=start, run=rcert.RunConfig(),
                                    audited=index, weak=weak)
    rows = weak[["index", "margin_empirical"]].assign(**columns)
    return {**audit_summary(rows, attack=attack_label(strong)), "seconds": seconds,
            "p_value": columns[AUDIT_P_COLUMN].tolist(),
            "run": {"margin": columns[AUDIT_COLUMN].tolist(), "seconds": seconds,
                    "restarts": strong.restarts, "steps": strong.steps,
                    "n_noise": strong.n_noise}}


def print_audits(results: list[dict[str, Any]]) -> None:
    """Per audited attack, per model and in all: what its audit lowered and confirmed."""
    print("\nThe audit (every input; confirmed: p_value_audit <= alpha = 0.001)")
    for attack in results[0]["audits"]:
        for res in results:
            a = res["audits"][attack]
            print(f"  {attack:11} {res['model']:36} by {a['attack']}: lowered "
                  f"{a['n_lowered']} of {a['n_audited']} (max drop {a['max_drop']:.0%}), "
                  f"confirmed {a['n_confirmed']}, {a['seconds']:.1f} s")
        entries = [res["audits"][attack] for res in results]
        print(f"  {attack:11} {'all':36} lowered {sum(a['n_lowered'] for a in entries)} of "
              f"{sum(a['n_audited'] for a in entries)}, confirmed "
              f"{sum(a['n_confirmed'] for a in entries)}")


def pair(weak: list[float], strong: list[float]) -> str:
    """How many of ``weak``'s margins ``strong`` lowered, and the largest drop (>= 0)."""
    low = lowered(np.asarray(weak), np.asarray(strong))
    return f"{int(low.sum())}/{max(float(relative_drop(weak, strong).max()), 0.0):.0%}"


def print_table(title: str, runs: dict[str, dict[str, Any]], n_inputs: int) -> None:
    """Per attack: its knobs, median margin, unbroken inputs and seconds; then, for each
    pair, how many margins of the column's attack the row's attack lowered."""
    names = list(runs)
    print(f"\n{title}")
    print(f"  {'attack':17} {'R':>3} {'S':>4} {'N':>4} {'median':>7} {'unbroken':>8} "
          f"{'seconds':>8}")
    for name, run in runs.items():
        margins = np.asarray(run["margin"], dtype=float)
        print(f"  {name:17} {run['restarts']:>3} {run['steps']:>4} {run['n_noise']:>4} "
              f"{np.median(margins):7.3f} {int(np.isinf(margins).sum()):>8} "
              f"{run['seconds']:8.1f}")
    print(f"  the row's attack lowered the column's margins (of {n_inputs}) / max drop:")
    print("  " + " " * 17 + "".join(f"{n[:11]:>12}" for n in names))
    for strong in names:
        cells = [pair(runs[weak]["margin"], runs[strong]["margin"]) if weak != strong else "-"
                 for weak in names]
        print(f"  {strong:17}" + "".join(f"{c:>12}" for c in cells))


def pooled(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The models' runs of each attack laid end to end."""
    out = {}
    for attack in results[0]["runs"]:
        runs = [res["runs"][attack] for res in results]
        out[attack] = {**runs[0], "margin": [m for run in runs for m in run["margin"]],
                       "seconds": sum(run["seconds"] for run in runs)}
    return out


def main() -> None:
    parser = common.parser(__doc__, NAME)
    parser.add_argument("--limit", type=int, default=20, help="inputs per model")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help="comma-separated attacks of ATTACKS")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated entries of MODELS")
    args = parser.parse_args()
    common.single_thread(args.threads)
    limit = 8 if args.quick else args.limit
    attacks = args.attacks.split(",")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    results = []
    for name in args.models.split(","):
        results.append(bench_model(name, attacks, limit, common.log))
        res = results[-1]
        print_table(f"{res['model']}  r={res['r']:g}  {limit} inputs of {DATA}",
                    res["runs"], limit)
    print_table(f"Pooled over {len(results)} models, {limit * len(results)} inputs",
                pooled(results), limit * len(results))
    if results[0]["audits"]:
        print_audits(results)
    print("\n  R, S, N: restarts, steps, common draws; lowered: by more than the resolution "
          "(2% of the margin); max drop: the largest 1 - row/column")
    wall = time.perf_counter() - t0
    print(f"\ntotal {wall:.0f} s with {torch.get_num_threads()} torch threads")
    common.finish(NAME, args.out, load_before, limit=limit, attacks=ATTACKS, pythae=PYTHAE,
                  results=results, wall_s=wall)


if __name__ == "__main__":
    main()
