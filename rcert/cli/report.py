"""``rcert report``: the report folder for one or several models."""

from __future__ import annotations

from pathlib import Path

import click

from rcert.cli.app import cli
from rcert.cli.common import device_of
from rcert.runs import report


@cli.command(name="report")
@click.option("--model", "models", required=True, multiple=True,
              help="rcert checkpoint; repeat to compare models side by side.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the report (created; resumed if interrupted).")
@click.option("--r", "r", type=float, default=None,
              help="Output radius r [default: each checkpoint's recommended r].")
@click.option("--data", "data_spec", default=None,
              help="Data spec [default: test split of each model's training data].")
@click.option("--limit", type=int, default=None)
@click.option("--n-samples", type=int, default=1000, show_default=True)
@click.option("--alpha", type=float, default=0.001, show_default=True)
@click.option("--m", "m", type=float, default=0.5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--empirical", is_flag=True, help="Also attack every certificate.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def report_command(models: tuple[str, ...], out: str, r: float | None, data_spec: str | None,
                   limit: int | None, n_samples: int, alpha: float, m: float, seed: int,
                   empirical: bool, device: str, quiet: bool) -> None:
    """Write a report folder: CSV, JSON, Markdown, JUnit XML, plots and an HTML page."""
    device_of(device)
    entries = [{"path": path, "r": r, "data": data_spec, "limit": limit,
                "n_samples": n_samples, "alpha": alpha, "m": m, "seed": seed,
                "empirical": empirical, "device": device} for path in models]
    entries = [{k: v for k, v in e.items() if v is not None} for e in entries]
    results = report.compute(entries, Path(out), progress=not quiet)
    report.write(Path(out), results)
    click.echo((Path(out) / "summary.md").read_text(encoding="utf-8"), nl=False)
