"""``rcert check``: run a TOML config's report and judge its thresholds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from rcert.cli.app import cli
from rcert.cli.common import QUIET, print_report_warnings


@cli.command(name="check", short_help="CI gate: judge thresholds, exit 0, 1 or 2.")
@click.argument("config", default="rcert.toml", type=click.Path(dir_okay=False))
@click.option("--out", default="rcert-report", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the report.")
@QUIET
def check_command(config: str, out: str, quiet: bool) -> None:
    """Run the report of CONFIG (a TOML file; default: rcert.toml in the working folder)
    and judge its thresholds: exit 0 if all hold, 1 if one fails, 2 on bad input.
    See docs/ci.md for the keys."""
    from rcert.runs import report, thresholds

    parsed = thresholds.load_config(config)
    run = dataclasses.replace(parsed.run, progress=not quiet)
    computed = report.compute(parsed.models, Path(out), attack=parsed.attack, run=run)
    verdicts = thresholds.verdicts(computed.results, parsed.thresholds)
    print_report_warnings(computed.results)
    report.write(Path(out), computed, verdicts)
    click.echo(thresholds.verdict_lines(verdicts, out), nl=False)
    if thresholds.failed(verdicts):
        raise click.exceptions.Exit(1)
