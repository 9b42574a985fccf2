"""``rcert report``: the report folder for one or several models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.common import (
    LIMIT,
    MODEL_HELP,
    QUIET,
    command_line,
    print_report_warnings,
    run_config,
)
from rcert.cli.options import (
    apply,
    attack_config,
    attack_options,
    certify_options,
    given,
    model_source,
    run_config_options,
    source_options,
)
from rcert.settings import EMPIRICAL_ATTACK, CertifyConfig


def _options(f: Any) -> Any:
    return apply([
        click.option("--model", "models", required=True, multiple=True,
                     help=MODEL_HELP + " Repeat to compare models side by side; the options "
                          "on how to read a model apply to each."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Folder for the report (created; resumed if interrupted)."),
        click.option("--data", "data_spec", default=None,
                     help="Data spec [default: test split of each model's training data]."),
        LIMIT,
        QUIET,
    ], f)


@cli.command(name="report", short_help="A report folder: CSV, JSON, Markdown, HTML, plots.")
@_options
@source_options()
@run_config_options()
@certify_options()
@click.option("--empirical", is_flag=True,
              help="Also attack every certificate: empirical margin, violations, tightness.")
@attack_options(EMPIRICAL_ATTACK)
@click.pass_obj
def report_command(argv: list[str], models: tuple[str, ...], out: str, data_spec: str | None,
                   limit: int | None, quiet: bool, device: str | None,
                   memory_mb: float | None, empirical: bool, **values: Any) -> None:
    """Write a report folder: per-input CSV, results.json, a Markdown summary, JUnit XML,
    PNG/SVG plots and a self-contained HTML page. An interrupted report resumes where it
    stopped; --r defaults to each checkpoint's recommended r. One run at a time writes
    into a folder: a second one fails at once and names the first."""
    from rcert.runs import report

    run = run_config(device, memory_mb, quiet, values["allow"])
    attack = attack_config(EMPIRICAL_ATTACK, values)
    entries = [report.ModelEntry(source=model_source(path, values), data=data_spec,
                                 limit=limit, certify=given(CertifyConfig, values),
                                 empirical=empirical)
               for path in models]
    written = report.generate(entries, Path(out), attack=attack, run=run,
                              command=command_line(argv))
    print_report_warnings(written.document["models"])
    click.echo(written.summary, nl=False)
