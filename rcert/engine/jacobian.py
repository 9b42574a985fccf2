"""The encoder Jacobian ``J(x) = d mu / d x`` and its norms, exactly, with ``torch.func``.

One forward pass of the encoder per chunk of inputs, then ``d_z`` vector-Jacobian
products run together under ``vmap``: the cost of ``d_z`` batched input-gradient
passes, the floor for an exact Jacobian. Rows of a batch are independent (the engine
requires an encoder without cross-input coupling, e.g. BatchNorm in eval mode), so the
VJP of the cotangent ``e_i`` repeated over the batch yields row ``i`` of every input's
Jacobian at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rcert.errors import RcertError, first_line, is_out_of_memory


@dataclass
class EncoderOutput:
    """What one encoder pass gives the engine, for a chunk of ``B`` inputs.

    Attributes
    ----------
    mu, sigma
        ``(B, d_z)`` latent mean and standard deviation.
    jacobian
        ``(B, d_z, D)`` exact Jacobian of ``mu`` with respect to the flattened input.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    jacobian: torch.Tensor


def encoder_jacobian(model: nn.Module, x: torch.Tensor) -> EncoderOutput:
    """Exact ``J = d mu / d x`` [C Thm 1] of a batch, with ``mu`` and ``sigma`` from one pass."""
    x = x.detach()

    def encode(xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, sigma = model.encode(xb)
        return mu, sigma

    try:
        with torch.enable_grad():
            mu, vjp_fn, sigma = torch.func.vjp(encode, x, has_aux=True)
            d_z = mu.shape[1]
            basis = torch.eye(d_z, dtype=mu.dtype, device=mu.device)
            cotangents = basis.unsqueeze(1).expand(d_z, *mu.shape)
            (rows,) = torch.func.vmap(vjp_fn)(cotangents)
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        if is_out_of_memory(exc):
            raise
        # The user's encode failed under torch.func (a numpy step, an in-place trick):
        # say so, rather than report a bug in rcert.
        raise RcertError(
            f"the exact Jacobian of encode cannot be computed with torch.func "
            f"({first_line(exc, 120)}); keep encode in differentiable torch operations on "
            f"x (an allowed model check does not make the Jacobian exist)") from exc
    jacobian = rows.reshape(d_z, x.shape[0], -1).transpose(0, 1)
    return EncoderOutput(mu.detach(), sigma.detach(), jacobian.detach())


def jacobian_norms(jacobian: torch.Tensor, sigma: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three norms the bounds divide by, per input (SPEC section 4).

    Returns ``jacobian_fro`` (``||J||_F``), ``jacobian_spec`` (``||J||_2``) and
    ``jacobian_whitened`` (``||diag(1/sigma) J||_2``), each ``(B,)`` in float64.

    All three come from the ``d_z x d_z`` Gram matrix ``G = J J^T``: ``||J||_F^2 = tr G``,
    ``||J||_2^2 = lambda_max(G)`` and ``||diag(1/sigma) J||_2^2 = lambda_max(S G S)`` with
    ``S = diag(1/sigma)``. J (``d_z x D``, D large) is read once; both eigenvalue problems,
    tiny, go to LAPACK in one batched call.
    """
    gram = torch.bmm(jacobian, jacobian.transpose(1, 2)).to(torch.float64)
    inv_sigma = 1.0 / sigma.to(torch.float64)
    whitened = gram * inv_sigma.unsqueeze(1) * inv_sigma.unsqueeze(2)
    top = torch.linalg.eigvalsh(torch.cat((gram, whitened)))[:, -1].clamp_min(0.0).sqrt()
    n = jacobian.shape[0]
    return {
        "jacobian_fro": gram.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(0.0).sqrt(),
        "jacobian_spec": top[:n],
        "jacobian_whitened": top[n:],
    }
