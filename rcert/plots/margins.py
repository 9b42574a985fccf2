"""Margin figures: bound against empirical margin [C Fig 6], margin distributions [C Fig 9a],
encoder diagnostics [C Fig 9c, d] and the certified fraction (SPEC section 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rcert.errors import RcertError
from rcert.plots.loading import Model, Results, models_to_draw
from rcert.plots.style import (
    LABELS,
    VIOLATION,
    count_label,
    finish_figure,
    is_wide,
    log_scale,
    new_figure,
    style_context,
)
from rcert.statistics.summary import INPUT_MARGINS, fit_line
from rcert.statistics.summary import certified_fraction as _fraction


def _limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    """Axis limits with a margin around ``values`` (0 to 1 when there are none)."""
    if not values.size:
        return 0.0, 1.0
    top = float(values.max()) * (1.5 if log else 1.08)
    return (float(values.min()) / 1.5 if log else 0.0), top


def _dots_and_fit(ax: Axes, model: Model, x: np.ndarray, y: np.ndarray, keep: np.ndarray,
                  log: bool) -> int:
    """One model's dots (violations ringed) and least-squares line; its violations drawn."""
    broke = model.df["violation"].to_numpy(bool)[keep]
    excluded = len(x) - int(keep.sum())
    note = f", {excluded} excluded" if excluded else ""
    ax.scatter(x[keep], y[keep], s=np.where(broke, 70, 30), color=model.color,
               edgecolors=[VIOLATION if b else "white" for b in broke],
               linewidths=np.where(broke, 2.0, 0.6), alpha=0.85, zorder=3,
               label=f"{model.name}: {count_label(int(keep.sum()))}{note}")
    fit = fit_line(x, y)
    if math.isnan(fit["slope"]):
        ax.plot([], [], color=model.color,
                label=f"{model.name}: rho = n/a (too few inputs for a fit)")
        return int(broke.sum())
    grid = (np.geomspace if log else np.linspace)(x[keep].min(), x[keep].max(), 64)
    sign = "-" if fit["intercept"] < 0 else "+"
    ax.plot(grid, fit["slope"] * grid + fit["intercept"], color=model.color, lw=1.8, zorder=2,
            label=f"{model.name} least squares: y = {fit['slope']:.2f}x {sign} "
                  f"{abs(fit['intercept']):.2g}, rho = {fit['correlation']:.2f}")
    return int(broke.sum())


def bound_vs_empirical(results: Results, bound: str = "bound") -> Figure:
    """The empirical margin against a certified bound, one colour per model [C Fig 6a-c].

    Each dot is one input: ``margin_empirical`` (y) against the ``bound`` column (x). The
    legend gives, per model, the least-squares line and Pearson's rho of
    :func:`rcert.statistics.summary.fit_line`. The dashed line is ``y = x``: a sound bound puts
    the dots on or above it. Violations (``R_emp`` below ``bound_certified`` beyond Monte Carlo
    error) have a red ring. Inputs with a bound of 0 (nothing certified) or ``inf``, or with
    ``R_emp = inf`` (no attack succeeded), cannot be placed; the legend counts them. Axes
    turn logarithmic when the dots span more than a factor of 20.

    Parameters
    ----------
    results : dict or list of dict
        Margin results made with ``rcert margin --empirical``.
    bound : str
        The x column: ``bound`` (the paper's Theorem 1 with ``p_hat``), ``bound_certified``,
        ``bound_spectral`` or ``bound_whitened``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For an unknown ``bound``, a result of another kind, or one without the empirical
        margin.
    """
    if bound not in INPUT_MARGINS:
        raise RcertError(f"unknown bound {bound!r}; choose one of {', '.join(INPUT_MARGINS)}")
    models = models_to_draw(results, "bound-vs-empirical", "margin",
                            (bound, "margin_empirical", "violation"),
                            hint="run rcert margin --empirical (rcert.certify(..., "
                                 "empirical=True))")
    with style_context():
        fig, (ax,) = new_figure(1, width=7.2, height=6.0)
        columns = [(m.df[bound].to_numpy(np.float64),
                    m.df["margin_empirical"].to_numpy(np.float64)) for m in models]
        kept = [np.isfinite(x) & (x > 0) & np.isfinite(y) for x, y in columns]
        everything = np.concatenate([np.concatenate([x[k], y[k]])
                                     for (x, y), k in zip(columns, kept, strict=True)])
        log = is_wide(everything)
        low, top = _limits(everything, log)
        violations = sum(_dots_and_fit(ax, model, x, y, keep, log)
                         for model, (x, y), keep in zip(models, columns, kept, strict=True))
        ax.plot([low, top], [low, top], color="0.15", ls="--", lw=1.2, zorder=1,
                label="y = x (a sound bound puts the dots on or above it)")
        if log:
            log_scale(ax, "x", everything)
            log_scale(ax, "y", everything)
        ax.set_xlim(low, top)
        ax.set_ylim(low, top)
        handles, labels = ax.get_legend_handles_labels()
        if violations:
            handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="white",
                                  markeredgecolor=VIOLATION, markeredgewidth=2.0))
            labels.append(f"violation: R_emp < certified bound ({violations})")
        title = None
        if not all(k.all() for k in kept):
            title = "excluded: bound 0 or inf, or R_emp = inf (no attack succeeded)"
        # Sound bounds put the dots above y = x, which leaves the lower right free.
        ax.legend(handles, labels, loc="lower right", fontsize="small", title=title,
                  title_fontsize="small", framealpha=0.9)
        ax.set_xlabel(LABELS[bound])
        ax.set_ylabel(LABELS["margin_empirical"])
        ax.set_title("Empirical margin against the bound (Camuto et al. 2021, Fig 6)")
        return finish_figure(fig)


