"""``rcert plot``: figures from saved results."""

from __future__ import annotations

import click

from rcert import plots
from rcert.cli.app import cli
from rcert.files import check_writable
from rcert.plots import loading, output


@cli.command(name="plot")
@click.argument("kind", type=click.Choice(sorted(plots.PLOTS)))
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png or .svg.")
def plot_command(kind: str, results: tuple[str, ...], out: str) -> None:
    """Draw a figure from saved JSON results (one per model), without recomputing."""
    check_writable(out)
    figure = plots.PLOTS[kind]([loading.load_result(path) for path in results])
    output.save(figure, out)
