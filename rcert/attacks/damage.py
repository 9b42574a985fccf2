"""Maximum-damage attacks [C Eq 5] within an L2 ball and the data's box (SPEC section 6).

An attack maximises an objective of the distortion ``||Delta(x, d)||`` over perturbations
``d`` with ``||d|| <= L`` and ``x + d`` inside the data range. The objective averages over
a fixed set of encoder-noise draws (common random numbers), so the ascent is not driven
by noise. Inputs and random restarts are optimised together as one batch.

Threat models (which encoder outputs the perturbation reaches):

* ``"mean"``: ``g(mu(x + d) + eta sigma(x))``, the theorem's threat model [C Sec 3.2.2];
* ``"sigma"``: ``g(mu(x) + eta sigma(x + d))``;
* ``"both"``: ``g(mu(x + d) + eta sigma(x + d))``, the full model [C Eq 5].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks.objectives import Encoded, expected_damage
from rcert.attacks.optimizers import AttackSettings, maximise, random_directions
from rcert.attacks.projection import data_box, project
from rcert.engine.noise import STREAM_START
from rcert.errors import RcertError
from rcert.progress import Progress


def _log_likelihood_degradation(model: nn.Module, x: torch.Tensor, z_adv: torch.Tensor,
                                z: torch.Tensor) -> torch.Tensor:
    """``|log p(x|z*) - log p(x|z)| / |log p(x|z)|`` [C Sec 4.1]; NaN without a likelihood."""
    log_likelihood = getattr(model, "log_likelihood", None)
    if log_likelihood is None:
        return torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    with torch.no_grad():
        clean = log_likelihood(x, z).double()
        adv = log_likelihood(x, z_adv).double()
    return ((adv - clean).abs() / clean.abs()).cpu()


def _damage_columns(model: nn.Module, x: torch.Tensor, delta: torch.Tensor,
                    clean: Encoded, target: str, prefix: str) -> dict[str, np.ndarray]:
    """Damage ``||g(mu(x + d)) - g(mu(x))||`` and log-likelihood degradation [C Sec 4.1].

    The perturbation reaches the mean only under the ``mean`` and ``both`` targets; under
    ``sigma`` the mean reconstruction stays put and the damage is 0.
    """
    with torch.no_grad():
        mu_adv = model.encode(x + delta)[0] if target in ("mean", "both") else clean.mu
        damage = (model.decode(mu_adv).flatten(1) - clean.reference).norm(dim=1)
    degradation = _log_likelihood_degradation(model, x, mu_adv, clean.mu)
    return {f"{prefix}damage": damage.double().cpu().numpy(),
            f"{prefix}loglik_degradation": degradation.numpy()}


def attack(model: nn.Module, x: torch.Tensor | np.ndarray, *, L: float | list[float],
           target: str = "both", restarts: int = 5, steps: int = 50, optimizer: str = "pgd",
           n_noise: int = 16, seed: int = 0, index: np.ndarray | None = None,
           device: str | torch.device | None = None, progress: bool = False) -> pd.DataFrame:
    """Maximum-damage attack [C Eq 5] on each input, for each budget in ``L``.

    Maximises the expected distortion ``E_eta ||Delta(x, d)||`` over ``||d|| <= L`` with
    ``x + d`` in the model's ``data_range``, and compares with Gaussian noise of the same
    norm (projected into the box the same way).

    Parameters
    ----------
    model, x, seed, index, device, progress
        As in :func:`rcert.certify`.
    L
        Budget, or a list of budgets (a damage-vs-L curve, [C Fig 9b]).
    target
        What the perturbation reaches: ``"mean"``, ``"sigma"`` or ``"both"`` [C Fig 4].
    restarts, steps, optimizer, n_noise
        Random starts, optimiser steps, ``"pgd"`` or ``"lbfgs"``, and the number of common
        noise draws in the objective. The first start is the noise baseline's direction,
        so the attack's objective is never below the baseline's.

    Returns
    -------
    pandas.DataFrame
        One row per input and budget: ``index, L, damage, loglik_degradation,
        delta_norm, objective, noise_damage, noise_loglik_degradation, noise_delta_norm``.
    """
    budgets = [L] if np.isscalar(L) else list(L) if L is not None else []
    if not budgets:
        raise RcertError("L must be a positive number or a non-empty list of them")
    budgets = [validate.positive_float(value, "L") for value in budgets]
    settings = AttackSettings(target, restarts, steps, optimizer, n_noise)
    settings.check()
    model, x, index_t = validate.prepare(model, x, index=index, seed=seed, device=device)
    box = data_box(model)
    clean = Encoded.of(model, x)
    shape = tuple(x.shape[1:])
    frames = []
    bar = Progress(len(budgets), "attack budgets", enabled=progress)
    for budget in budgets:
        radius = torch.full((x.shape[0],), float(budget), dtype=x.dtype, device=x.device)
        # The baseline: a Gaussian direction at norm L, projected like any perturbation.
        direction = random_directions(seed, index_t, shape, 1, STREAM_START).to(x)
        noise_delta = project(direction * budget, x, radius, box)
        delta, value = maximise(model, x, radius, expected_damage, settings, seed=seed,
                                index=index_t, box=box, starts=direction, clean=clean)
        frame = {"index": index_t.cpu().numpy(), "L": np.full(x.shape[0], float(budget))}
        frame.update(_damage_columns(model, x, delta, clean, target, ""))
        frame["delta_norm"] = delta.flatten(1).norm(dim=1).double().cpu().numpy()
        frame["objective"] = value.double().cpu().numpy()
        frame.update(_damage_columns(model, x, noise_delta, clean, target, "noise_"))
        frame["noise_delta_norm"] = noise_delta.flatten(1).norm(dim=1).double().cpu().numpy()
        frames.append(pd.DataFrame(frame))
        bar.update(1, status=f"L={budget:g}")
    bar.close()
    out = pd.concat(frames, ignore_index=True)
    out.attrs["config"] = {"target": target, "restarts": restarts, "steps": steps,
                           "optimizer": optimizer, "n_noise": n_noise, "seed": seed}
    return out
