"""``rcert margin``: per-input certificates and the dataset-wide summary."""

from __future__ import annotations

import click

from rcert import validate
from rcert.cli.app import cli
from rcert.cli.common import attack_options, finish, load_run, or_default, run_options
from rcert.engine.certify import certify
from rcert.runs import loading


@cli.command()
@run_options
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: the checkpoint's recommended r].")
@click.option("--n-samples", type=int, default=1000, show_default=True,
              help="Encoder-noise draws per input.")
@click.option("--alpha", type=float, default=0.001, show_default=True,
              help="Certified figures hold with probability 1 - alpha.")
@click.option("--m", "m", type=float, default=0.5, show_default=True,
              help="Level of r-robustness: P(||Delta|| <= r) > m.")
@click.option("--memory-mb", type=float, default=256.0, show_default=True,
              help="Memory budget of one chunk of work.")
@click.option("--empirical", is_flag=True,
              help="Also attack every certificate: empirical margin, violations, tightness.")
@click.option("--threat", type=click.Choice(["mean", "full"]), default="mean",
              show_default=True,
              help="With --empirical: attack the mean only (the bound's threat model) or "
                   "mean and sigma.")
@click.option("--resolution", type=float, default=None,
              help="With --empirical: bisection width [default: 2% of the margin].")
@attack_options
def margin(model_path: str, data_spec: str | None, limit: int | None, seed: int, device: str,
           fmt: str, output: str | None, quiet: bool, r: float | None, n_samples: int,
           alpha: float, m: float, memory_mb: float, empirical: bool, threat: str,
           resolution: float | None, restarts: int | None, steps: int | None,
           optimizer: str, n_noise: int | None) -> None:
    """Theorem 1 margins and their tighter relatives, per input and dataset-wide."""
    validate.positive_float(memory_mb, "--memory-mb")
    model, dataset = load_run(model_path, data_spec, limit, seed, device, output)
    attack = {"restarts": or_default(restarts, 1), "steps": or_default(steps, 10),
              "optimizer": optimizer,
              "n_noise": or_default(n_noise, 32), "resolution": resolution}
    df = certify(model, dataset.x, r=loading.radius(model, r, model_path), m=m,
                 n_samples=n_samples, alpha=alpha, seed=seed, index=dataset.index,
                 memory_mb=memory_mb, progress=not quiet, empirical=empirical,
                 threat="both" if threat == "full" else "mean", attack=attack)
    finish(df, "margin", model, model_path, dataset, device, fmt, output)
