"""Attacks on the latent mean, which the exact latent certificate must withstand (SPEC
section 5).
"""

from __future__ import annotations

import torch
from torch import nn

from rcert.attacks.objectives import Encoded, exceedance
from rcert.attacks.optimizers import AttackSettings, best_of_restarts
from rcert.engine import noise
from rcert.engine.noise import STREAM_ATTACK, STREAM_START


def latent_attack(model: nn.Module, x: torch.Tensor, radius: torch.Tensor, *, r: float,
                  settings: AttackSettings, seed: int, index: torch.Tensor) -> torch.Tensor:
    """Attack the latent mean directly: maximise ``P(||g(mu + d_z + eta sigma) - g(mu)|| > r)``.

    Over shifts ``||d_z|| <= radius`` of the latent mean (SPEC section 5), with the smooth
    surrogate :func:`exceedance` over common draws. Returns the best ``d_z`` per input,
    ``(B, d_z)``. The exact latent certificate says no shift below ``latent_margin`` can
    bring ``P(||Delta|| <= r)`` to ``m`` or below; this attack is how that is checked.
    """
    reps = settings.restarts
    clean = Encoded.of(model, x).repeat(reps)
    d_z = clean.mu.shape[1]
    eta = noise.gaussian(seed, index, settings.n_noise, d_z, stream=STREAM_ATTACK,
                         dtype=x.dtype).repeat_interleave(reps, dim=0)
    rr = radius.to(x.dtype).repeat_interleave(reps)
    init = noise.gaussian(seed, index, reps, d_z, stream=STREAM_START, dtype=x.dtype)
    init = init.reshape(-1, d_z)
    init = init / init.norm(dim=1, keepdim=True).clamp_min(1e-30) * rr[:, None]
    objective = exceedance(r, 0.1 * r)

    def evaluate(shift: torch.Tensor) -> torch.Tensor:
        z = (clean.mu + shift)[:, None, :] + eta * clean.sigma[:, None, :]
        g = model.decode(z.reshape(-1, d_z)).reshape(z.shape[0], settings.n_noise, -1)
        return objective(torch.linalg.vector_norm(g - clean.reference[:, None, :], dim=-1))

    shift, _ = best_of_restarts(evaluate, init, clean.mu, rr, None, settings)
    return shift
