"""The ``rcert`` command: a thin layer over the Python API.

Every bad input ends as one line ``rcert: error: ...`` on stderr and exit status 2; with the
environment variable ``RCERT_DEBUG=1`` the traceback that led to it (and its cause) is
printed first. Machine-readable output goes to stdout (or ``--output``); progress and
warnings go to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

# Importing the command modules registers them on the group.
from rcert.cli import (  # noqa: F401
    attack,
    check,
    convert,
    curve,
    inspect,
    margin,
    plot,
    report,
    train,
)
from rcert.cli.app import ORDER, cli
from rcert.errors import RcertError


def _debug(exc: BaseException) -> None:
    if os.environ.get("RCERT_DEBUG", "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user error into one line and exit code 2."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if not args:
        click.echo(f"rcert: error: missing command; one of: {', '.join(ORDER)} "
                   f"(see rcert --help)", err=True)
        sys.exit(2)
    try:
        # obj carries the arguments so that commands can record how they were run.
        code = cli.main(args=args, prog_name="rcert", standalone_mode=False, obj=args)
    except RcertError as exc:
        _debug(exc)
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
