"""The ``rcert`` command: one module per command, a thin layer over the Python API."""

from rcert.cli.main import cli, main

__all__ = ["cli", "main"]
