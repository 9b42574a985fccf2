"""Lu & Chen's latent-attack figures from ``rcert latent-attack`` results: DD-curves with
their limit lines (Figs 3-6, 10-12), the per-dimension latent statistics of Eq 7 (Figs 7-8)
and t-SNE embeddings of clean and adversarial codes (Fig 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rcert.errors import RcertError
from rcert.plots.loading import Results, models_to_draw
from rcert.plots.style import finish_figure, new_figure, style_context
from rcert.statistics.ddcurve import curve_band

_LABELS = {"mse": "MSE (lower: closer)", "l2": r"$\|g(z^*) - \mathrm{ref}\|_2$",
           "ssim": "SSIM (higher: closer)", "psnr": "PSNR, dB (higher: closer)",
           "lpips": "LPIPS (lower: closer)", "target_mse": "MSE to the target"}


def dd_curves(results: Results, metrics: Sequence[str] | None = None) -> Figure:
    """Per model and score, the DD-curve: the mean score per epsilon over all inputs, with a
    band of one standard deviation of the per-batch-and-seed curves, and the score's AADDC
    limit line where the result has one.

    Parameters
    ----------
    results : dict or list of dict
        Latent-attack results (``rcert latent-attack --format json``), one per model.
    metrics
        The scores to draw [default: every score all results have].
    """
    models = models_to_draw(results, "dd", "latent", ("epsilon", "seed", "batch"))
    shared = [c for c in _LABELS if all(c in m.df.columns for m in models)]
    chosen = list(metrics) if metrics is not None else shared
    missing = [c for c in chosen if c not in shared]
    if missing or not chosen:
        raise RcertError(f"dd cannot draw {', '.join(missing) or 'any score'}: the results "
                         f"share only {', '.join(shared) or 'no scores'}")
    with style_context():
        fig, axes = new_figure(len(chosen), width=4.6, height=4.0)
        for ax, metric in zip(axes, chosen, strict=True):
            for model in models:
                eps, mean, std = _curve(model.df, metric)
                ax.plot(eps, mean, color=model.color, lw=2, marker="o", ms=3,
                        label=f"{model.name} ({model.config.get('goal', '')})")
                ax.fill_between(eps, mean - std, mean + std, color=model.color, alpha=0.2,
                                lw=0)
            limit = _limit(models[0].config, metric)
            if limit is not None:
                ax.axhline(limit, color="red", ls=":", lw=1.5, label=f"limit {limit:g}")
            ax.set_xlabel(r"latent budget $\epsilon$")
            ax.set_ylabel(_LABELS[metric])
            ax.legend(fontsize="x-small")
        return finish_figure(fig)


def _curve(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    band = curve_band(df, metric)
    return (band.index.to_numpy(np.float64), band["mean"].to_numpy(np.float64),
            band["std"].fillna(0.0).to_numpy(np.float64))


def _limit(config: dict, metric: str) -> float | None:
    for item in config.get("fidelity", {}).get("limits", ()):
        name, _, value = str(item).partition("=")
        if name.strip() == metric:
            return float(value)
    return None


def _section(results: Results, name: str, plot: str) -> list[tuple[str, pd.DataFrame]]:
    models = models_to_draw(results, plot, "latent", ("epsilon",))
    docs = [results] if isinstance(results, dict) else list(results)
    out = []
    for model, doc in zip(models, docs, strict=True):
        rows = doc.get("sections", {}).get(name)
        if not rows:
            flag = "--statistics-at" if name == "statistics" else "--tsne-at"
            raise RcertError(f"{model.name} has no {name}; make it with rcert latent-attack "
                             f"{flag} EPSILON --format json")
        out.append((model.name, pd.DataFrame(rows)))
    return out


def latent_statistics(results: Results) -> Figure:
    """Lu & Chen Eq 7 per latent dimension: ``E|Z_j|``, ``E|Z_adv_j|`` and ``E|delta_j|``,
    one panel per model and recorded epsilon (Figs 7-8)."""
    panels = [(name, eps, part) for name, table in _section(results, "statistics",
                                                           "latent-statistics")
              for eps, part in table.groupby("epsilon")]
    with style_context():
        fig, axes = new_figure(len(panels), width=4.6, height=3.8)
        for ax, (name, eps, part) in zip(axes, panels, strict=True):
            dims = part["dim"].to_numpy()
            for offset, (col, label) in enumerate((
                    ("mean_abs_code", r"$E|Z_j|$"), ("mean_abs_adversarial", r"$E|Z^{adv}_j|$"),
                    ("mean_abs_shift", r"$E|\delta_j|$"))):
                ax.bar(dims + (offset - 1) * 0.27, part[col], width=0.27, label=label)
            ax.set_title(f"{name}, epsilon {eps:g}", fontsize="small")
            ax.set_xlabel("latent dimension j")
            ax.legend(fontsize="x-small")
        return finish_figure(fig)


def latent_embedding(results: Results) -> Figure:
    """t-SNE of clean and adversarial codes, one panel per model and recorded epsilon
    (Fig 9)."""
    panels = [(name, eps, part) for name, table in _section(results, "embedding", "tsne")
              for eps, part in table.groupby("epsilon")]
    with style_context():
        fig, axes = new_figure(len(panels), width=4.4, height=4.2)
        for ax, (name, eps, part) in zip(axes, panels, strict=True):
            for code, marker in (("clean", "o"), ("adversarial", "x")):
                rows = part[part["code"] == code]
                ax.scatter(rows["x"], rows["y"], s=10, marker=marker, label=code, alpha=0.7)
            ax.set_title(f"{name}, epsilon {eps:g}", fontsize="small")
            ax.legend(fontsize="x-small")
        return finish_figure(fig)
