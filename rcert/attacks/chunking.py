"""Inputs per chunk for attacks: the memory budget on every attack path (SPEC section 6).

An attack holds, per input, ``restarts x n_noise`` decoder rows together with the
activations autograd keeps for the backward pass. Inputs are processed in chunks of at
most :func:`inputs_per_chunk` and the rows concatenated in input order; since every
input's noise is keyed by its own index (:mod:`rcert.engine.noise`), a row does not
depend on the chunk it ran in.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rcert.engine.montecarlo import rows_for_budget

# Autograd keeps every layer's activations until the backward pass, about as much again
# as the forward pass's working set that rows_for_budget allows for.
_AUTOGRAD_FACTOR = 2


def inputs_per_chunk(memory_mb: float, output_size: int, device: torch.device | str,
                     rows_per_input: int) -> int:
    """Inputs whose ``rows_per_input`` differentiated decoder rows fit in ``memory_mb``.

    Follows :func:`rcert.engine.montecarlo.rows_for_budget`'s convention for a decoder
    row, doubled for autograd; at least one input, whatever the budget.
    """
    rows = rows_for_budget(memory_mb / _AUTOGRAD_FACTOR, output_size, device)
    return max(1, rows // max(rows_per_input, 1))


def chunks(n_inputs: int, per_chunk: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n_inputs)`` of at most ``per_chunk`` inputs."""
    for start in range(0, n_inputs, per_chunk):
        yield slice(start, min(start + per_chunk, n_inputs))
