"""``rcert curve``: ``p(rho)`` along a fixed direction."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import certify_config, finish, floats, load_run, run_config, run_options
from rcert.cli.options import attack_options, certify_options, model_source
from rcert.settings import EMPIRICAL_ATTACK


@cli.command(name="curve", short_help="p(||Delta|| <= r) along a fixed direction.")
@run_options
@click.option("--radii", required=True, help="Perturbation sizes rho, e.g. 0,0.25,0.5,1,2.")
@click.option("--direction", type=click.Choice(["random", "max-damage"]), default="random",
              show_default=True,
              help="A seeded Gaussian direction per input, or the maximum-damage attack's.")
@certify_options()
@attack_options(EMPIRICAL_ATTACK, names=("threat",))
def curve_command(model_path: str, data_spec: str | None, limit: int | None, fmt: str,
                  output: str | None, quiet: bool, device: str | None,
                  memory_mb: float | None, radii: str, direction: str, threat: str | None,
                  **values: Any) -> None:
    """p(rho) = P(||Delta(x, rho u)|| <= r) along a fixed direction u (Camuto et al. 2021,
    Fig 5), with its confidence bounds; an input is certified at rho when p_lower > m and
    broken when p_upper <= m."""
    from rcert import checks
    from rcert.evaluation.curves import curve

    run = run_config(device, memory_mb, quiet, values["allow"])
    source = model_source(model_path, values)
    radius_list = floats(radii, "--radii")
    model, dataset = load_run(source, data_spec, limit, run, output, values.get("seed"))
    config = certify_config(model, model_path, values)
    with checks.collect(reissue=False) as warned:
        df = curve(model, dataset.x, config, radii=radius_list, direction=direction,
                   threat=threat,
                   index=dataset.index, run=run)
    finish(df, "curve", model, source, dataset, run, fmt, output, warned)
