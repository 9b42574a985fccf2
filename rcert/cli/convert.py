"""``rcert convert``: rewrite a checkpoint (a legacy ``.rcert`` file) as safetensors."""

from __future__ import annotations

import click

from rcert.cli.app import cli


@cli.command(name="convert", short_help="Rewrite a checkpoint as a safetensors checkpoint.")
@click.argument("src")
@click.argument("dst")
def convert_command(src: str, dst: str) -> None:
    """Rewrite the rcert checkpoint SRC (a legacy .rcert file, or a safetensors one) as the
    safetensors checkpoint DST (- for stdout), with the same tensors and metadata. DST is
    written atomically and must not be SRC itself.
    """
    from rcert.models import checkpoint

    checkpoint.convert(src, dst)
    click.echo(f"rcert: converted {src} -> {'stdout' if dst == '-' else dst}", err=True)
