"""``rcert latent-attack`` (Lu & Chen's attacks on the latent code, scored) and ``rcert
latent-margin`` (the exact latent certificate against the latent attack)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import certify_config, execute, floats, int_list, run_options, start
from rcert.cli.options import (
    apply,
    attack_config,
    attack_options,
    build,
    certify_options,
    given,
    option_for,
)
from rcert.settings import EMPIRICAL_ATTACK, FidelityConfig, LatentAttackConfig, default
from rcert.values import check_seed

#: Options built by hand: a list of numbers, and a flag that can be turned off.
_OWN = ("epsilons", "random_start", "seed")
_MULTIPLE = ("metrics", "limits")


def _latent_options(f: Any) -> Any:
    names = [fd.name for fd in dataclasses.fields(LatentAttackConfig) if fd.name not in _OWN]
    options = [option_for(LatentAttackConfig, n, default=default(LatentAttackConfig, n))
               for n in names]
    options += [option_for(FidelityConfig, fd.name, multiple=fd.name in _MULTIPLE,
                           default=None if fd.name in _MULTIPLE
                           else default(FidelityConfig, fd.name))
                for fd in dataclasses.fields(FidelityConfig)]
    return apply(options, f)


@cli.command(name="latent-attack", short_help="PGD on the latent code: DD-curves, AADDC.")
@run_options
@click.option("--epsilons", default=None,
              help="Budgets, comma-separated, e.g. 0,0.25,0.5 [default: 0 to 1 in steps of "
                   "0.1, the paper's grid].")
@click.option("--random-start/--no-random-start", default=None,
              help="Start uniformly in the ball (an untargeted attack needs it) "
                   "[default: on].")
@click.option("--seeds", default=None,
              help="Seeds to repeat the attack with, comma-separated, e.g. 0,1,2 "
                   "[default: 0].")
@click.option("--targets", "targets_spec", default=None,
              help="Data spec to draw --target other's images from [default: --data].")
@click.option("--r", "r", type=float, default=None,
              help="A distortion threshold: adds exceeds_r, ||g(z*) - g(z0)|| > r.")
@click.option("--statistics-at", default=None,
              help="Epsilons of the grid at which to record the per-dimension statistics "
                   "(Lu & Chen Eq 7), comma-separated.")
@click.option("--tsne-at", default=None,
              help="Epsilons of the grid at which to embed clean and adversarial codes with "
                   "t-SNE, comma-separated.")
@_latent_options
def latent_attack_command(epsilons: str | None, random_start: bool | None, seeds: str | None,
                          targets_spec: str | None, r: float | None,
                          statistics_at: str | None, tsne_at: str | None,
                          **values: Any) -> None:
    """PGD on the latent code between encoder and decoder (Lu & Chen 2023, Eqs 4-6), for
    every epsilon of the grid: untargeted (away from g(z0)) or targeted (black, white,
    prior, inverted or another input). Each adversarial reconstruction is scored against
    the clean one (or the input) with MSE, L2, SSIM, PSNR and, given weights, LPIPS; the
    summary gives the DD-curves with their spread over batches and seeds, and the AADDC of
    each score with a limit line."""
    from rcert.data import load_data
    from rcert.evaluation.latent import latent_attack

    run, source = start(values)
    fields = given(LatentAttackConfig, values)
    if epsilons is not None:
        fields["epsilons"] = tuple(floats(epsilons, "--epsilons"))
    if random_start is not None:
        fields["random_start"] = random_start
    seed_list = None if seeds is None else [check_seed(s, "--seeds")
                                            for s in int_list(seeds, "--seeds")]
    config = build(LatentAttackConfig, **fields)
    fid = given(FidelityConfig, values)
    for name in _MULTIPLE:
        if not fid.get(name):
            fid.pop(name, None)
    fidelity = build(FidelityConfig, **fid)
    values["seed"] = seed_list[0] if seed_list else None
    at = {name: tuple(floats(v, f"--{name.replace('_', '-')}")) if v else ()
          for name, v in (("statistics_at", statistics_at), ("tsne_at", tsne_at))}
    targets = None if targets_spec is None else load_data(targets_spec).x
    execute("latent", values, run, source, lambda model, dataset: latent_attack(
        model, dataset.x, config, fidelity=fidelity, seeds=seed_list, index=dataset.index,
        labels=dataset.y, targets=targets, r=r, run=run, **at))


@cli.command(name="latent-margin",
             short_help="The exact latent certificate against the latent attack.")
@run_options
@certify_options()
@attack_options(EMPIRICAL_ATTACK, names=("preset", "restarts", "steps", "n_noise", "n_check"))
def latent_margin_command(**values: Any) -> None:
    """Certify each input's latent margin (exact, no linearisation: every shift of the
    latent mean with ||d_z / sigma|| < t(p_lower) is safe), then attack the latent mean at
    half and all of the certified radius (a break there is a violation, a bug) and beyond
    it, in raw L2 and in the certificate's whitened geometry: how far the first successful
    latent attack lies, the latent tightness."""
    from rcert.evaluation.latent_certificate import latent_tightness

    run, source = start(values)
    attack = attack_config(EMPIRICAL_ATTACK, values)
    execute("latent-margin", values, run, source, lambda model, dataset: latent_tightness(
        model, dataset.x, certify_config(model, source, values), attack,
        index=dataset.index, run=run))
