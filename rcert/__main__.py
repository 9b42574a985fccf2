"""``python -m rcert`` (and ``torchrun -m rcert``): the rcert command."""

from rcert.cli.main import main

main()
