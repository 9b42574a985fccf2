"""``rcert attack``: maximum-damage attacks against noise of the same norm."""

from __future__ import annotations

import click

from rcert.attacks.damage import attack
from rcert.cli.app import cli
from rcert.cli.common import attack_options, finish, floats, load_run, or_default, run_options


@cli.command(name="attack")
@run_options
@click.option("--L", "budgets", required=True, multiple=True,
              help="Attack budget ||d|| <= L; a list (0.5,1,2 or repeated --L) gives a "
                   "damage-vs-L curve.")
@click.option("--target", type=click.Choice(["mean", "sigma", "both"]), default="both",
              show_default=True, help="Which encoder output the perturbation reaches.")
@attack_options
def attack_command(model_path: str, data_spec: str | None, limit: int | None, seed: int,
                   device: str, fmt: str, output: str | None, quiet: bool,
                   budgets: tuple[str, ...], target: str, restarts: int | None,
                   steps: int | None, optimizer: str, n_noise: int | None) -> None:
    """Maximum-damage attacks (Camuto et al. Eq 5), against Gaussian noise of the same norm."""
    values = [v for b in budgets for v in floats(b, "--L")]
    model, dataset = load_run(model_path, data_spec, limit, seed, device, output)
    df = attack(model, dataset.x, L=values, target=target, restarts=or_default(restarts, 5),
                steps=or_default(steps, 50), optimizer=optimizer,
                n_noise=or_default(n_noise, 16), seed=seed,
                index=dataset.index, progress=not quiet)
    finish(df, "attack", model, model_path, dataset, device, fmt, output)