def density(ax: Axes, values: np.ndarray, model: Model, log: bool, hidden: str) -> None:
    """A KDE with a rug of the values, or the rug alone when a density cannot be estimated."""
    text = f"{model.name}: {count_label(values.size)}{hidden}"
    rug_label = None
    if values.size == 0:
        # Nothing to draw (e.g. no attack succeeded): keep the model's line in the legend.
        ax.plot([], [], color=model.color, label=text)
        return
    if values.size >= 3 and np.ptp(values) > 0:
        sns.kdeplot(x=values, ax=ax, color=model.color, fill=True, alpha=0.2, lw=1.6, cut=0,
                    log_scale=log, warn_singular=False, label=text)
    else:
        rug_label = f"{text} (too few distinct values for a density)"
    sns.rugplot(x=values, ax=ax, color=model.color, height=0.05, lw=1.2, alpha=0.8,
                label=rug_label)


def margin_distributions(results: Results,
                         columns: Sequence[str] = ("bound_certified", "margin_empirical")
                         ) -> Figure:
    """Distributions of margins over the inputs, per model, one panel per column [C Fig 9a].

    Each model gets a kernel density estimate (cut at the data's range) and a rug of its
    inputs' values; with fewer than three values, or all equal, only the rug. Infinite
    values (an unbounded margin, an input no attack broke) are counted in the legend, not
    drawn. When the positive values span more than a factor of 20 the axis is
    logarithmic, and zeros (no margin at all) are counted instead of drawn.

    Parameters
    ----------
    results : dict or list of dict
        Margin results (``rcert margin``; ``--empirical`` for ``margin_empirical``).
    columns : sequence of str
        Columns to draw; those absent from every result are skipped.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For a result of another kind, or when no column is present.
    """
    models = models_to_draw(results, "margins", "margin", ())
    present = [col for col in columns if any(col in m.df.columns for m in models)]
    if not present:
        hint = " (margin_empirical needs rcert margin --empirical)" if (
            "margin_empirical" in columns) else ""
        raise RcertError(f"none of the columns {', '.join(columns)} is in the results{hint}; "
                         f"choose from {', '.join(models[0].df.columns)}")
    with style_context():
        fig, axes = new_figure(len(present), width=5.6, height=4.6)
        for ax, col in zip(axes, present, strict=True):
            drawn = [m for m in models if col in m.df.columns]
            values = [m.df[col].to_numpy(np.float64) for m in drawn]
            positive = np.concatenate([v[v > 0] for v in values])
            log = is_wide(positive)
            for model, v in zip(drawn, values, strict=True):
                keep = np.isfinite(v) & (v > 0 if log else True)
                n_inf = int(np.isinf(v).sum())
                n_zero = int((v == 0).sum()) if log else 0
                hidden = [f"{n} {what}" for n, what in ((n_inf, "= inf"), (n_zero, "= 0")) if n]
                density(ax, v[keep], model, log,
                         f" ({', '.join(hidden)} not shown)" if hidden else "")
            if log:
                log_scale(ax, "x", positive)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend
            ax.set_xlabel(LABELS.get(col, col))
            ax.set_ylabel("density over inputs" + (" (per decade)" if log else ""))
            ax.set_title(col)
            ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
        fig.suptitle("Distribution of margins over the inputs (Camuto et al. 2021, Fig 9a)")
        return finish_figure(fig)


