"""``rcert margin``: per-input certificates and the dataset-wide summary."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import certify_config, finish, load_run, run_config, run_options
from rcert.cli.options import attack_config, attack_options, certify_options, model_source
from rcert.settings import EMPIRICAL_ATTACK


@cli.command(short_help="Certified margins per input and dataset-wide.")
@run_options
@certify_options()
@click.option("--empirical", is_flag=True,
              help="Also attack every certificate: empirical margin, violations, tightness.")
@attack_options(EMPIRICAL_ATTACK)
def margin(model_path: str, data_spec: str | None, limit: int | None, fmt: str,
           output: str | None, quiet: bool, device: str | None, memory_mb: float | None,
           empirical: bool, **values: Any) -> None:
    """Theorem 1 margins (Camuto et al. 2021) and their tighter relatives, per input and
    dataset-wide. With --empirical, attacks try to break every certificate; the attack
    options apply then only."""
    from rcert import checks
    from rcert.api import certify

    run = run_config(device, memory_mb, quiet, values["allow"])
    source = model_source(model_path, values)
    attack = attack_config(EMPIRICAL_ATTACK, values) if empirical else None
    model, dataset = load_run(source, data_spec, limit, run, output, values.get("seed"))
    config = certify_config(model, model_path, _certify_values(values))
    with checks.collect(reissue=False) as warned:
        df = certify(model, dataset.x, config, index=dataset.index, attack=attack, run=run)
    finish(df, "margin", model, source, dataset, run, fmt, output, warned)


def _certify_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in ("r", "m", "n_samples", "alpha", "seed")}
