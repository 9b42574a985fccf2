"""``rcert train``: train a VAE and save its checkpoint with a model card."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import QUIET, command_line, int_list
from rcert.cli.options import apply, build, given, option_for
from rcert.errors import RcertError
from rcert.settings import AdversarialTrainingConfig, TrainConfig, default


def adversarial_options(f: Any) -> Any:
    """``--adversarial`` and ``--adversarial-*`` (AdversarialTrainingConfig)."""
    names = [fd.name for fd in dataclasses.fields(AdversarialTrainingConfig)]
    options = [click.option("--adversarial", is_flag=True,
                            help="Latent adversarial training (Lu & Chen Algorithm 1): after "
                                 "each step, a decoder-only step on PGD-attacked codes.")]
    options += [option_for(AdversarialTrainingConfig, n, prefix="adversarial",
                           default=default(AdversarialTrainingConfig, n)) for n in names]
    return apply(options, f)


def adversarial_config(adversarial: bool, values: dict[str, Any]
                       ) -> AdversarialTrainingConfig | None:
    """The defence's settings from the ``--adversarial-*`` options (which need the flag)."""
    given_values = {name.removeprefix("adversarial_"): values.pop(name)
                    for name in list(values) if name.startswith("adversarial_")}
    chosen = {k: v for k, v in given_values.items() if v is not None}
    if chosen and not adversarial:
        raise RcertError(f"--adversarial-{next(iter(chosen)).replace('_', '-')} applies to "
                         f"latent adversarial training; add --adversarial, or drop it")
    return build(AdversarialTrainingConfig, prefix="adversarial", **chosen) \
        if adversarial else None


def train_options(f: Any) -> Any:
    """``--beta --epochs --batch-size --lr --patience --val-fraction --seed`` (TrainConfig)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return apply([option_for(TrainConfig, n, default=default(TrainConfig, n)) for n in names],
                 f)


@cli.command(name="train", short_help="Train a VAE; save a checkpoint and model card.")
@click.option("--data", "data_spec", required=True,
              help="Training data spec, e.g. digits:train or dsprites:train:res=32.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write; a model card goes beside it as .json.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default="mlp", show_default=True,
              help="Architecture: fully connected, or convolutional for images.")
@click.option("--latent-dim", type=int, default=8, show_default=True,
              help="Latent size d_z.")
@click.option("--hidden", default=None, help="MLP widths, e.g. 256,256.")
@click.option("--channels", default=None, help="Conv channels, e.g. 32,64.")
@click.option("--dense", type=int, default=None,
              help="Width of a dense layer after the convolutions (conv; Chen et al.'s "
                   "architecture is --channels 32,32,64,64 --dense 512).")
@click.option("--activation",
              type=click.Choice(["relu", "elu", "softplus", "tanh", "leaky_relu"]),
              default=None, help="Hidden non-linearity [default: relu].")
@click.option("--sigma", "sigma_mode",
              type=click.Choice(["learned", "floor", "fixed", "none"]), default=None,
              help="Encoder sigma: learned, tau + learned (--tau), constant (--fixed-sigma), or "
                   "none (a deterministic autoencoder: --family mmd-dae or swt-dae) "
                   "[default: learned; none for the dae families].")
@click.option("--tau", type=float, default=None, help="Sigma floor for --sigma floor.")
@click.option("--fixed-sigma", type=float, default=None, help="Sigma for --sigma fixed.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default=None,
              help="Decoder likelihood [default: bernoulli].")
@click.option("--gaussian-scale", type=float, default=None,
              help="Standard deviation of the Gaussian likelihood [default: 0.1].")
@click.option("--upper-dims", default=None,
              help="Sizes of the layers above the first, bottom to top, e.g. 4,2 "
                   "(--family seatbelt or dlgm) [default: 4].")
@click.option("--inference", type=click.Choice(["input", "chain"]), default=None,
              help="Upper-layer inference: q(z^{i+1}|z^i, x) (input) or q(z^{i+1}|z^i) "
                   "(chain), seatbelt and dlgm [default: input].")
@click.option("--conditional-hidden", default=None,
              help="Hidden widths of the layer-to-layer MLPs, e.g. 64,64 [default: 64,64].")
@train_options
@adversarial_options
@QUIET
@click.pass_obj
def train_command(argv: list[str], data_spec: str, out: str, arch: str, latent_dim: int,
                  hidden: str | None, channels: str | None, dense: int | None,
                  activation: str | None,
                  sigma_mode: str | None, tau: float | None, fixed_sigma: float | None,
                  likelihood: str | None, gaussian_scale: float | None,
                  upper_dims: str | None, inference: str | None,
                  conditional_hidden: str | None, quiet: bool, adversarial: bool,
                  **values: Any) -> None:
    """Train a Gaussian-encoder VAE (one-layer, or hierarchical with --family seatbelt or
    dlgm), or a deterministic autoencoder (--family mmd-dae or swt-dae), and save a
    checkpoint with its model card."""
    from rcert.results import text
    from rcert.runs import training

    defence = adversarial_config(adversarial, values)
    config = TrainConfig(**given(TrainConfig, values))
    hparams: dict[str, Any] = {"latent_dim": latent_dim}
    for key, value in (("hidden", int_list(hidden, "--hidden")),
                       ("channels", int_list(channels, "--channels")), ("dense", dense),
                       ("activation", activation), ("sigma_mode", sigma_mode),
                       ("likelihood", likelihood), ("gaussian_scale", gaussian_scale),
                       ("tau", tau), ("fixed_sigma", fixed_sigma),
                       ("upper_dims", int_list(upper_dims, "--upper-dims")),
                       ("inference", inference),
                       ("conditional_hidden", int_list(conditional_hidden,
                                                       "--conditional-hidden"))):
        if value is not None:
            hparams[key] = value
    card = training.train_checkpoint(data_spec, out, arch=arch, hparams=hparams, config=config,
                                     progress=not quiet, command=command_line(argv),
                                     adversarial=defence)
    click.echo(text.to_json(card), nl=False)
