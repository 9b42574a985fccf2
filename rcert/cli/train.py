"""``rcert train``: train a VAE and save its checkpoint with a model card."""

from __future__ import annotations

import shlex

import click

from rcert.cli.app import cli
from rcert.cli.common import int_list
from rcert.results import text
from rcert.runs import training


@cli.command(name="train")
@click.option("--data", "data_spec", required=True,
              help="Training data spec, e.g. digits:train or dsprites:train:res=32.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write; a model card goes beside it as .json.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default="mlp", show_default=True)
@click.option("--latent-dim", type=int, default=8, show_default=True)
@click.option("--hidden", default=None, help="MLP widths, e.g. 256,256.")
@click.option("--channels", default=None, help="Conv channels, e.g. 32,64.")
@click.option("--activation", type=click.Choice(["relu", "elu", "softplus", "tanh"]),
              default="relu", show_default=True)
@click.option("--sigma", "sigma_mode", type=click.Choice(["learned", "floor", "fixed"]),
              default="learned", show_default=True,
              help="Encoder sigma: learned, tau + learned (--tau), or constant (--fixed-sigma).")
@click.option("--tau", type=float, default=None, help="Sigma floor for --sigma floor.")
@click.option("--fixed-sigma", type=float, default=None, help="Sigma for --sigma fixed.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]),
              default="bernoulli", show_default=True)
@click.option("--gaussian-scale", type=float, default=0.1, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True,
              help="KL weight: 1 is the ELBO, any other positive value a beta-VAE.")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=15, show_default=True,
              help="Stop after this many epochs without a better held-out ELBO.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of the training data held out for early stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@click.pass_obj
def train_command(argv: list[str], data_spec: str, out: str, arch: str, latent_dim: int,
                  hidden: str | None, channels: str | None, activation: str, sigma_mode: str,
                  tau: float | None, fixed_sigma: float | None, likelihood: str,
                  gaussian_scale: float, beta: float, epochs: int, batch_size: int, lr: float,
                  patience: int, val_fraction: float, seed: int, quiet: bool) -> None:
    """Train a Gaussian-encoder VAE and save a checkpoint with its model card."""
    hparams = {"latent_dim": latent_dim, "activation": activation, "sigma_mode": sigma_mode,
               "likelihood": likelihood, "gaussian_scale": gaussian_scale}
    for key, value in (("hidden", int_list(hidden, "--hidden")),
                       ("channels", int_list(channels, "--channels")),
                       ("tau", tau), ("fixed_sigma", fixed_sigma)):
        if value is not None:
            hparams[key] = value
    card = training.train_checkpoint(
        data_spec, out, arch=arch, hparams=hparams, beta=beta, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, val_fraction=val_fraction,
        seed=seed, progress=not quiet, command=shlex.join(["rcert", *argv]))
    click.echo(text.to_json(card), nl=False)
