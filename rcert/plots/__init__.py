"""Figures of Camuto et al. (2021), Willetts et al. (2021) and Lu & Chen (2023) drawn from
rcert result documents (see docs/plots.md).

Every plot takes one result (the dict of :func:`rcert.results.schema.result`, or a JSON file
read by :func:`load_result`, or each of a report's models read by :func:`load_results`) or
a list of them, one per model drawn side by side, and returns a
:class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG or SVG.

Names are imported on first use: ``rcert plot --help`` lists :data:`KINDS` without paying
for matplotlib and seaborn.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each plot's KIND name (``rcert plot KIND RESULT.json...``) and where it is defined.
_WHERE = {
    "bound-vs-empirical": ("rcert.plots.margins", "bound_vs_empirical"),
    "curves": ("rcert.plots.curves", "robustness_curves"),
    "margins": ("rcert.plots.margins", "margin_distributions"),
    "encoder": ("rcert.plots.margins", "encoder_diagnostics"),
    "damage": ("rcert.plots.curves", "damage_vs_budget"),
    "certified-fraction": ("rcert.plots.margins", "certified_fraction"),
    "targeted": ("rcert.plots.targeted", "lambda_sweep"),
    "posteriors": ("rcert.plots.posteriors", "posterior_densities"),
    "dd": ("rcert.plots.latent", "dd_curves"),
    "latent-statistics": ("rcert.plots.latent", "latent_statistics"),
    "tsne": ("rcert.plots.latent", "latent_embedding"),
}
#: The plot kinds, in the order docs/plots.md presents them.
KINDS = tuple(_WHERE)

_API = {
    **{function: module for module, function in _WHERE.values()},
    "frame": "rcert.plots.loading", "label": "rcert.plots.loading",
    "load_result": "rcert.plots.loading", "load_results": "rcert.plots.loading",
    "render": "rcert.plots.output", "save": "rcert.plots.output",
}

__all__ = ["KINDS", "PLOTS", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name == "PLOTS":
        value: Any = {kind: getattr(importlib.import_module(module), function)
                      for kind, (module, function) in _WHERE.items()}
    elif name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    else:
        raise AttributeError(f"module 'rcert.plots' has no attribute {name!r}")
    globals()[name] = value
    return value
