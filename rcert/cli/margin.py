"""``rcert margin``: per-input certificates and the dataset-wide summary."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import certify_config, execute, run_options, start
from rcert.cli.options import attack_config, attack_options, certify_options
from rcert.settings import EMPIRICAL_ATTACK


@cli.command(short_help="Certified margins per input and dataset-wide.")
@run_options
@certify_options()
@click.option("--empirical", is_flag=True,
              help="Also attack every certificate: empirical margin, violations, tightness.")
@attack_options(EMPIRICAL_ATTACK)
def margin(empirical: bool, **values: Any) -> None:
    """Theorem 1 margins (Camuto et al. 2021) and their tighter relatives, per input and
    dataset-wide. With --empirical, attacks try to break every certificate; the attack
    options apply then only."""
    from rcert.api import certify
    from rcert.models.contract import require_sigma

    run, source = start(values)
    attack = attack_config(EMPIRICAL_ATTACK, values) if empirical else None

    def compute(model: Any, dataset: Any) -> Any:
        # Before the radius: a deterministic model has no recommended r to complain about.
        require_sigma(model, "a certified margin", DETERMINISTIC_INSTEAD, name=source.path)
        return certify(model, dataset.x, certify_config(model, source, values),
                       index=dataset.index, attack=attack, run=run)

    execute("margin", values, run, source, compute)


#: What applies to a deterministic autoencoder in place of ``rcert margin``.
DETERMINISTIC_INSTEAD = ("use rcert latent-attack for its fidelity curves, rcert attack --kind "
                         "damage for the damage within a budget, or rcert report --r R "
                         "--empirical for its Jacobian norms and empirical margins")
