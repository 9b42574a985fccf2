"""The ``rcert`` command: a thin layer over the Python API.

Every bad input ends as one line ``rcert: error: ...`` on stderr and exit status 2; with the
environment variable ``RCERT_DEBUG=1`` the traceback that led to it (and its cause) is
printed first. Anything else that escapes a command is caught by the global guard
(:mod:`rcert.cli.guard`): one line and exit 70 for a bug, exit 2 for running out of memory.
Machine-readable output goes to stdout (or ``--output``); progress and warnings go to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

# Importing the command modules registers them on the group.
from rcert.cli import (  # noqa: F401
    attack,
    check,
    convert,
    curve,
    guard,
    inspect,
    latent,
    margin,
    measure,
    plot,
    report,
    train,
)
from rcert.cli.app import ORDER, cli
from rcert.errors import RcertError, is_out_of_memory


def _invoke(args: list[str]) -> int:
    """Run the command line ``args`` and return its exit code, letting every exception out:
    click's own ``main`` would turn a broken pipe into exit 1 and an ``EOFError`` raised by
    a reader into "Aborted", both of which would misreport what happened."""
    # obj carries the arguments so that commands can record how they were run.
    with cli.make_context("rcert", args, obj=args) as ctx:
        code = cli.invoke(ctx)
    return code if isinstance(code, int) else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user error into one line and exit code 2, and
    anything unexpected into one line and exit code 70 (:mod:`rcert.cli.guard`)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if not args:
        click.echo(f"rcert: error: missing command; one of: {', '.join(ORDER)} "
                   f"(see rcert --help)", err=True)
        sys.exit(2)
    try:
        code = _invoke(args)
    except RcertError as exc:
        guard.print_traceback(exc)
        click.echo(f"rcert: error: {guard.one_line(str(exc))}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"rcert: error: {guard.one_line(exc.format_message())} (see rcert --help)",
                   err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("rcert: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout went away (``rcert ... | head``): nothing left to say, and
        # stdout must not be flushed again at exit.
        guard.silence_stdout()
        sys.exit(141)
    except Exception as exc:  # the global guard: never a traceback
        guard.print_traceback(exc)
        if is_out_of_memory(exc):
            click.echo(guard.out_of_memory_line(), err=True)
            sys.exit(2)
        log = None if guard.debugging() else guard.crash_log(exc, args)
        click.echo(guard.internal_error_line(exc, log), err=True)
        sys.exit(guard.INTERNAL)
    sys.exit(code)


if __name__ == "__main__":
    main()
