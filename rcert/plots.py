"""Figures of Camuto et al. (2021) drawn from rcert result documents.

Every plot function takes one result (the dict of :func:`rcert.report.result`, or a JSON file
read by :func:`load_result`) or a list of them, one per model drawn side by side, and returns
a :class:`matplotlib.figure.Figure`. :func:`save` writes a figure as PNG or SVG.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot: no
backend is chosen or changed, nothing is shown, and no window opens. Styles apply inside each
function only (``matplotlib.rc_context`` and seaborn's style contexts), so the caller's
``rcParams`` stay as they were. The same input gives the same figure, and :func:`save` writes
it byte for byte the same. ``[C]`` is Camuto et al. (2021); see docs/plots.md.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

from rcert import report
from rcert.errors import RcertError
from rcert.files import atomic_write
from rcert.report import INPUT_MARGINS, KINDS, SCHEMA_VERSION, fit_line
from rcert.report import certified_fraction as _fraction

Results = dict[str, Any] | Sequence[dict[str, Any]]

#: The command that makes each kind of result.
_MAKE = {"margin": "rcert margin --format json", "attack": "rcert attack --format json",
         "curve": "rcert curve --format json"}
#: Model colours: seaborn's colour-blind palette without its vermilion, kept for violations.
_COLORS = [c for i, c in enumerate(sns.color_palette("colorblind")) if i != 3]
_VIOLATION = "#e41a1c"
#: Up to this many inputs, curves also show each input's own line.
_FEW_INPUTS = 12
#: Values spanning more than this factor are drawn on a log axis.
_WIDE = 20.0
#: Labels of the columns the figures draw, with the paper's symbols.
_LABELS = {
    "bound": r"Theorem 1 bound [C Eq 4], with $\hat{p}$",
    "bound_certified": r"certified Theorem 1 bound, with $p_{\mathrm{lower}}$",
    "bound_spectral": r"spectral-norm bound, with $p_{\mathrm{lower}}$",
    "bound_whitened": r"whitened bound, with $p_{\mathrm{lower}}$",
    "latent_margin": "latent margin (latent space)",
    "margin_empirical": r"empirical margin $R_{\mathrm{emp}}(\mathbf{x})$",
    "sigma_min": r"smallest encoder std $\sigma_{\min}(\mathbf{x})$",
    "sigma_mean": r"mean encoder std $\bar{\sigma}(\mathbf{x})$",
    "jacobian_fro": r"encoder Jacobian $\|J_\mu(\mathbf{x})\|_F$",
    "damage": r"damage $\|g(\mu(\mathbf{x}+\delta)) - g(\mu(\mathbf{x}))\|_2$",
    "loglik_degradation": "relative log-likelihood degradation",
}
#: SVG metadata: no date (reproducible output) and none of matplotlib's URLs.
_SVG_METADATA = {"Date": None, "Creator": None, "Type": None, "Format": None}
#: The DOCTYPE matplotlib writes names a remote DTD; SVG needs none, so it is dropped.
_SVG_DOCTYPE = (b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
                b'  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n')
_FORMATS = {".png": "png", ".svg": "svg"}


class _Model(NamedTuple):
    """One result ready to draw: its name, inputs, config and colour."""

    name: str
    df: pd.DataFrame
    config: dict[str, Any]
    color: Any


def _reject_constant(name: str) -> float:
    raise RcertError(f"the file holds {name}, which strict JSON does not allow; rcert writes "
                     f'non-finite numbers as the strings "inf", "-inf" and "nan"')


def load_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a result document written by ``rcert margin|attack|curve --format json``.

    Parameters
    ----------
    path : str or path-like
        The JSON file.

    Returns
    -------
    dict
        The result, with the strings ``"inf"``, ``"-inf"`` and ``"nan"`` in ``inputs`` and
        ``summary`` turned back into floats.

    Raises
    ------
    RcertError
        If the file is missing or unreadable, is not strict JSON, or is not an rcert result
        of a known schema version and kind.
    """
    path = Path(path)
    make = "write one with rcert margin, attack or curve --format json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RcertError(f"cannot read {path}: no such file; {make}") from None
    except IsADirectoryError:
        raise RcertError(f"cannot read {path}: it is a folder; give a result JSON file") from None
    except UnicodeDecodeError:
        raise RcertError(f"cannot read {path}: it is not UTF-8 text; {make}") from None
    except OSError as exc:
        raise RcertError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RcertError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}); {make}") from None
    except RcertError as exc:
        raise RcertError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not {"schema_version", "kind", "inputs"} <= doc.keys():
        raise RcertError(f"{path} is not an rcert result (a JSON object with schema_version, "
                         f"kind and inputs); {make}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise RcertError(f"{path} has result schema version {doc['schema_version']!r}, but this "
                         f"rcert reads version {SCHEMA_VERSION}; use the rcert that wrote it")
    if doc["kind"] not in KINDS:
        raise RcertError(f"{path} has unknown kind {doc['kind']!r}; expected one of "
                         f"{', '.join(KINDS)}")
    if not isinstance(doc["inputs"], list) or not all(isinstance(r, dict) for r in doc["inputs"]):
        raise RcertError(f"{path}: inputs must be a list of objects, one per input; {make}")
    doc["inputs"] = report.restore(doc["inputs"])
    doc["summary"] = report.restore(doc.get("summary", {}))
    return doc


