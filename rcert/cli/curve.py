"""``rcert curve``: ``p(rho)`` along a fixed direction."""

from __future__ import annotations

import click

from rcert.cli.app import cli
from rcert.cli.common import finish, floats, load_run, run_options
from rcert.evaluation.curves import curve
from rcert.runs import loading


@cli.command(name="curve")
@run_options
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: the checkpoint's recommended r].")
@click.option("--radii", required=True, help="Perturbation sizes, e.g. 0,0.25,0.5,1,2.")
@click.option("--direction", type=click.Choice(["random", "max-damage"]), default="random",
              show_default=True)
@click.option("--threat", type=click.Choice(["mean", "full"]), default="mean",
              show_default=True)
@click.option("--n-samples", type=int, default=500, show_default=True)
@click.option("--m", "m", type=float, default=0.5, show_default=True)
def curve_command(model_path: str, data_spec: str | None, limit: int | None, seed: int,
                  device: str, fmt: str, output: str | None, quiet: bool, r: float | None,
                  radii: str, direction: str, threat: str, n_samples: int, m: float) -> None:
    """p(||Delta(x, rho u)|| <= r) along a fixed direction u (Camuto et al. Fig 5)."""
    values = floats(radii, "--radii")
    model, dataset = load_run(model_path, data_spec, limit, seed, device, output)
    df = curve(model, dataset.x, r=loading.radius(model, r, model_path), radii=values,
               direction=direction, m=m, threat="both" if threat == "full" else "mean",
               n_samples=n_samples, seed=seed, index=dataset.index)
    finish(df, "curve", model, model_path, dataset, device, fmt, output)
