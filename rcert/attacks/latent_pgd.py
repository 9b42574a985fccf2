"""Lu & Chen's PGD attack on the latent code (spec sections 2.1-2.3, Eqs 4-6).

The untargeted attack (Eq 4) looks for ``z`` in a ball around the clean code ``z0`` whose
reconstruction is as far as possible from the clean one,
``max D(g(z), g(z0))``; the targeted attack (Eq 5) pulls the reconstruction to a target,
``min D(g(z), x_t)``. Both are solved by projected steps (Eq 6):

    u_{k+1} = Pi_eps( u_k + a * step_size * s(grad_u D) ),   a = +1 (Eq 4), -1 (Eq 5)

with ``s`` the gradient's sign (the paper) or the gradient over its L2 norm (standard
PGD-L2), and ``Pi_eps`` the projection onto the row's ball. A row is one
(input, epsilon, restart); all ``B x E x R`` rows run in one batch, input-major, and every
row is independent of the others (the gradient of the sum of per-row losses), so a row's
result does not depend on the batch or chunk it runs in.

Coordinates: the attack works in whitened coordinates ``u = (z - z0) / scale`` and decodes
``z0 + scale * u``, so the ellipsoid ``||(z - z0) / scale||_2 <= eps`` (or the box
``|z_j - z0_j| <= eps * scale_j``) is the ordinary ball ``||u|| <= eps`` and the sign and
L2 steps and their projections are the ordinary ones in ``u``; ``step_size`` is an absolute
length in ``u`` (the paper's ``alpha = 1`` with ``eps <= 1``: one step reaches the
boundary, spec 2.3 hazard 1). Without ``scale``, ``u = z - z0`` in raw latent units.

Hazard 2 of spec 2.3: from ``z0`` the untargeted distance is at its minimum and its gradient
is 0, so the untargeted attack needs the random start (:class:`LatentAttackConfig` refuses
it without one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rcert.attacks.chunking import chunks, inputs_per_chunk
from rcert.engine import noise
from rcert.errors import RcertError
from rcert.settings import LatentAttackConfig
from rcert.statistics import fidelity

#: Noise stream of the random starts (independent of every other attack's draws).
STREAM_LATENT_START = 10


@dataclass(frozen=True)
class LatentResult:
    """The attack's codes and distances.

    Attributes
    ----------
    z
        ``(B, E, d)`` the returned codes: per (input, epsilon), the best restart's code.
    loss
        ``(B, E)`` the attack distance ``D`` at ``z``: ``D(g(z), g(z0))`` untargeted,
        ``D(g(z), x_t)`` targeted.
    """

    z: Tensor
    loss: Tensor


def latent_pgd(decode: Callable[[Tensor], Tensor], z0: Tensor, epsilons: Tensor, *,
               config: LatentAttackConfig, index: Tensor, scale: Tensor | None = None,
               target: Tensor | None = None, data_range: tuple[float, float],
               ssim: tuple[int, float] | None = None) -> LatentResult:
    """PGD in the latent space (Lu & Chen Eq 6) on the untargeted (Eq 4) or targeted (Eq 5)
    objective, for every input, epsilon and restart at once.

    Parameters
    ----------
    decode
        Codes ``(N, d)`` to images ``(N, *shape)``, differentiable. The caller must pass an
        eval-mode model (spec 2.3 hazard 3: BatchNorm in training mode would mix the rows).
        It is called on ``N = k * B`` rows, input-major: rows ``k*i .. k*i + k - 1`` belong
        to input ``i`` of ``z0``, so a decoder with a per-input context repeats it
        ``N // B`` times per input. The untargeted reference ``g(z0)`` is decoded in the
        attack's own batch of rows (one extra forward without grad), so that ``eps = 0``
        rows score exactly 0 whatever the decoder's rounding by batch size.
    z0
        ``(B, d)`` clean codes.
    epsilons
        ``(E,)`` budgets ``>= 0``; an ``eps = 0`` row returns ``z0`` exactly.
    config
        The attack's settings (goal, norm, step, step_size, steps, restarts, random_start,
        iterate, distance, seed).
    index
        ``(B,)`` int64 stable input ids, keying each input's random starts.
    scale
        None (raw units) or ``(B, d)`` positive units: the ball is
        ``||(z - z0) / scale|| <= eps``.
    target
        ``(B, *shape)`` targets of a targeted attack (see
        :func:`rcert.attacks.latent_targets.latent_target`); None untargeted.
    data_range
        ``(low, high)`` of the images, SSIM's dynamic range.
    ssim
        ``(window, sigma)`` of SSIM, needed when ``config.distance == "ssim"``.

    Returns
    -------
    LatentResult
        Detached codes ``(B, E, d)`` and their distances ``(B, E)``; per (input, epsilon)
        the best of the restarts (ties to the lower restart).
    """
    _check(z0, epsilons, index, scale, target, config, ssim)
    n_in, d = z0.shape
    n_eps, reps = len(epsilons), config.restarts
    per = n_eps * reps
    eps = epsilons.to(z0).reshape(1, n_eps, 1).expand(n_in, n_eps, reps).reshape(-1)
    base = z0.detach().repeat_interleave(per, 0)
    unit = None if scale is None else scale.detach().to(z0).repeat_interleave(per, 0)
    untargeted = config.goal == "untargeted"
    if untargeted:
        # Decoded in the rows' own batch, not once per input: a BLAS matmul rounds a row
        # differently by batch size, and sign-PGD would follow the gradient of that rounding
        # (eps = 0 rows would score about 1e-33, not 0).
        with torch.no_grad():
            reference = decode(base).detach()
    else:
        reference = target.detach().to(z0).repeat_interleave(per, 0)

    def loss_of(u: Tensor) -> Tensor:
        z = base + (u if unit is None else unit * u)
        return _distance(decode(z), reference, config.distance, data_range, ssim)

    start = latent_starts(config, index.to(z0.device), epsilons, d, dtype=z0.dtype)
    start = start.reshape(-1, d)
    u, loss = _iterate(loss_of, _project(start, eps, config.norm), eps, config)
    return _best_restart(base + (u if unit is None else unit * u), loss, n_in, n_eps, reps,
                         untargeted)


def latent_starts(config: LatentAttackConfig, index: Tensor, epsilons: Tensor, d: int, *,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """The starts ``u_0`` in whitened coordinates, ``(B, E, R, d)``: per input, epsilon and
    restart, uniform in the ball of that epsilon (Madry et al.'s random start, the fix for
    the zero gradient of spec 2.3 hazard 2); zeros without a random start.

    L2: a Gaussian direction times ``eps * U^(1/d)``; Linf: ``eps * (2 U_j - 1)`` per
    coordinate. Each input draws ``R * E`` samples of ``d + 1`` standard normals from its own
    stream (:mod:`rcert.engine.noise`, :data:`STREAM_LATENT_START`): the first ``d`` give the
    direction (L2) or, through the normal CDF, the coordinates (Linf); the last gives ``U``
    (L2). Samples are numbered restart-major (``r * E + e``), so a row's start depends only
    on the seed, its input's index, its epsilon's position and its restart, and restart 0 is
    the same whatever the number of restarts.
    """
    reps, n_eps = config.restarts, len(epsilons)
    if not config.random_start:
        return torch.zeros(len(index), n_eps, reps, d, dtype=dtype, device=index.device)
    draws = noise.gaussian(config.seed, index, reps * n_eps, d + 1,
                           stream=STREAM_LATENT_START, dtype=torch.float64)
    draws = draws.reshape(len(index), reps, n_eps, d + 1).transpose(1, 2)
    if config.norm == "linf":
        unit = 2.0 * torch.special.ndtr(draws[..., :d]) - 1.0
    else:
        direction = draws[..., :d]
        length = direction.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(direction.dtype).tiny)
        unit = direction / length * torch.special.ndtr(draws[..., d:]) ** (1.0 / d)
    radius = epsilons.to(device=index.device, dtype=torch.float64).reshape(1, n_eps, 1, 1)
    return (unit * radius).to(dtype)


def latent_pgd_chunked(decode_for: Callable[[slice], Callable[[Tensor], Tensor]], z0: Tensor,
                       epsilons: Tensor, *, config: LatentAttackConfig, index: Tensor,
                       scale: Tensor | None = None, target: Tensor | None = None,
                       data_range: tuple[float, float], ssim: tuple[int, float] | None = None,
                       memory_mb: float, output_size: int, device: torch.device | str
                       ) -> LatentResult:
    """:func:`latent_pgd` over chunks of inputs that fit in ``memory_mb``
    (:func:`rcert.attacks.chunking.inputs_per_chunk`, ``E * R`` rows per input), results
    concatenated in input order. Nothing in the attack depends on the chunk (the starts are
    keyed by input index, the rows independent), so chunks give one call's result bit for
    bit wherever the decoder's rows are batch-invariant; a BLAS matmul is not (MKL rounds a
    row differently by batch size), and then results agree to rounding.

    ``decode_for(rows)`` is the decoder of the inputs ``rows`` (a slice of ``z0``'s inputs),
    so a hierarchical model's per-input context can be sliced with them.
    """
    if z0.dim() != 2:
        raise RcertError(f"z0 must be (inputs, latent dim), got shape {tuple(z0.shape)}")
    rows = len(epsilons) * config.restarts
    per_chunk = inputs_per_chunk(memory_mb, output_size, device, rows_per_input=rows)
    parts = [latent_pgd(decode_for(part), z0[part], epsilons, config=config,
                        index=index[part], scale=None if scale is None else scale[part],
                        target=None if target is None else target[part],
                        data_range=data_range, ssim=ssim)
             for part in chunks(len(z0), per_chunk)]
    if not parts:
        return LatentResult(z0.new_zeros(0, len(epsilons), z0.shape[1]),
                            z0.new_zeros(0, len(epsilons)))
    return LatentResult(torch.cat([p.z for p in parts]), torch.cat([p.loss for p in parts]))


def _iterate(loss_of: Callable[[Tensor], Tensor], u: Tensor, eps: Tensor,
             config: LatentAttackConfig) -> tuple[Tensor, Tensor]:
    """``config.steps`` projected steps from ``u``; the last iterate and its loss, or the best
    seen over the start and every iterate (strictly better replaces)."""
    ascend = config.goal == "untargeted"
    sign = 1.0 if ascend else -1.0
    best_u = best_loss = None
    with torch.enable_grad():
        for k in range(config.steps + 1):
            last = k == config.steps
            u = u.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                loss = loss_of(u)
            if config.iterate == "best":
                value = loss.detach()
                if best_loss is None:
                    best_u, best_loss = u.detach(), value
                else:
                    better = value > best_loss if ascend else value < best_loss
                    best_u = torch.where(better[:, None], u.detach(), best_u)
                    best_loss = torch.where(better, value, best_loss)
            if last:
                break
            # Only the code requires grad: no parameter gradient accumulates, and each row's
            # gradient is its own loss's, the rows being independent.
            (grad,) = torch.autograd.grad(loss.sum(), u)
            step = _direction(grad, config.step) * (sign * config.step_size)
            u = _project(u.detach() + step, eps, config.norm)
    if config.iterate == "best":
        return best_u, best_loss
    return u.detach(), loss.detach()


def _direction(grad: Tensor, step: str) -> Tensor:
    """The gradient's sign, or the gradient over its L2 norm (zero rows stay zero)."""
    if step == "sign":
        return grad.sign()
    length = grad.norm(dim=1, keepdim=True).clamp_min(torch.finfo(grad.dtype).tiny)
    return grad / length


def _project(u: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Euclidean projection of each row onto its ball ``||u|| <= eps``: shrink onto the sphere
    (L2) or clamp (Linf). A row already inside is returned unchanged, bit for bit."""
    radius = eps[:, None]
    if norm == "linf":
        return torch.clamp(u, -radius, radius)
    length = u.norm(dim=1, keepdim=True)
    shrink = radius / length.clamp_min(torch.finfo(u.dtype).tiny)
    return torch.where(length > radius, u * shrink, u)


def _distance(images: Tensor, reference: Tensor, distance: str,
              data_range: tuple[float, float], ssim: tuple[int, float] | None) -> Tensor:
    """``D`` per row: MSE, or ``1 - SSIM``."""
    if distance == "mse":
        return fidelity.mse(images, reference)
    window, sigma = ssim
    return 1.0 - fidelity.ssim(images, reference, data_range=data_range, window=window,
                               sigma=sigma)


def _best_restart(z: Tensor, loss: Tensor, n_in: int, n_eps: int, reps: int,
                  untargeted: bool) -> LatentResult:
    """Per (input, epsilon), the restart with the largest (untargeted) or smallest
    (targeted) distance, ties to the lower restart; a NaN distance is never preferred."""
    loss = loss.reshape(n_in, n_eps, reps)
    key = loss if untargeted else -loss
    key = torch.where(torch.isnan(key), torch.full_like(key, -math.inf), key)
    pick = key.argmax(dim=2, keepdim=True)  # the first maximum: the lower restart
    z = z.reshape(n_in, n_eps, reps, -1)
    chosen = torch.gather(z, 2, pick[..., None].expand(-1, -1, -1, z.shape[-1])).squeeze(2)
    return LatentResult(chosen.detach(), torch.gather(loss, 2, pick).squeeze(2).detach())


def _check(z0: Tensor, epsilons: Tensor, index: Tensor, scale: Tensor | None,
           target: Tensor | None, config: LatentAttackConfig,
           ssim: tuple[int, float] | None) -> None:
    """Refuse inputs the attack cannot run on, each with one line saying how to fix it."""
    if z0.dim() != 2:
        raise RcertError(f"z0 must be (inputs, latent dim), got shape {tuple(z0.shape)}")
    n_in = z0.shape[0]
    if epsilons.dim() != 1 or len(epsilons) == 0 or not bool(
            torch.isfinite(epsilons).all() and (epsilons >= 0).all()):
        raise RcertError(f"epsilons must be a non-empty 1-d tensor of finite budgets >= 0, "
                         f"got {epsilons.tolist()}")
    if tuple(index.shape) != (n_in,):
        raise RcertError(f"index must hold one id per input, shape ({n_in},), got "
                         f"{tuple(index.shape)}")
    if scale is not None and (tuple(scale.shape) != tuple(z0.shape) or not bool(
            (torch.isfinite(scale) & (scale > 0)).all())):
        raise RcertError(f"scale must be finite and > 0, shaped like z0 {tuple(z0.shape)}; "
                         f"got shape {tuple(scale.shape)}; pass None for raw latent units")
    if config.goal == "targeted" and (target is None or target.shape[0] != n_in):
        got = None if target is None else tuple(target.shape)
        raise RcertError(f"a targeted latent attack needs one target per input ({n_in}), got "
                         f"{got}; build them with latent_target")
    if config.goal == "untargeted" and target is not None:
        raise RcertError("an untargeted latent attack takes no target; pass target=None or "
                         "set goal='targeted'")
    if config.distance == "ssim" and ssim is None:
        raise RcertError("the ssim distance needs SSIM's window: pass ssim=(window, sigma)")
