"""Attacks on the latent mean, which the exact latent certificate must withstand (SPEC
section 5).
"""

from __future__ import annotations

import torch
from torch import nn

from rcert.attacks.objectives import Encoded, exceedance
from rcert.attacks.optimizers import best_of_restarts
from rcert.engine import noise
from rcert.engine.noise import STREAM_ATTACK, STREAM_START
from rcert.settings import AttackConfig


def latent_attack(model: nn.Module, x: torch.Tensor, radius: torch.Tensor, *, r: float,
                  config: AttackConfig, seed: int, index: torch.Tensor) -> torch.Tensor:
    """Attack the latent mean directly: maximise ``P(||g(mu + d_z + eta sigma) - g(mu)|| > r)``.

    Over shifts ``||d_z|| <= radius`` of the latent mean (SPEC section 5), with the smooth
    surrogate :func:`exceedance` over ``config.n_noise`` common draws, ``config.restarts``
    starts of ``config.steps`` steps of ``config.optimizer`` (``config.threat`` plays no
    part: the shift is the threat). Returns the best ``d_z`` per input, ``(B, d_z)``. The
    exact latent certificate says no shift below ``latent_margin`` can bring
    ``P(||Delta|| <= r)`` to ``m`` or below; this attack is how that is checked.
    """
    reps = config.restarts
    clean = (Encoded.each(model, x) if config.optimizer == "lbfgs"
             else Encoded.of(model, x)).repeat(reps)
    d_z = clean.mu.shape[1]
    eta = noise.gaussian(seed, index, config.n_noise, d_z, stream=STREAM_ATTACK,
                         dtype=x.dtype).repeat_interleave(reps, dim=0)
    rr = radius.to(x.dtype).repeat_interleave(reps)
    init = noise.gaussian(seed, index, reps, d_z, stream=STREAM_START, dtype=x.dtype)
    init = init.reshape(-1, d_z)
    init = init / init.norm(dim=1, keepdim=True).clamp_min(1e-30) * rr[:, None]
    objective = exceedance(r, 0.1 * r)

    def evaluate(shift: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        c = clean if rows is None else clean.select(rows)
        e = eta if rows is None else eta[rows]
        z = (c.mu + shift)[:, None, :] + e * c.sigma[:, None, :]
        g = model.decode(z.reshape(-1, d_z)).reshape(z.shape[0], config.n_noise, -1)
        return objective(torch.linalg.vector_norm(g - c.reference[:, None, :], dim=-1))

    return best_of_restarts(evaluate, init, clean.mu, rr, None, config).delta
