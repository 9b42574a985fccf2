"""The ``rcert`` command: a thin layer over the Python API.

Every bad input ends as one line ``rcert: error: ...`` on stderr and exit status 2.
Machine-readable output goes to stdout (or ``--output``); progress goes to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from rcert.cli import attack, check, curve, margin, plot, report, train  # noqa: F401  (registers the commands)
from rcert.cli.app import cli
from rcert.errors import RcertError


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user error into one line and exit code 2."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if not args:
        click.echo("rcert: error: missing command: rcert margin or rcert train "
                   "(see rcert --help)", err=True)
        sys.exit(2)
    try:
        # obj carries the arguments so that commands can record how they were run.
        code = cli.main(args=args, prog_name="rcert", standalone_mode=False, obj=args)
    except RcertError as exc:
        click.echo(f"rcert: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"rcert: error: {exc.format_message()} (see rcert --help)", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("rcert: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
