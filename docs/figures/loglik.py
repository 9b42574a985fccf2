"""[C] Fig 6d-f: log-likelihood degradation of a maximum-damage attack against the empirical margin.

Usage: python docs/figures/loglik.py OUT.png L MARGIN.json ATTACK.json [MARGIN.json ATTACK.json ...]

Each pair is one model: `rcert margin --empirical --format json` (margin_empirical per
input) and `rcert attack --L ... --format json` on the same inputs (loglik_degradation
per input and budget), joined on `index`. Prints Spearman's rank correlation
(scipy.stats.spearmanr) for every budget of the attack, over the inputs with a finite
empirical margin, and draws one panel per model at the budget L. Deterministic: Agg
canvas, rcert.plots.save.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from rcert import plots


def joined(margin_path: str, attack_path: str) -> tuple[str, pd.DataFrame]:
    margin, attack = plots.load_result(margin_path), plots.load_result(attack_path)
    df = plots.frame(margin)[["index", "margin_empirical"]].merge(
        plots.frame(attack)[["index", "L", "loglik_degradation"]], on="index")
    return plots.label(margin), df


def main() -> None:
    out, L_fig, paths = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    pairs = [joined(paths[i], paths[i + 1]) for i in range(0, len(paths), 2)]
    for name, df in pairs:
        for L, at in df.groupby("L", sort=True):
            ok = at[np.isfinite(at.margin_empirical) & np.isfinite(at.loglik_degradation)]
            rho, p = spearmanr(ok.margin_empirical, ok.loglik_degradation)
            print(f"{name}: L={L:g}, n={len(ok)} of {len(at)} inputs with a finite "
                  f"margin_empirical, spearman rho={rho:.3f} (p={p:.2g}), "
                  f"median loglik_degradation {ok.loglik_degradation.median():.3f}")
    fig = Figure(figsize=(4.0 * len(pairs), 3.6), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (name, df) in zip(axes, pairs):
        df = df[np.isclose(df.L, L_fig)]
        if df.empty:
            raise SystemExit(f"{name}: the attack has no budget L = {L_fig:g}")
        L = L_fig
        finite = df[np.isfinite(df.margin_empirical) & np.isfinite(df.loglik_degradation)]
        rho, _ = spearmanr(finite.margin_empirical, finite.loglik_degradation)
        ax.scatter(finite.margin_empirical, finite.loglik_degradation, s=14, alpha=0.7)
        ax.set_xlabel(r"empirical margin $R_{emp}(x)$")
        ax.set_ylabel(f"relative log-lik. degradation (L = {L:g})")
        dropped = len(df) - len(finite)
        note = f", {dropped} with R_emp = inf not drawn" if dropped else ""
        ax.set_title(f"{name}: Spearman rho = {rho:.2f}\n(n = {len(finite)}{note})",
                     fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle("Attack damage to the likelihood against the empirical margin [C Fig 6d-f]")
    plots.save(fig, out)


if __name__ == "__main__":
    main()
