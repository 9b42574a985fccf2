"""``rcert attack``: maximum-damage attacks against noise of the same norm, or the targeted
attacks of Willetts et al. under their lambda sweep (``--kind``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import execute, floats, run_options, start
from rcert.cli.options import (
    apply,
    attack_config,
    attack_options,
    build,
    certify_options,
    given,
    option_for,
)
from rcert.errors import RcertError
from rcert.settings import DAMAGE_ATTACK, TARGETED_KINDS, TargetedConfig, default

_FIELDS = ("threat", "preset", "optimizer", "restarts", "steps", "n_noise", "n_check")
#: The targeted attack's own options (``--seed`` and ``--n-noise`` are shared).
_TARGETED = tuple(f.name for f in dataclasses.fields(TargetedConfig)
                  if f.name not in ("kind", "seed", "n_noise"))


def _targeted_options(f: Any) -> Any:
    return apply([option_for(TargetedConfig, name, default=None if name == "lambda_values"
                             else default(TargetedConfig, name),
                             multiple=name == "lambda_values") for name in _TARGETED], f)


@cli.command(name="attack", short_help="Maximum-damage or targeted attacks.")
@run_options
@click.option("--kind", type=click.Choice(["damage", *TARGETED_KINDS]), default="damage",
              show_default=True,
              help="damage: maximum-damage attacks within --L against noise (Camuto et al.); "
                   "kl, w2, output-elbo, output-l2: the targeted attacks of Willetts et al. "
                   "on input-target pairs, swept over lambda.")
@click.option("--L", "budgets", multiple=True,
              help="Attack budget ||d|| <= L (--kind damage); a list (0.5,1,2 or repeated "
                   "--L) gives a damage-vs-L curve.")
@click.option("--targets", "targets_spec", default=None,
              help="Data spec to draw the targets from (targeted kinds) [default: --data].")
@certify_options(with_r=False, names=("seed",))
@attack_options(DAMAGE_ATTACK, names=_FIELDS)
@_targeted_options
def attack_command(kind: str, budgets: tuple[str, ...], targets_spec: str | None,
                   **values: Any) -> None:
    """Maximum-damage attacks (Camuto et al. 2021, Eq 5) within ||d|| <= L and the data
    range, against Gaussian noise of the same norm; or, with --kind kl|w2|output-elbo|
    output-l2, the targeted attacks of Willetts et al. (2021) on --pairs input-target pairs
    for each of --lambdas penalty weights, by L-BFGS-B inside the data box (--n-noise: the
    common draws of a stochastic objective)."""
    run, source = start(values)
    if kind == "damage":
        if targets_spec is not None:
            raise RcertError("--targets applies to the targeted attacks; pass --kind kl, w2, "
                             "output-elbo or output-l2, or drop it")
        _damage(budgets, values, run, source)
    else:
        _targeted(kind, budgets, targets_spec, values, run, source)


def _damage(budgets: tuple[str, ...], values: dict[str, Any], run: Any, source: Any) -> None:
    from rcert.attacks.damage import attack

    chosen = [name for name in _TARGETED if values[name] not in (None, ())]
    if chosen:
        raise RcertError(f"--{chosen[0].replace('_', '-')} applies to the targeted attacks; "
                         f"pass --kind kl, w2, output-elbo or output-l2, or drop it")
    if not budgets:
        raise RcertError("--kind damage needs a budget: pass --L, e.g. --L 1.0")
    config = attack_config(DAMAGE_ATTACK, values)
    budget_list = [v for b in budgets for v in floats(b, "--L")]
    execute("attack", values, run, source, lambda model, dataset: attack(
        model, dataset.x, config, L=budget_list, seed=values["seed"], index=dataset.index,
        run=run))


def _targeted(kind: str, budgets: tuple[str, ...], targets_spec: str | None,
              values: dict[str, Any], run: Any, source: Any) -> None:
    from rcert.data import load_data
    from rcert.evaluation.targeted import targeted_attack

    damage_only = [name for name in _FIELDS if name != "n_noise" and values[name] is not None]
    if budgets or damage_only:
        name = "--L" if budgets else "--" + damage_only[0].replace("_", "-")
        raise RcertError(f"{name} applies to --kind damage, not the targeted {kind} attack; "
                         f"drop it")
    fields = given(TargetedConfig, values)
    fields["lambda_values"] = tuple(fields.get("lambda_values", ()))
    config = build(TargetedConfig, kind=kind, **fields)
    targets = load_data(targets_spec) if targets_spec is not None else None
    execute("targeted", values, run, source, lambda model, dataset: targeted_attack(
        model, dataset.x, config, labels=dataset.y, index=dataset.index, run=run,
        targets=None if targets is None else targets.x,
        target_labels=None if targets is None else targets.y))
