"""Monte Carlo over the encoder noise: samples of ``||Delta(x)||`` [C Eq 1].

``Delta(x) = g(mu(x) + eta * sigma(x)) - g(mu(x))``. Inputs and samples are flattened
into decoder batches of at most ``max_rows`` latent codes, so peak memory is set by
``max_rows`` and not by ``n_samples`` times the number of inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rcert import validate
from rcert.engine import noise
from rcert.errors import RcertError
from rcert.models import contract

# Floats held per decoder output element, allowing for hidden activations wider than the
# output; used to turn a memory budget into a number of decoder rows.
_FLOATS_PER_OUTPUT = 16
# On a CPU, batches beyond this many rows fall out of cache and run slower (measured in
# benchmarks/bench_montecarlo.py); a GPU takes whatever the budget allows.
_CPU_MAX_ROWS = 16384


# Fewest rows per decoder call, whatever the budget: smaller calls are all overhead.
MIN_ROWS = 16


def row_bytes(output_size: int) -> int:
    """Bytes one decoder row (latent code) is allowed while it is decoded and measured."""
    return 4 * _FLOATS_PER_OUTPUT * max(output_size, 1)


#: Bytes one draw of one input's distance sample takes: the float32 distance and one
#: same-sized temporary (the ``<= r`` mask, or the copy ``kthvalue`` selects in).
SAMPLE_BYTES = 8


def _size(n_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} bytes"


def check_sample_budget(count: int, memory_mb: float, name: str = "n_samples",
                        bytes_each: int = SAMPLE_BYTES) -> int:
    """``count`` if one input's ``count`` draws (``bytes_each`` bytes a draw) fit in the
    memory budget ``memory_mb``; else an RcertError that says how many fit.

    Everything else is chunked to the budget, but one input's draws are held whole (its
    order statistics need the whole sample, SPEC section 3), so this is the one limit on a
    sample size, checked before any work.
    """
    most = int(memory_mb * 2**20 // bytes_each)
    if count > most:
        option = "--" + name.replace("_", "-")
        raise RcertError(
            f"{name} = {count} needs {_size(count * bytes_each)} for one input's draws, more "
            f"than the memory budget of {memory_mb:g} MB, which fits at most {name} = {most}; "
            f"lower {name} ({option}) or raise memory_mb (--memory-mb)")
    return count


def rows_for_budget(memory_mb: float, output_size: int,
                    device: torch.device | str = "cpu") -> int:
    """Decoder rows (latent codes per call) that fit in ``memory_mb`` megabytes.

    At least :data:`MIN_ROWS`, so a budget below ``MIN_ROWS * row_bytes(output_size)`` is
    exceeded by that floor.
    """
    rows = int(memory_mb * 2**20 // row_bytes(output_size))
    if torch.device(device).type == "cpu":
        rows = min(rows, _CPU_MAX_ROWS)
    return max(rows, MIN_ROWS)


@torch.no_grad()
def distortion_norms(
    model: nn.Module,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    *,
    index: torch.Tensor,
    n_samples: int,
    seed: int,
    max_rows: int,
    stream: int = 0,
    reference: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``||Delta(x)||`` for each input and each of ``n_samples`` encoder-noise draws.

    Parameters
    ----------
    model
        Has ``decode(z)``; decoder outputs are flattened per row.
    mu, sigma
        ``(B, d_z)`` encoder mean and standard deviation of the inputs.
    index
        ``(B,)`` stable input ids; the draws of input ``i`` depend only on
        ``(seed, stream, index[i])`` (see :mod:`rcert.noise`).
    max_rows
        Most latent codes decoded at once: the memory budget.
    stream
        Noise stream (see :mod:`rcert.noise`); attacks check on streams of their own.
    reference
        ``(B, D)`` reconstruction to measure from (default ``g(mu)``); a perturbed
        ``mu`` is measured from the clean ``g(mu(x))`` [C Sec 3.2.2].
    context
        ``(B, c)`` what the model's upper layers need of the inputs
        (:func:`rcert.models.contract.context`), or None.
    on_rows
        Called with the number of latent codes just decoded (progress reporting).

    Returns
    -------
    torch.Tensor
        ``(B, n_samples)`` float32 distances, on the device of ``mu``.
    """
    n_inputs, d_z = mu.shape
    # A hierarchical model's draws cover every layer's noise (SPEC section 8).
    width = contract.noise_dim(model, d_z)
    if reference is None:
        reference = contract.decode(model, mu, context).flatten(1)
    out = torch.empty(n_inputs, n_samples, dtype=torch.float32, device=mu.device)
    inputs_per_call = max(1, min(n_inputs, max_rows))
    samples_per_call = max(1, min(n_samples, max_rows // inputs_per_call))
    for i0 in range(0, n_inputs, inputs_per_call):
        rows = slice(i0, i0 + inputs_per_call)
        for s0 in range(0, n_samples, samples_per_call):
            s = min(samples_per_call, n_samples - s0)
            eta = noise.gaussian(seed, index[rows], s, width, start=s0, stream=stream,
                                 dtype=mu.dtype)
            part = None if context is None else context[rows]
            out[rows, s0:s0 + s] = distances(model, mu[rows], sigma[rows], eta,
                                             reference[rows], part).float()
            if on_rows is not None:
                on_rows(eta.shape[0] * s)
    # A NaN distance would count as "not within r" and turn into a silent abstention.
    validate.check_finite(out, index, "the decoder's output")
    return out


def distances(model: nn.Module, mu: torch.Tensor, sigma: torch.Tensor, eta: torch.Tensor,
              reference: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """``||g(mu + eta * sigma) - reference||`` per input and draw, ``(B, K)`` [C Eq 1].

    ``mu``, ``sigma`` ``(B, d_z)``, ``eta`` ``(B, K, noise_dim)``, ``reference`` ``(B, D)``,
    ``context`` ``(B, c)`` or None: one decoder call for all ``B * K`` codes
    (:func:`rcert.models.contract.latent_codes`; ``noise_dim = d_z`` for one layer).
    Differentiable; attacks call it inside autograd.
    """
    z = contract.latent_codes(mu[:, None, :], sigma[:, None, :], eta)
    draws = eta.shape[1]
    if context is not None:
        context = context.repeat_interleave(draws, dim=0)
    g = contract.decode(model, z.reshape(-1, z.shape[-1]), context)
    g = g.reshape(z.shape[0], draws, -1)
    return torch.linalg.vector_norm(g - reference[:, None, :], dim=-1)
