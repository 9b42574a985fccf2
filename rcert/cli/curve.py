"""``rcert curve``: ``p(rho)`` along a fixed direction."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import certify_config, execute, floats, run_options, start
from rcert.cli.options import attack_options, certify_options
from rcert.settings import EMPIRICAL_ATTACK


@cli.command(name="curve", short_help="p(||Delta|| <= r) along a fixed direction.")
@run_options
@click.option("--radii", required=True, help="Perturbation sizes rho, e.g. 0,0.25,0.5,1,2.")
@click.option("--direction", type=click.Choice(["random", "max-damage"]), default="random",
              show_default=True,
              help="A seeded Gaussian direction per input, or the maximum-damage attack's.")
@certify_options()
@attack_options(EMPIRICAL_ATTACK, names=("threat",))
def curve_command(radii: str, direction: str, **values: Any) -> None:
    """p(rho) = P(||Delta(x, rho u)|| <= r) along a fixed direction u (Camuto et al. 2021,
    Fig 5), with its confidence bounds; an input is certified at rho when p_lower > m and
    broken when p_upper <= m."""
    from rcert.evaluation.curves import curve
    from rcert.models.contract import require_sigma

    run, source = start(values)
    radius_list = floats(radii, "--radii")

    def compute(model: Any, dataset: Any) -> Any:
        # Before the radius: a deterministic model has no recommended r to complain about.
        require_sigma(model, "a robustness curve P(||Delta(x, rho u)|| <= r)",
                      "use rcert attack --kind damage for its damage against the budget",
                      name=source.path)
        return curve(model, dataset.x, certify_config(model, source, values),
                     radii=radius_list, direction=direction, threat=values["threat"],
                     index=dataset.index, run=run)

    execute("curve", values, run, source, compute)
