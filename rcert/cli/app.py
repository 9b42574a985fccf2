"""The ``rcert`` command group; the command modules register themselves on it."""

from __future__ import annotations

import click

#: The commands in the order of a user's work, as help lists them.
ORDER = ("margin", "attack", "curve", "measure", "latent-attack", "latent-margin", "report",
         "check", "inspect", "plot", "train", "convert")


class _Ordered(click.Group):
    """Lists the commands in :data:`ORDER`, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda name: (*ORDER, name).index(name))


@click.group(cls=_Ordered, context_settings={"help_option_names": ["-h", "--help"],
                                             "max_content_width": 100})
@click.version_option(package_name="rcert", prog_name="rcert")
def cli() -> None:
    """Certify how robust a VAE's reconstructions are to input perturbations.

    Typical use: rcert margin --model ckpt.safetensors --r 0.75 (certificates); add --empirical
    to attack them; rcert report and rcert check for reports and CI gates.
    """
