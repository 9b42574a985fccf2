"""``rcert attack``: maximum-damage attacks against noise of the same norm."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import finish, floats, load_run, run_config, run_options
from rcert.cli.options import attack_config, attack_options, certify_options, model_source
from rcert.settings import DAMAGE_ATTACK

_FIELDS = ("threat", "preset", "optimizer", "restarts", "steps", "n_noise", "n_check")


@cli.command(name="attack", short_help="Maximum-damage attacks against noise.")
@run_options
@click.option("--L", "budgets", required=True, multiple=True,
              help="Attack budget ||d|| <= L; a list (0.5,1,2 or repeated --L) gives a "
                   "damage-vs-L curve.")
@certify_options(with_r=False, names=("seed",))
@attack_options(DAMAGE_ATTACK, names=_FIELDS)
def attack_command(model_path: str, data_spec: str | None, limit: int | None, fmt: str,
                   output: str | None, quiet: bool, device: str | None,
                   memory_mb: float | None, budgets: tuple[str, ...], seed: int | None,
                   **values: Any) -> None:
    """Maximum-damage attacks (Camuto et al. 2021, Eq 5) within ||d|| <= L and the data
    range, against Gaussian noise of the same norm: damage, distortion and log-likelihood
    degradation."""
    from rcert import checks
    from rcert.attacks.damage import attack

    run = run_config(device, memory_mb, quiet, values["allow"])
    source = model_source(model_path, values)
    config = attack_config(DAMAGE_ATTACK, values)
    budget_list = [v for b in budgets for v in floats(b, "--L")]
    model, dataset = load_run(source, data_spec, limit, run, output, seed)
    with checks.collect(reissue=False) as warned:
        df = attack(model, dataset.x, config, L=budget_list, seed=seed, index=dataset.index,
                    run=run)
    finish(df, "attack", model, source, dataset, run, fmt, output, warned)
