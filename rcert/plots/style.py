"""The figures' shared look: colours, axis labels, log-scale choice and figure layout."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

#: Model colours: seaborn's colour-blind palette without its vermilion, kept for violations.
COLORS = [c for i, c in enumerate(sns.color_palette("colorblind")) if i != 3]


VIOLATION = "#e41a1c"


#: Up to this many inputs, curves also show each input's own line.
FEW_INPUTS = 12


#: Values spanning more than this factor are drawn on a log axis.
WIDE = 20.0


#: Labels of the columns the figures draw, with the paper's symbols.
LABELS = {
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


@contextmanager
def style_context() -> Iterator[None]:
    """The figures' look, for the duration of one plot function only."""
    with mpl.rc_context(), sns.axes_style("whitegrid"), sns.plotting_context("notebook",
                                                                            font_scale=0.85):
        yield


def new_figure(panels: int, width: float = 6.4, height: float = 4.8) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``panels`` axes side by side."""
    fig = Figure(figsize=(width * panels, height), layout="constrained")
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def finish_figure(fig: Figure) -> Figure:
    """Lay the figure out while the style is active, so that ticks, which matplotlib makes
    lazily at the first draw, take the figure's style and not the caller's."""
    fig.draw_without_rendering()
    return fig


def is_wide(values: np.ndarray) -> bool:
    """Whether positive ``values`` span enough orders of magnitude to need a log axis."""
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() > WIDE * values.min())


def log_scale(ax: Axes, which: str, values: np.ndarray) -> None:
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


def count_label(n: int) -> str:
    return f"{n} input" if n == 1 else f"{n} inputs"


def n_inputs_drawn(model: Model) -> int:
    """How many distinct inputs a result holds (curve and attack results repeat them)."""
    return int(model.df["index"].nunique()) if "index" in model.df else len(model.df)


class Model(NamedTuple):
    """One result ready to draw: its name, inputs, config and colour."""

    name: str
    df: pd.DataFrame
    config: dict[str, Any]
    color: Any
