"""``rcert attack``: maximum-damage attacks against noise of the same norm."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import execute, floats, run_options, start
from rcert.cli.options import attack_config, attack_options, certify_options
from rcert.settings import DAMAGE_ATTACK

_FIELDS = ("threat", "preset", "optimizer", "restarts", "steps", "n_noise", "n_check")


@cli.command(name="attack", short_help="Maximum-damage attacks against noise.")
@run_options
@click.option("--L", "budgets", required=True, multiple=True,
              help="Attack budget ||d|| <= L; a list (0.5,1,2 or repeated --L) gives a "
                   "damage-vs-L curve.")
@certify_options(with_r=False, names=("seed",))
@attack_options(DAMAGE_ATTACK, names=_FIELDS)
def attack_command(budgets: tuple[str, ...], **values: Any) -> None:
    """Maximum-damage attacks (Camuto et al. 2021, Eq 5) within ||d|| <= L and the data
    range, against Gaussian noise of the same norm: damage, distortion and log-likelihood
    degradation."""
    from rcert.attacks.damage import attack

    run, source = start(values)
    config = attack_config(DAMAGE_ATTACK, values)
    budget_list = [v for b in budgets for v in floats(b, "--L")]
    execute("attack", values, run, source, lambda model, dataset: attack(
        model, dataset.x, config, L=budget_list, seed=values["seed"], index=dataset.index,
        run=run))