def frame(result: dict[str, Any]) -> pd.DataFrame:
    """The inputs of a result as a DataFrame, one row per input (per input and radius or budget).

    Parameters
    ----------
    result : dict
        A result of :func:`rcert.report.result` or :func:`load_result`.

    Returns
    -------
    pandas.DataFrame
        Float columns, with the strings ``"inf"``, ``"-inf"`` and ``"nan"`` turned into
        floats; integer and boolean columns (``index``, ``k``, ``abstain``, ...) keep their
        type.

    Raises
    ------
    RcertError
        If ``inputs`` is not a list of rows or a column holds something that is not a number.
    """
    inputs = result.get("inputs") if isinstance(result, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(row, dict) for row in inputs):
        raise RcertError("the result has no inputs list; load it with rcert.plots.load_result "
                         "or make it with rcert.report.result(df, kind=...)")
    try:
        return report.inputs_frame(inputs)
    except ValueError as exc:
        raise RcertError(f"{exc}; rewrite the result with rcert") from None


def label(result: dict[str, Any]) -> str:
    """A short model name: the checkpoint's file stem (``models/vae-digits.rcert`` gives
    ``vae-digits``), else ``"model"``."""
    model = result.get("model") if isinstance(result, dict) else None
    path = model.get("path") if isinstance(model, dict) else None
    if not isinstance(path, str) or not path:
        return "model"
    return Path(path).stem or "model"


def _models(results: Results, plot: str, kind: str, needed: Sequence[str],
            hint: str | None = None) -> list[_Model]:
    """Check the results for one plot and give them names, frames and colours."""
    if isinstance(results, dict):
        results = [results]
    if not isinstance(results, Sequence) or isinstance(results, str) or not results:
        raise RcertError(f"{plot} takes a result dict or a non-empty list of them; read one "
                         f"with rcert.plots.load_result(path)")
    for res in results:
        if not isinstance(res, dict) or "kind" not in res:
            raise RcertError(f"{plot} takes result dicts with a kind; make one with "
                             f"rcert.report.result(df, kind=...) or rcert.plots.load_result")
    names = [label(res) for res in results]
    names = [f"{name} ({names[:i].count(name) + 1})" if names.count(name) > 1 else name
             for i, name in enumerate(names)]
    models = []
    for i, (res, name) in enumerate(zip(results, names, strict=True)):
        if res["kind"] != kind:
            article = "an" if kind[0] in "aeiou" else "a"
            raise RcertError(f"{plot} needs {article} {kind} result, but {name} is a "
                             f"{res['kind']} result; make one with {_MAKE[kind]}")
        df = frame(res)
        if df.empty:
            raise RcertError(f"{name} has no inputs; run {_MAKE[kind]} on at least one input")
        missing = [col for col in needed if col not in df.columns]
        if missing:
            raise RcertError(f"{name} lacks {', '.join(missing)}, which {plot} needs; "
                             f"{hint or 'make it with ' + _MAKE[kind]}")
        models.append(_Model(name, df, res.get("config") or {}, _COLORS[i % len(_COLORS)]))
    return models


@contextmanager
def _style() -> Iterator[None]:
    """The figures' look, for the duration of one plot function only."""
    with mpl.rc_context(), sns.axes_style("whitegrid"), sns.plotting_context("notebook",
                                                                            font_scale=0.85):
        yield


