"""``rcert check``: run a TOML config's report and judge its thresholds."""

from __future__ import annotations

from pathlib import Path

import click

from rcert.cli.app import cli
from rcert.runs import report, thresholds


@cli.command(name="check")
@click.argument("config", default="rcert.toml", type=click.Path(dir_okay=False))
@click.option("--out", default="rcert-report", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the report.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def check_command(config: str, out: str, quiet: bool) -> None:
    """Run the report of CONFIG (TOML) and judge its thresholds: exit 0 if all hold, 1 if not."""
    entries, limits = thresholds.load_config(config)
    results = report.compute(entries, Path(out), progress=not quiet)
    verdicts = thresholds.verdicts(results, limits)
    report.write(Path(out), results, verdicts)
    for v in verdicts:
        mark = "PASS" if v["passed"] else "FAIL"
        detail = "" if v["passed"] else f": {v['message']}"
        click.echo(f"{mark} {v['model']} {v['threshold']}{detail}")
    failed = sum(not v["passed"] for v in verdicts)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed; report in {out}")
    if failed:
        raise click.exceptions.Exit(1)
