"""[C] Fig 4: maximum-damage attacks that reach the encoder mean, its sigma, or both.

Usage: python docs/figures/threats.py FOLDER OUT.png MODEL...

FOLDER holds `rcert attack --threat T --format json` results named MODEL-threat-T.json,
for T in mean, sigma and both. Draws, per model, the distribution of `distortion`
(E||Delta(x, d)|| over fresh encoder-noise draws, measured from g(mu(x))) per threat
and budget, with `clean_distortion` (the same at d = 0) as the floor, and prints the
table of means that docs/guide.md quotes. Deterministic: Agg canvas, rcert.plots.save.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rcert import plots

THREATS = ("mean", "sigma", "both")
COLOURS = {"mean": "#1f77b4", "sigma": "#ff7f0e", "both": "#2ca02c", "clean": "#7f7f7f"}


def load(folder: Path, model: str) -> pd.DataFrame:
    frames = []
    for threat in THREATS:
        df = plots.frame(plots.load_result(folder / f"{model}-threat-{threat}.json"))
        frames.append(df.assign(threat=threat))
    return pd.concat(frames, ignore_index=True)


def table(model: str, df: pd.DataFrame) -> list[str]:
    """Mean distortion per threat and budget, the clean floor and the noise baseline."""
    lines = []
    for L, at in df.groupby("L", sort=True):
        mean = {t: at.loc[at.threat == t, "distortion"].mean() for t in THREATS}
        clean = at.loc[at.threat == "mean", "clean_distortion"].mean()
        noise = at.loc[at.threat == "both", "noise_distortion"].mean()
        damage = at.loc[at.threat == "mean", "damage"].mean()
        share = (mean["mean"] - clean) / (mean["both"] - clean)
        lines.append(
            f"{model} L={L:g}: n={at.threat.eq('mean').sum()}, distortion mean/sigma/both "
            f"{mean['mean']:.3f}/{mean['sigma']:.3f}/{mean['both']:.3f}, "
            f"clean {clean:.3f}, noise(both) {noise:.3f}, damage(mean) {damage:.3f}, "
            f"(mean - clean)/(both - clean) {share:.2f}")
    return lines


def draw(models: list[str], frames: list[pd.DataFrame]) -> Figure:
    fig = Figure(figsize=(4.2 * len(models), 3.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model, df in zip(axes, models, frames):
        budgets = sorted(df.L.unique())
        width = 0.8 / (len(THREATS) + 1)
        for i, L in enumerate(budgets):
            at = df[df.L == L]
            groups = [("clean", at.loc[at.threat == "mean", "clean_distortion"])]
            groups += [(t, at.loc[at.threat == t, "distortion"]) for t in THREATS]
            for j, (name, values) in enumerate(groups):
                pos = i + (j - len(THREATS) / 2) * width
                parts = ax.violinplot([values.to_numpy()], positions=[pos], widths=width,
                                      showmedians=True, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(COLOURS[name])
                    body.set_edgecolor(COLOURS[name])
                    body.set_alpha(0.6)
                parts["cmedians"].set_color(COLOURS[name])
        ax.set_xticks(range(len(budgets)), [f"{L:g}" for L in budgets])
        ax.set_xlabel("attack budget L = max ||d||")
        ax.set_ylabel(r"distortion $E\,\|\Delta(x, d)\|$")
        ax.set_title(model)
        ax.grid(axis="y", alpha=0.3)
    names = {"clean": "d = 0 (clean_distortion)", "mean": "threat mean: mu(x+d)",
             "sigma": "threat sigma: sigma(x+d)", "both": "threat both"}
    handles = [Patch(color=COLOURS[k], alpha=0.6) for k in names]
    labels = list(names.values())
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="small")
    fig.suptitle("Maximum-damage attacks on the encoder mean, sigma or both [C Fig 4]")
    return fig


def main() -> None:
    folder, out, models = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    frames = [load(folder, model) for model in models]
    for model, df in zip(models, frames):
        print("\n".join(table(model, df)))
    plots.save(draw(models, frames), out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