def _figure(panels: int, width: float = 6.4, height: float = 4.8) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``panels`` axes side by side."""
    fig = Figure(figsize=(width * panels, height), layout="constrained")
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def _finish(fig: Figure) -> Figure:
    """Lay the figure out while the style is active, so that ticks, which matplotlib makes
    lazily at the first draw, take the figure's style and not the caller's."""
    fig.draw_without_rendering()
    return fig


def _wide(values: np.ndarray) -> bool:
    """Whether positive ``values`` span enough orders of magnitude to need a log axis."""
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() > _WIDE * values.min())


def _log_scale(ax: Axes, which: str, values: np.ndarray) -> None:
    """Make the ``which`` ("x" or "y") axis logarithmic with plain-number labels.

    Ticks fall at 1, 2 and 5 times powers of ten when ``values`` span under three decades,
    at powers of ten otherwise; minor ticks carry no labels, which would collide.
    """
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    values = values[np.isfinite(values) & (values > 0)]
    decades = math.log10(values.max() / values.min())
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,)))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _count(n: int) -> str:
    return f"{n} input" if n == 1 else f"{n} inputs"


def _inputs(model: _Model) -> int:
    """How many distinct inputs a result holds (curve and attack results repeat them)."""
    return int(model.df["index"].nunique()) if "index" in model.df else len(model.df)


def bound_vs_empirical(results: Results, bound: str = "bound") -> Figure:
    """The empirical margin against a certified bound, one colour per model [C Fig 6a-c].

    Each dot is one input: ``margin_empirical`` (y) against the ``bound`` column (x). The
    legend gives, per model, the least-squares line and Pearson's rho of
    :func:`rcert.report.fit_line`. The dashed line is ``y = x``: a sound bound puts the dots
    on or above it. Violations (``R_emp`` below ``bound_certified`` beyond Monte Carlo error) have
    a red ring. Inputs with a bound of 0 (nothing certified) or ``inf``, or with
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
    models = _models(results, "bound-vs-empirical", "margin",
                     (bound, "margin_empirical", "violation"),
                     hint="run rcert margin --empirical (rcert.certify(..., empirical=True))")
    with _style():
        fig, (ax,) = _figure(1, width=7.2, height=6.0)
        columns = [(m.df[bound].to_numpy(np.float64),
                    m.df["margin_empirical"].to_numpy(np.float64)) for m in models]
        kept = [np.isfinite(x) & (x > 0) & np.isfinite(y) for x, y in columns]
        everything = np.concatenate([np.concatenate([x[k], y[k]])
                                     for (x, y), k in zip(columns, kept, strict=True)])
        log = _wide(everything)
        low, top = 0.0, 1.0
        if everything.size:
            top = float(everything.max()) * (1.5 if log else 1.08)
            low = float(everything.min()) / 1.5 if log else 0.0
        violations = 0
        for model, (x, y), keep in zip(models, columns, kept, strict=True):
            broke = model.df["violation"].to_numpy(bool)[keep]
            violations += int(broke.sum())
            excluded = len(x) - int(keep.sum())
            note = f", {excluded} excluded" if excluded else ""
            ax.scatter(x[keep], y[keep], s=np.where(broke, 70, 30), color=model.color,
                       edgecolors=[_VIOLATION if b else "white" for b in broke],
                       linewidths=np.where(broke, 2.0, 0.6), alpha=0.85, zorder=3,
                       label=f"{model.name}: {_count(int(keep.sum()))}{note}")
            fit = fit_line(x, y)
            if math.isnan(fit["slope"]):
                ax.plot([], [], color=model.color,
                        label=f"{model.name}: rho = n/a (too few inputs for a fit)")
                continue
            grid = (np.geomspace if log else np.linspace)(x[keep].min(), x[keep].max(), 64)
            sign = "-" if fit["intercept"] < 0 else "+"
            ax.plot(grid, fit["slope"] * grid + fit["intercept"], color=model.color, lw=1.8,
                    zorder=2,
                    label=f"{model.name} least squares: y = {fit['slope']:.2f}x {sign} "
                          f"{abs(fit['intercept']):.2g}, rho = {fit['correlation']:.2f}")
        ax.plot([low, top], [low, top], color="0.15", ls="--", lw=1.2, zorder=1,
                label="y = x (a sound bound puts the dots on or above it)")
        if log:
            _log_scale(ax, "x", everything)
            _log_scale(ax, "y", everything)
        ax.set_xlim(low, top)
        ax.set_ylim(low, top)
        handles, labels = ax.get_legend_handles_labels()
        if violations:
            handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="white",
                                  markeredgecolor=_VIOLATION, markeredgewidth=2.0))
            labels.append(f"violation: R_emp < certified bound ({violations})")
        title = None
        if not all(k.all() for k in kept):
            title = "excluded: bound 0 or inf, or R_emp = inf (no attack succeeded)"
        # Sound bounds put the dots above y = x, which leaves the lower right free.
        ax.legend(handles, labels, loc="lower right", fontsize="small", title=title,
                  title_fontsize="small", framealpha=0.9)
        ax.set_xlabel(_LABELS[bound])
        ax.set_ylabel(_LABELS["margin_empirical"])
        ax.set_title("Empirical margin against the bound (Camuto et al. 2021, Fig 6)")
        return _finish(fig)


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
    models = _models(results, "curves", "curve", ("index", "rho", "p_hat"))
    with _style():
        fig, (ax,) = _figure(1, width=7.2, height=5.0)
        for model in models:
            df = model.df.sort_values(["index", "rho"])
            if _inputs(model) <= _FEW_INPUTS:
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
                    label=f"{model.name} ({setting}): mean ± std of {_count(_inputs(model))}")
        for m in sorted({float(model.config.get("m", 0.5)) for model in models}):
            ax.axhline(m, color="0.15", ls=":", lw=1.4, label=f"m = {m:g}: r-robust above")
        if any(_inputs(model) <= _FEW_INPUTS for model in models):
            ax.plot([], [], color="0.4", lw=0.7, label="thin lines: single inputs")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"perturbation size $\rho = \|\delta_x\|_2$ along a fixed direction")
        ax.set_ylabel(r"$p(\|\Delta(\mathbf{x}, \delta_x)\|_2 \leq r)$")
        ax.set_title("Robustness along a fixed direction (Camuto et al. 2021, Fig 5, 7 left)")
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
        return _finish(fig)


