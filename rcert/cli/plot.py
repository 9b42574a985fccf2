"""``rcert plot``: figures from saved results."""

from __future__ import annotations

import click

from rcert import plots
from rcert.cli.app import cli


@cli.command(name="plot", short_help="Draw a figure from saved JSON results.")
@click.argument("kind", type=click.Choice(plots.KINDS))
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png or .svg; - writes PNG to stdout (not to a terminal).")
def plot_command(kind: str, results: tuple[str, ...], out: str) -> None:
    """Draw a figure from saved JSON results, without recomputing.

    Each RESULTS file is one model's result (rcert margin, attack or curve --format json)
    or a report's results.json, which adds every model of the report.
    """
    from rcert.files import check_output
    from rcert.plots import loading, output

    output.figure_format(out)
    check_output(out, binary=True, hint="use --out - for stdout")
    docs = [res for path in results for res in loading.load_results(path)]
    figure = plots.PLOTS[kind](docs)
    output.save(figure, out)
