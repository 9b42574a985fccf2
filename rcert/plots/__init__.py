"""Figures of Camuto et al. (2021) drawn from rcert result documents (see docs/plots.md).

Every plot takes one result (the dict of :func:`rcert.results.schema.result`, or a JSON file
read by :func:`load_result`) or a list of them, one per model drawn side by side, and returns
a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG or SVG.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from rcert.plots.curves import damage_vs_budget, robustness_curves
from rcert.plots.loading import frame, label, load_result
from rcert.plots.margins import (
    bound_vs_empirical,
    certified_fraction,
    encoder_diagnostics,
    margin_distributions,
)
from rcert.plots.output import render, save

#: The plots by the KIND name of ``rcert plot KIND RESULT.json...``.
PLOTS: dict[str, Callable[..., Figure]] = {
    "bound-vs-empirical": bound_vs_empirical,
    "curves": robustness_curves,
    "margins": margin_distributions,
    "encoder": encoder_diagnostics,
    "damage": damage_vs_budget,
    "certified-fraction": certified_fraction,
}

__all__ = [
    "PLOTS", "bound_vs_empirical", "certified_fraction", "damage_vs_budget",
    "encoder_diagnostics", "frame", "label", "load_result", "margin_distributions", "render",
    "robustness_curves", "save",
]