def _density(ax: Axes, values: np.ndarray, model: _Model, log: bool, hidden: str) -> None:
    """A KDE with a rug of the values, or the rug alone when a density cannot be estimated."""
    text = f"{model.name}: {_count(values.size)}{hidden}"
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
    models = _models(results, "margins", "margin", ())
    present = [col for col in columns if any(col in m.df.columns for m in models)]
    if not present:
        hint = " (margin_empirical needs rcert margin --empirical)" if (
            "margin_empirical" in columns) else ""
        raise RcertError(f"none of the columns {', '.join(columns)} is in the results{hint}; "
                         f"choose from {', '.join(models[0].df.columns)}")
    with _style():
        fig, axes = _figure(len(present), width=5.6, height=4.6)
        for ax, col in zip(axes, present, strict=True):
            drawn = [m for m in models if col in m.df.columns]
            values = [m.df[col].to_numpy(np.float64) for m in drawn]
            positive = np.concatenate([v[v > 0] for v in values])
            log = _wide(positive)
            for model, v in zip(drawn, values, strict=True):
                keep = np.isfinite(v) & (v > 0 if log else True)
                n_inf = int(np.isinf(v).sum())
                n_zero = int((v == 0).sum()) if log else 0
                hidden = [f"{n} {what}" for n, what in ((n_inf, "= inf"), (n_zero, "= 0")) if n]
                _density(ax, v[keep], model, log,
                         f" ({', '.join(hidden)} not shown)" if hidden else "")
            if log:
                _log_scale(ax, "x", positive)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend
            ax.set_xlabel(_LABELS.get(col, col))
            ax.set_ylabel("density over inputs" + (" (per decade)" if log else ""))
            ax.set_title(col)
            ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
        fig.suptitle("Distribution of margins over the inputs (Camuto et al. 2021, Fig 9a)")
        return _finish(fig)


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
    models = _models(results, "encoder", "margin", columns)
    names = [m.name for m in models]
    with _style():
        fig, axes = _figure(len(columns), width=max(3.6, 1.3 * len(models) + 1.6), height=4.6)
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
            ax.set_ylabel(_LABELS[col])
            ax.set_title(titles[col])
        fig.suptitle("Encoder diagnostics over the inputs (Camuto et al. 2021, Fig 9c, d)")
        return _finish(fig)


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
    models = _models(results, "damage", "attack", ("L", measure, noise))
    for model in models:
        if model.df[measure].isna().all():
            raise RcertError(f"{model.name} has no {measure} (its model has no "
                             f"log_likelihood); plot measure='damage' instead")
    with _style():
        fig, (ax,) = _figure(1, width=7.2, height=5.0)
        for model in models:
            by_budget = model.df.groupby("L", sort=True)[[measure, noise]]
            mean, std = by_budget.mean(), by_budget.std(ddof=0)
            budget = mean.index.to_numpy(np.float64)
            ax.fill_between(budget, np.maximum(mean[measure] - std[measure], 0),
                            mean[measure] + std[measure], color=model.color, alpha=0.2, lw=0)
            ax.plot(budget, mean[measure], color=model.color, lw=2.2, marker="o", ms=5,
                    label=f"{model.name}: attack, mean ± std of {_count(_inputs(model))}")
            ax.plot(budget, mean[noise], color=model.color, lw=1.6, ls="--", marker="s", ms=4,
                    label=f"{model.name}: Gaussian noise of norm L")
        ax.set_ylim(bottom=0)
        ax.set_xlabel(r"attack budget $L$ (largest $\|\delta_x\|_2$)")
        ax.set_ylabel(_LABELS[measure])
        ax.set_title("Maximum-damage attack against its budget (Camuto et al. 2021, Fig 9b)")
        ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
        return _finish(fig)


