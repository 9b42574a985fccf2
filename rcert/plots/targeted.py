"""The targeted attacks' sweep over lambda (Willetts et al. 2021, spec section 3.5): the
adversarial loss and the target's negative log-likelihood per penalty weight.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rcert.plots.loading import Results, models_to_draw
from rcert.plots.style import finish_figure, new_figure, style_context


def lambda_sweep(results: Results) -> Figure:
    """Per model, against ``lambda`` (log axis): the median converged ``Delta`` over the
    pairs with its interquartile band (log axis; higher: more robust), and the median
    ``-log p(x_t | z*)`` likewise where the result has it.

    Parameters
    ----------
    results : dict or list of dict
        Targeted-attack results (``rcert attack --kind ... --format json``), one per model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = models_to_draw(results, "targeted", "targeted", ("lambda", "loss", "pair"))
    panels = [("loss", r"converged $\Delta$ (higher: more robust)", True)]
    if all("neg_log_lik_target" in m.df.columns for m in models):
        panels.append(("neg_log_lik_target", r"$-\log p(x_t \mid z^*)$", False))
    with style_context():
        fig, axes = new_figure(len(panels), width=5.6, height=4.4)
        for ax, (col, label, log) in zip(axes, panels, strict=True):
            for model in models:
                by = model.df.groupby("lambda", sort=True)[col]
                lam = np.asarray(list(by.groups), dtype=np.float64)
                q = by.quantile([0.25, 0.5, 0.75]).unstack().to_numpy(np.float64)
                kind = model.config.get("kind", "")
                ax.plot(lam, q[:, 1], color=model.color, lw=2, marker="o", ms=3,
                        label=f"{model.name} ({kind}, {model.df['pair'].nunique()} pairs)")
                ax.fill_between(lam, q[:, 0], q[:, 2], color=model.color, alpha=0.2, lw=0)
            ax.set_xscale("log", base=2)
            if log and all((m.df[col] > 0).all() for m in models):
                ax.set_yscale("log")
            ax.set_xlabel(r"penalty weight $\lambda$")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
        return finish_figure(fig)
