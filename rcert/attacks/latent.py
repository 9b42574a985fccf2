"""Attacks on the latent mean, which the exact latent certificate must withstand (SPEC
section 5).
"""

from __future__ import annotations

import torch
from torch import nn

from rcert.attacks.objectives import Encoded, exceedance
from rcert.attacks.optimizers import best_of_restarts, restart_rows
from rcert.engine import noise
from rcert.engine.montecarlo import distances
from rcert.engine.noise import STREAM_START
from rcert.settings import AttackConfig


def latent_attack(model: nn.Module, x: torch.Tensor, radius: torch.Tensor, *, r: float,
                  config: AttackConfig, seed: int, index: torch.Tensor,
                  whitened: bool = False, clean: Encoded | None = None) -> torch.Tensor:
    """Attack the latent mean directly: maximise ``P(||g(mu + d_z + eta sigma) - g(mu)|| > r)``.

    Over shifts ``||d_z|| <= radius`` of the latent mean (SPEC section 5), with the smooth
    surrogate :func:`exceedance` over ``config.n_noise`` common draws, ``config.restarts``
    starts of ``config.steps`` steps of ``config.optimizer`` (``config.threat`` plays no
    part: the shift is the threat). Returns the best ``d_z`` per input, ``(B, d_z)``. The
    exact latent certificate says no shift below ``latent_margin`` can bring
    ``P(||Delta|| <= r)`` to ``m`` or below; this attack is how that is checked.

    ``whitened`` takes the ball in the certificate's own geometry, ``||d_z / sigma(x)|| <=
    radius``: the attack then moves ``u = d_z / sigma`` in the ordinary ball (the returned
    ``d_z`` is ``sigma * u``).
    """
    reps = config.restarts
    clean, eta = restart_rows(model, x, config, seed=seed, index=index, clean=clean)
    d_z = clean.mu.shape[1]
    rr = radius.to(x.dtype).repeat_interleave(reps)
    init = noise.gaussian(seed, index, reps, d_z, stream=STREAM_START, dtype=x.dtype)
    init = init.reshape(-1, d_z)
    init = init / init.norm(dim=1, keepdim=True).clamp_min(1e-30) * rr[:, None]
    objective = exceedance(r)

    def evaluate(shift: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        c = clean if rows is None else clean.select(rows)
        e = eta if rows is None else eta[rows]
        d = shift * c.sigma if whitened else shift
        return objective(distances(model, c.mu + d, c.sigma, e, c.reference, c.context))

    best = best_of_restarts(evaluate, init, clean.mu, rr, None, config).delta
    if not whitened:
        return best
    return best * clean.sigma.view(-1, config.restarts, d_z)[:, 0]
