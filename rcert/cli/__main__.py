"""``python -m rcert.cli``: the rcert command."""

from rcert.cli.main import main

main()
