"""``rcert measure``: the per-input posterior measures of Willetts et al. (sigma norms, the
ELBO without penalty, the denoising likelihood)."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import execute, floats, run_options, start
from rcert.cli.options import certify_options


@cli.command(name="measure", short_help="Posterior measures: sigma norms, ELBO, denoising.")
@run_options
@click.option("--levels", default="0.1,0.5,1",
              help="Noise scales a of the denoising likelihood, e.g. 0.1,0.5,1.",
              show_default=True)
@click.option("--draws", type=int, default=1, show_default=True,
              help="Posterior draws averaged per input and measure.")
@certify_options(with_r=False, names=("seed",))
def measure_command(levels: str, draws: int, **values: Any) -> None:
    """Per input: ||sigma(x)||_2 (the overlap proxy, Willetts et al. Fig 2), the ELBO
    without any penalty (Fig 6) and log p(x|z) with z ~ q(z|x + a eps) for each noise
    level a (the denoising likelihood, Fig F.12); the summary gives each mean with a 95%
    bootstrap interval."""
    from rcert.evaluation.posteriors import posterior_table

    run, source = start(values)
    level_list = floats(levels, "--levels")
    execute("posteriors", values, run, source, lambda model, dataset: posterior_table(
        model, dataset.x, levels=level_list, draws=draws, seed=values["seed"] or 0,
        index=dataset.index, run=run))
