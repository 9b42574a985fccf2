"""Counter-based standard normal noise ``eta``.

The draws for input ``i`` are a pure function of ``(seed, stream, i, sample number)``, so
the draws do not depend on how inputs are batched or chunked, on ``--limit``, on the
device, or on which inputs ran before: rerunning a subset redraws exactly its noise.
A sequential generator cannot give that without a Python loop over inputs.

Uniforms come from Chris Wellons' ``lowbias32`` integer hash applied to the counter and
keyed per input; pairs of uniforms become normals by the Box-Muller transform. All
integer arithmetic stays below 2**63, so it is exact in int64 on every device.
"""

from __future__ import annotations

import math

import torch

from rcert.errors import RcertError

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without overflowing int64."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` bijection on 32-bit values held in an int64 tensor."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MUL1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MUL2)
    return x ^ (x >> 16)


def input_keys(seed: int, stream: int, index: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per input, mixing the seed, the stream and the input's index."""
    if seed < 0 or stream < 0:
        raise RcertError(f"seed and stream must be non-negative integers, got seed={seed} "
                         f"and stream={stream}; pass a seed >= 0")
    k = torch.tensor([seed & _MASK32], dtype=torch.int64, device=index.device)
    k = hash32(k ^ hash32(torch.full_like(k, (seed >> 32) & _MASK32)))
    k = hash32(k ^ hash32(torch.full_like(k, stream & _MASK32)))
    idx = index.to(torch.int64)
    return hash32(k ^ hash32(idx & _MASK32) ^ hash32((idx >> 32) + 0x9E3779B9))


def gaussian(
    seed: int,
    index: torch.Tensor,
    n: int,
    d: int,
    *,
    start: int = 0,
    stream: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws ``eta`` of shape ``(len(index), n, d)``.

    Parameters
    ----------
    seed, stream
        Non-negative integers; different streams give independent draws for the same
        seed (for example the certificate's noise and an attack's common random numbers).
    index
        int64 tensor of stable input ids (positions in the dataset split); its device is
        the device of the result.
    n, d
        Samples per input and latent dimension.
    start
        Number of the first sample, so that samples ``start .. start + n - 1`` of a longer
        stream can be drawn in chunks with the same result as in one call.
    """
    device = index.device
    keys = input_keys(seed, stream, index)
    pairs = (d + 1) // 2
    counter = torch.arange(
        2 * start * pairs, 2 * (start + n) * pairs, dtype=torch.int64, device=device
    )
    # The counter hash is shared by all inputs; keying happens after it so that two inputs
    # never see shifted copies of one stream.
    bits = hash32(hash32(counter).unsqueeze(0) ^ keys.unsqueeze(1))
    u = (bits.to(torch.float64) + 0.5) * 2.0**-32
    u = u.view(len(index), n, pairs, 2)
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0]))
    angle = (2.0 * math.pi) * u[..., 1]
    eta = torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)
    return eta[..., :d].to(dtype)


# Noise streams: the certificate uses 0; attacks use these, so their draws are independent.
# Success checks take a fresh stream each, counting up from STREAM_CHECK.
STREAM_ATTACK = 1


STREAM_START = 2


STREAM_CURVE = 3


STREAM_CHECK = 16


# The maximum-damage attack's distortion columns: fresh draws, never the objective's own.
STREAM_DISTORTION = 4


# Which inputs a run audits (rcert.evaluation.audit): one key per input id, no draws.
STREAM_AUDIT = 5


# Re-checks of the empirical margin's final perturbation: far above the check streams
# that count up from STREAM_CHECK, so no search, however long, ever reaches it.
STREAM_VERIFY = 2**20


# The attack-strength audit's confirmation of a lower margin: as fresh as STREAM_VERIFY.
STREAM_AUDIT_VERIFY = 2**20 + 1