def certified_fraction(results: Results, column: str = "bound_certified") -> Figure:
    """Share of inputs whose certified margin is at least ``e``, against ``e`` (SPEC section 7).

    The dataset-wide view of the certificates [C Sec 3.2.2], one line per model, computed
    by :func:`rcert.report.certified_fraction`. The curve steps down at each input's
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
    models = _models(results, "certified-fraction", "margin", (column,))
    margins = [m.df[column].to_numpy(np.float64) for m in models]
    positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in margins])
    end = float(positive.max()) * 1.05 if positive.size else 1.0
    log = _wide(positive)
    start = float(positive.min()) / 1.5 if log else 0.0
    with _style():
        fig, (ax,) = _figure(1, width=7.2, height=5.0)
        for model, v in zip(models, margins, strict=True):
            radii = np.unique(np.concatenate([[start], v[np.isfinite(v) & (v > 0)], [end]]))
            curve = _fraction(model.df, radii, columns=(column,))
            ax.plot(radii, curve[column].to_numpy(), color=model.color, lw=2.2,
                    drawstyle="steps-pre",
                    label=f"{model.name}: {_count(len(v))}, {int((v <= 0).sum())} not certified")
        if log:
            _log_scale(ax, "x", positive)
        ax.set_xlim(start, end)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(r"radius $e$ ($\ell_2$ norm of the input perturbation)")
        ax.set_ylabel(f"share of inputs with {column} ≥ e")
        ax.set_title("Certified fraction against radius (SPEC section 7)")
        ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
        return _finish(fig)


#: The plots by the KIND name of ``rcert plot KIND RESULT.json...``.
PLOTS: dict[str, Callable[..., Figure]] = {
    "bound-vs-empirical": bound_vs_empirical,
    "curves": robustness_curves,
    "margins": margin_distributions,
    "encoder": encoder_diagnostics,
    "damage": damage_vs_budget,
    "certified-fraction": certified_fraction,
}


def render(fig: Figure, fmt: str) -> bytes:
    """A figure as ``"png"`` (150 dpi) or ``"svg"`` bytes, deterministic (see :func:`save`)."""
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rcert"}):
        if fmt == "png":
            fig.savefig(buffer, format="png", dpi=150)
        else:
            fig.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    data = buffer.getvalue()
    return data if fmt == "png" else data.replace(_SVG_DOCTYPE, b"", 1)


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write a figure as PNG (150 dpi) or SVG, chosen by the suffix of ``path``.

    The file is written atomically (:func:`rcert.files.atomic_write`). SVG keeps text as
    text (no embedded fonts), carries no date, and references nothing remote; the same
    figure gives the same bytes, in SVG and in PNG.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure of this module (any figure works).
    path : str or path-like
        Where to write; the suffix ``.png`` or ``.svg`` picks the format.

    Raises
    ------
    RcertError
        For another suffix, or when the file cannot be written.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise RcertError(f"cannot save {path}: unknown suffix {path.suffix or '(none)'!r}; "
                         f"use .png or .svg")
    atomic_write(path, render(fig, fmt))
