"""The ``rcert`` command group; the command modules register themselves on it."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rcert", prog_name="rcert")
def cli() -> None:
    """Certify how robust a VAE's reconstructions are to input perturbations."""