def encoder_diagnostics(results: Results) -> Figure:
    """Encoder standard deviations and Jacobian norm across models [C Fig 9c, d].

    One panel each for ``sigma_min``, ``sigma_mean`` (Fig 9c) and ``jacobian_fro``
    (Fig 9d): a box per model (quartiles, whiskers at 1.5 IQR) over its inputs, with the
    inputs as jittered dots (fixed seed). Larger ``sigma`` and a smaller Jacobian make a
    VAE more robust (Theorem 1).

    Parameters
    ----------
    results : dict or list of dict
        Margin results (``rcert margin``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For a result of another kind.
    """
    titles = {"sigma_min": "smallest encoder std (Fig 9c)",
              "sigma_mean": "mean encoder std (Fig 9c)",
              "jacobian_fro": "encoder Jacobian norm (Fig 9d)"}
    columns = tuple(titles)
    models = models_to_draw(results, "encoder", "margin", columns)
    names = [m.name for m in models]
    with style_context():
        fig, axes = new_figure(len(columns), width=max(3.6, 1.3 * len(models) + 1.6), height=4.6)
        for ax, col in zip(axes, columns, strict=True):
            values = [m.df[col].to_numpy(np.float64) for m in models]
            boxes = ax.boxplot(values, positions=range(len(models)), widths=0.55,
                               showfliers=False, patch_artist=True,
                               medianprops={"color": "0.15"})
            for box, model in zip(boxes["boxes"], models, strict=True):
                box.set(facecolor=(*mpl.colors.to_rgb(model.color), 0.45), edgecolor="0.3")
            ax.set_xticks(range(len(models)), names)
            ax.xaxis.grid(False)
            rng = np.random.default_rng(0)
            for i, v in enumerate(values):
                ax.scatter(i + rng.uniform(-0.14, 0.14, len(v)), v, s=9, color="0.15",
                           alpha=0.6, lw=0, zorder=3)
            ax.set_xlabel("")
            ax.set_ylabel(LABELS[col])
            ax.set_title(titles[col])
        fig.suptitle("Encoder diagnostics over the inputs (Camuto et al. 2021, Fig 9c, d)")
        return finish_figure(fig)


def certified_fraction(results: Results, column: str = "bound_certified") -> Figure:
    """Share of inputs whose certified margin is at least ``e``, against ``e`` (SPEC section 7).

    The dataset-wide view of the certificates [C Sec 3.2.2], one line per model, computed
    by :func:`rcert.statistics.summary.certified_fraction`. The curve steps down at each input's
    margin, so it is evaluated exactly there (and at 0 and just past the largest margin)
    and drawn as steps, not sampled on a grid. At ``e = 0`` it is the share certified at
    all. The radius axis is logarithmic when the margins span more than a factor of 20;
    it then starts a little below the smallest margin, where the curve still equals its
    value at 0.

    Parameters
    ----------
    results : dict or list of dict
        Margin results (``rcert margin``).
    column : str
        ``bound_certified``, ``bound_spectral`` or ``bound_whitened``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    RcertError
        For an unknown ``column`` or a result of another kind.
    """
    columns = ("bound_certified", "bound_spectral", "bound_whitened")
    if column not in columns:
        raise RcertError(f"unknown column {column!r}; choose one of {', '.join(columns)}")
    models = models_to_draw(results, "certified-fraction", "margin", (column,))
    margins = [m.df[column].to_numpy(np.float64) for m in models]
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in margins])
    end = float(positive.max()) * 1.05 if positive.size else 1.0
    log = is_wide(positive)
    start = float(positive.min()) / 1.5 if log else 0.0
    with style_context():
        fig, (ax,) = new_figure(1, width=7.2, height=5.0)
        for model, v in zip(models, margins, strict=True):
            radii = np.unique(np.concatenate([[start], v[np.isfinite(v) & (v > 0)], [end]]))
            curve = _fraction(model.df, radii, columns=(column,))
            ax.plot(radii, curve[column].to_numpy(), color=model.color, lw=2.2,
                    drawstyle="steps-pre",
                    label=f"{model.name}: {count_label(len(v))}, "
                          f"{int((v <= 0).sum())} not certified")
        if log:
            log_scale(ax, "x", positive)
        ax.set_xlim(start, end)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"radius $e$ ($\ell_2$ norm of the input perturbation)")
        ax.set_ylabel(f"share of inputs with {column} ≥ e")
        ax.set_title("Certified fraction against radius (Camuto et al. 2021, Sec 3.2.2; "
                     "docs/plots.md)")
        ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
        return finish_figure(fig)
