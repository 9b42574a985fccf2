"""Densities of the posterior measures over the inputs (Willetts et al. 2021): ``||sigma(x)||``
(Fig 2, the overlap proxy), the ELBO, and the denoising likelihood per noise level (Fig F.12).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rcert.plots.loading import Results, models_to_draw
from rcert.plots.margins import density
from rcert.plots.style import finish_figure, new_figure, style_context

_TITLES = {"sigma_norm": r"$\|\sigma(x)\|_2$", "elbo": "ELBO (no penalty)"}


def posterior_densities(results: Results) -> Figure:
    """Per model, a density over the inputs (a KDE and a rug) of each posterior measure: one
    panel per column of ``rcert measure`` (``sigma_norm``, ``elbo``, ``denoise_<a>``).

    Parameters
    ----------
    results : dict or list of dict
        Posterior-measure results (``rcert measure --format json``), one per model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = models_to_draw(results, "posteriors", "posteriors", ("sigma_norm",))
    columns = [c for c in models[0].df.columns
               if c != "index" and all(c in m.df.columns for m in models)]
    with style_context():
        fig, axes = new_figure(len(columns), width=4.6, height=4.0)
        for ax, col in zip(axes, columns, strict=True):
            for model in models:
                v = model.df[col].to_numpy(np.float64)
                density(ax, v[np.isfinite(v)], model, False, "")
            title = _TITLES.get(col, r"$\log p(x \mid z)$, $z \sim q(z \mid x + a\epsilon)$, "
                                     f"a = {col.removeprefix('denoise_')}")
            ax.set_title(title, fontsize="small")
            ax.set_ylabel("density over inputs")
            ax.legend(loc="upper right", fontsize="x-small", framealpha=0.9)
        return finish_figure(fig)
