"""``rcert check``: run a TOML config's report and judge its thresholds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from rcert.cli.app import cli
from rcert.cli.common import QUIET, command_line, print_report_warnings


@cli.command(name="check", short_help="CI gate: judge thresholds, exit 0, 1 or 2.")
@click.argument("config", default="rcert.toml", type=click.Path(dir_okay=False))
@click.option("--out", default="rcert-report", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the report.")
@QUIET
@click.pass_obj
def check_command(argv: list[str], config: str, out: str, quiet: bool) -> None:
    """Run the report of CONFIG (a TOML file; default: rcert.toml in the working folder)
    and judge its thresholds: exit 0 if all hold, 1 if one fails, 2 on bad input.
    See docs/ci.md for the keys."""
    from rcert.runs import report, thresholds

    parsed = thresholds.load_config(config)
    run = dataclasses.replace(parsed.run, progress=not quiet)
    written = report.generate(
        parsed.models, Path(out), attack=parsed.attack, run=run, command=command_line(argv),
        verdicts=lambda results: thresholds.verdicts(results, parsed.thresholds),
        preflight=thresholds.refuse_deterministic(parsed.thresholds))
    verdicts = written.document["verdicts"]
    print_report_warnings(written.document["models"])
    click.echo(thresholds.verdict_lines(verdicts, out), nl=False)
    if thresholds.failed(verdicts):
        raise click.exceptions.Exit(1)
