"""Curves over a perturbation size: p(rho) along fixed directions [C Fig 5, 7] and damage
against the attack budget [C Fig 9b].
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rcert.errors import RcertError
from rcert.plots.loading import Results, models_to_draw
from rcert.plots.style import (
    FEW_INPUTS,
    LABELS,
    count_label,
    finish_figure,
    n_inputs_drawn,
    new_figure,
    style_context,
)


def robustness_curves(results: Results) -> Figure:
    """``p(||Delta(x, rho u)|| <= r)`` against the perturbation size ``rho`` [C Fig 5, Fig 7 left].

    Per model: the mean of ``p_hat`` over inputs with a band of one standard deviation,
    thin lines for each input when there are at most 12, and a dotted line at ``m``
    (``config["m"]``, default 0.5). An input is r-robust along its direction while its
    curve stays above ``m``; where it crosses ``m`` is that direction's margin.

    Parameters
    ----------
    results : dict or list of dict
        Curve results (``rcert curve``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For a result of another kind.
    """
    models = models_to_draw(results, "curves", "curve", ("index", "rho", "p_hat"))
    with style_context():
        fig, (ax,) = new_figure(1, width=7.2, height=5.0)
        for model in models:
            df = model.df.sort_values(["index", "rho"])
            if n_inputs_drawn(model) <= FEW_INPUTS:
                for _, one in df.groupby("index", sort=True):
                    ax.plot(one["rho"], one["p_hat"], color=model.color, lw=0.7, alpha=0.35)
            by_rho = df.groupby("rho", sort=True)["p_hat"]
            mean, std = by_rho.mean(), by_rho.std(ddof=0)
            rho = mean.index.to_numpy(np.float64)
            ax.fill_between(rho, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1),
                            color=model.color, alpha=0.2, lw=0)
            setting = ", ".join(f"{k} = {model.config[k]}" for k in ("r", "direction")
                                if k in model.config)
            ax.plot(rho, mean.to_numpy(), color=model.color, lw=2.2, marker="o", ms=4,
                    label=f"{model.name} ({setting}): mean ± std of "
                          f"{count_label(n_inputs_drawn(model))}")
        for m in sorted({float(model.config.get("m", 0.5)) for model in models}):
            ax.axhline(m, color="0.15", ls=":", lw=1.4, label=f"m = {m:g}: r-robust above")
        if any(n_inputs_drawn(model) <= FEW_INPUTS for model in models):
            ax.plot([], [], color="0.4", lw=0.7, label="thin lines: single inputs")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"perturbation size $\rho = \|\delta_x\|_2$ along a fixed direction")
        ax.set_ylabel(r"$p(\|\Delta(\mathbf{x}, \delta_x)\|_2 \leq r)$")
        ax.set_title("Robustness along a fixed direction (Camuto et al. 2021, Fig 5, 7 left)")
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
        return finish_figure(fig)


def damage_vs_budget(results: Results, measure: str = "damage") -> Figure:
    """Harm done by the maximum-damage attack against its budget ``L`` [C Fig 9b, Eq 5].

    Per model: the mean of ``measure`` over inputs at each budget, with a band of one
    standard deviation (the paper's confidence intervals), and dashed, the same measure
    for Gaussian noise of the same norm (``noise_<measure>``). The paper's Fig 9b shows the
    likelihood of the original input; ``loglik_degradation`` is its relative loss [C Sec 4.1].

    Parameters
    ----------
    results : dict or list of dict
        Attack results (``rcert attack`` with several budgets ``--L``).
    measure : str
        ``damage`` (the reconstruction's move) or ``loglik_degradation``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For an unknown ``measure``, a result of another kind, or a model without
        log-likelihoods when ``measure="loglik_degradation"``.
    """
    if measure not in ("damage", "loglik_degradation"):
        raise RcertError(f"unknown measure {measure!r}; choose damage or loglik_degradation")
    noise = f"noise_{measure}"
    models = models_to_draw(results, "damage", "attack", ("L", measure, noise))
    for model in models:
        if model.df[measure].isna().all():
            raise RcertError(f"{model.name} has no {measure} (its model has no "
                             f"log_likelihood); plot measure='damage' instead")
    with style_context():
        fig, (ax,) = new_figure(1, width=7.2, height=5.0)
        for model in models:
            by_budget = model.df.groupby("L", sort=True)[[measure, noise]]
            mean, std = by_budget.mean(), by_budget.std(ddof=0)
            budget = mean.index.to_numpy(np.float64)
            ax.fill_between(budget, np.maximum(mean[measure] - std[measure], 0),
                            mean[measure] + std[measure], color=model.color, alpha=0.2, lw=0)
            ax.plot(budget, mean[measure], color=model.color, lw=2.2, marker="o", ms=5,
                    label=f"{model.name}: attack, mean ± std of "
                          f"{count_label(n_inputs_drawn(model))}")
            ax.plot(budget, mean[noise], color=model.color, lw=1.6, ls="--", marker="s", ms=4,
                    label=f"{model.name}: Gaussian noise of norm L")
        ax.set_ylim(bottom=0)
        ax.set_xlabel(r"attack budget $L$ (largest $\|\delta_x\|_2$)")
        ax.set_ylabel(LABELS[measure])
        ax.set_title("Maximum-damage attack against its budget (Camuto et al. 2021, Fig 9b)")
        ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
        return finish_figure(fig)
