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
@click.option("--kind", type=click.Choice(["damage", *TARGETED_KINDS, "downstream"]),
              default="damage", show_default=True,
              help="damage: maximum-damage attacks within --L against noise (Camuto et al.); "
                   "kl, w2, output-elbo, output-l2: the targeted attacks of Willetts et al. "
                   "on input-target pairs, swept over lambda; downstream: their Table 1, "
                   "classifiers on reconstructions and latents under the KL attack at "
                   "lambda 1 toward targets of another label.")
@click.option("--train-data", "train_spec", default=None,
              help="Data to train the downstream classifiers on [default: the training "
                   "split of the model's data].")
@click.option("--train-limit", type=int, default=None,
              help="Use only the first K inputs of --train-data.")
@click.option("--L", "budgets", multiple=True,
              help="Attack budget ||d|| <= L (--kind damage); a list (0.5,1,2 or repeated "
                   "--L) gives a damage-vs-L curve.")
@click.option("--targets", "targets_spec", default=None,
              help="Data spec to draw the targets from (targeted kinds) [default: --data].")
@certify_options(with_r=False, names=("seed",))
@attack_options(DAMAGE_ATTACK, names=_FIELDS)
@_targeted_options
def attack_command(kind: str, budgets: tuple[str, ...], targets_spec: str | None,
                   train_spec: str | None, train_limit: int | None, **values: Any) -> None:
    """Maximum-damage attacks (Camuto et al. 2021, Eq 5) within ||d|| <= L and the data
    range, against Gaussian noise of the same norm; or, with --kind kl|w2|output-elbo|
    output-l2, the targeted attacks of Willetts et al. (2021) on --pairs input-target pairs
    for each of --lambdas penalty weights, by L-BFGS-B inside the data box (--n-noise: the
    common draws of a stochastic objective)."""
    run, source = start(values)
    if kind != "downstream" and (train_spec is not None or train_limit is not None):
        raise RcertError("--train-data and --train-limit apply to --kind downstream; drop "
                         "them")
    if kind == "downstream":
        _downstream(budgets, targets_spec, (train_spec, train_limit), values, run, source)
    elif kind == "damage":
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
    from rcert.models.contract import require_sigma

    config = attack_config(DAMAGE_ATTACK, values)
    budget_list = [v for b in budgets for v in floats(b, "--L")]

    def compute(model: Any, dataset: Any) -> Any:
        if not config.threat.moves_mean:  # it would move nothing: damage 0 by construction
            require_sigma(model, "--threat sigma (it moves the encoder's sigma)",
                          "pass --threat mean or both", name=source.path)
        return attack(model, dataset.x, config, L=budget_list, seed=values["seed"],
                      index=dataset.index, run=run)

    execute("attack", values, run, source, compute)


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

    def compute(model: Any, dataset: Any) -> Any:
        if kind == "kl":
            _refuse_kl(model, source.path, "--kind kl")
        return targeted_attack(model, dataset.x, config, labels=dataset.y,
                               index=dataset.index, run=run,
                               targets=None if targets is None else targets.x,
                               target_labels=None if targets is None else targets.y)

    execute("targeted", values, run, source, compute)


def _refuse_kl(model: Any, path: str, what: str) -> None:
    """A KL between encoder Gaussians is undefined at ``sigma = 0``: refuse a deterministic
    autoencoder, naming the targeted kinds that apply to it (W2 is then the distance
    between the codes)."""
    from rcert.models.contract import require_sigma

    require_sigma(model, f"{what} (a KL between the encoder's Gaussians)",
                  "pass --kind w2 (the distance between codes), output-l2 or output-elbo",
                  name=path)


def _downstream(budgets: tuple[str, ...], targets_spec: str | None,
                train: tuple[str | None, int | None], values: dict[str, Any], run: Any,
                source: Any) -> None:
    from rcert.evaluation.downstream import DOWNSTREAM_ATTACK, downstream_table
    from rcert.runs.loading import training_data

    if budgets or targets_spec is not None:
        raise RcertError(f"{'--L' if budgets else '--targets'} does not apply to --kind "
                         f"downstream (targets of another label come from --data); drop it")
    if train[1] is not None and train[1] < 1:
        raise RcertError(f"--train-limit must be at least 1, got {train[1]}")
    fields = given(TargetedConfig, values)
    fields["lambda_values"] = tuple(fields.get("lambda_values", ())) or (1.0,)
    config = build(TargetedConfig, DOWNSTREAM_ATTACK, **fields)

    def compute(model: Any, dataset: Any) -> Any:
        _refuse_kl(model, source.path, "--kind downstream (the KL attack of Table 1)")
        fit_on = training_data(model, source.path, train[0], train[1])
        if dataset.y is None or fit_on.y is None:
            raise RcertError("the downstream attack needs labelled data for --data and "
                             "--train-data (e.g. dsprites, digits, an image folder with "
                             "class subfolders)")
        return downstream_table(model, fit_on.x, fit_on.y, dataset.x, dataset.y,
                                attack=config, seed=config.seed, run=run)

    execute("downstream", values, run, source, compute)
