"""``rcert inspect``: what rcert sees in a model, and the result of every model check."""

from __future__ import annotations

from typing import Any

import click

from rcert.cli.app import cli
from rcert.cli.options import model_source, source_options


@cli.command(name="inspect", short_help="What rcert sees in a model; every model check.")
@click.argument("model_path", metavar="MODEL")
@source_options()
@click.option("--data", "data_spec", default=None,
              help="Probe the model with these inputs [default: the test split of its "
                   "training data; random inputs in its data range for a foreign model].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output: text for people, or JSON.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
              show_default=True, help="Where to run the probe.")
def inspect_command(model_path: str, data_spec: str | None, fmt: str, device: str,
                    **values: Any) -> None:
    """Print what rcert sees in MODEL: format, family, input shape, latent size, data
    range, sigma convention, likelihood, and the result of every model check. Exit 0 when
    all checks pass, 1 when one fails (certifying would stop), 2 on bad input."""
    import json

    from rcert.results.inspection import failed, to_text
    from rcert.runs.inspection import inspect_model

    source = model_source(model_path, values)
    info = inspect_model(source, data_spec=data_spec, device=device)
    click.echo(json.dumps(info, indent=2) if fmt == "json" else to_text(info), nl=fmt == "json")
    if failed(info):
        raise click.exceptions.Exit(1)
