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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import optimize
from torch import nn

from rcert import noise, validate
from rcert.errors import RcertError
from rcert.progress import Progress

THREATS = ("mean", "sigma", "both")
OPTIMIZERS = ("pgd", "lbfgs")

# Noise streams: the certificate uses 0; attacks use these, so their draws are independent.
# Success checks take a fresh stream each, counting up from STREAM_CHECK.
STREAM_ATTACK = 1
STREAM_START = 2
STREAM_CURVE = 3
STREAM_CHECK = 16

# Bisection steps for the projection's shrink factor: 2**-40 relative precision.
_PROJECTION_STEPS = 40


def project(delta: torch.Tensor, x: torch.Tensor, radius: torch.Tensor,
            box: tuple[float, float] | None) -> torch.Tensor:
    """Euclidean projection of each ``delta`` onto ``{||d|| <= radius} ∩ {lo <= x + d <= hi}``.

    The KKT conditions give ``d = clip(t * delta, lo - x, hi - x)`` for a shrink factor
    ``t`` in ``(0, 1]``; since ``0`` lies in the box, ``||d(t)||`` grows with ``t``, so the
    largest feasible ``t`` is found by bisection, for all inputs at once.

    Parameters
    ----------
    delta, x
        ``(B, ...)`` perturbations and the inputs they perturb.
    radius
        ``(B,)`` L2 radii.
    box
        ``(lo, hi)`` data range, or None for no box.
    """
    flat = delta.flatten(1)
    radius = radius.to(flat.dtype).reshape(-1)
    if box is None:
        norm = flat.norm(dim=1)
        scale = torch.where(norm > radius, radius / norm.clamp_min(1e-30), torch.ones_like(norm))
        return (flat * scale[:, None]).view_as(delta)
    lo = box[0] - x.flatten(1)
    hi = box[1] - x.flatten(1)

    def shrink(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(flat * t[:, None], lo), hi)

    feasible = shrink(torch.ones_like(radius)).norm(dim=1) <= radius
    t_lo = torch.zeros_like(radius)
    t_hi = torch.ones_like(radius)
    for _ in range(_PROJECTION_STEPS):
        mid = (t_lo + t_hi) / 2
        ok = shrink(mid).norm(dim=1) <= radius
        t_lo = torch.where(ok, mid, t_lo)
        t_hi = torch.where(ok, t_hi, mid)
    t = torch.where(feasible, torch.ones_like(radius), t_lo)
    return shrink(t).view_as(delta)


@dataclass
class Encoded:
    """The clean point an attack starts from: ``mu(x)``, ``sigma(x)`` and ``g(mu(x))``."""

    mu: torch.Tensor
    sigma: torch.Tensor
    reference: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, x: torch.Tensor) -> Encoded:
        with torch.no_grad():
            mu, sigma = model.encode(x)
            return cls(mu, sigma, model.decode(mu).flatten(1))

    def repeat(self, times: int) -> Encoded:
        return Encoded(*(t.repeat_interleave(times, dim=0)
                         for t in (self.mu, self.sigma, self.reference)))

    def select(self, rows: torch.Tensor) -> Encoded:
        return Encoded(self.mu[rows], self.sigma[rows], self.reference[rows])


def distortion(model: nn.Module, x_adv: torch.Tensor, clean: Encoded, eta: torch.Tensor,
               threat: str) -> torch.Tensor:
    """``||Delta(x, d)||`` at ``x_adv = x + d`` for each noise draw: ``(B, K)``.

    ``Delta = g(mu' + eta sigma') - g(mu(x))`` with ``mu'``, ``sigma'`` taken at ``x + d``
    or at ``x`` according to ``threat`` (SPEC section 2).
    """
    mu_adv, sigma_adv = model.encode(x_adv)
    mu = mu_adv if threat in ("mean", "both") else clean.mu
    sigma = sigma_adv if threat in ("sigma", "both") else clean.sigma
    n_draws, d_z = eta.shape[1], eta.shape[2]
    z = mu[:, None, :] + eta * sigma[:, None, :]
    g = model.decode(z.reshape(-1, d_z)).reshape(z.shape[0], n_draws, -1)
    return torch.linalg.vector_norm(g - clean.reference[:, None, :], dim=-1)


def expected_damage(dist: torch.Tensor) -> torch.Tensor:
    """The maximum-damage objective [C Eq 5]: the mean distortion over the draws."""
    return dist.mean(dim=1)


def exceedance(r: float, temperature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth surrogate of ``P(||Delta|| > r)``: the mean of ``sigmoid((||Delta|| - r) / T)``.

    Steps are normalised, so only the direction of its gradient matters; the draws
    nearest to ``r`` dominate it, which is what moving ``P(||Delta|| <= r)`` needs.
    """
    def objective(dist: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((dist - r) / temperature).mean(dim=1)
    return objective


@dataclass
class AttackSettings:
    """How hard to attack: ``restarts`` random starts of ``steps`` steps of ``optimizer``,
    with ``n_noise`` common noise draws in the objective; ``threat`` picks what moves."""

    threat: str = "mean"
    restarts: int = 5
    steps: int = 50
    optimizer: str = "pgd"
    n_noise: int = 16

    def check(self) -> None:
        validate.choice(self.threat, "threat", THREATS)
        validate.choice(self.optimizer, "optimizer", OPTIMIZERS)
        for name in ("restarts", "steps", "n_noise"):
            validate.positive_int(getattr(self, name), name)


def random_directions(seed: int, index: torch.Tensor, shape: tuple[int, ...], count: int,
                      stream: int) -> torch.Tensor:
    """``count`` unit directions per input, ``(B * count, *shape)``, seeded per input."""
    size = int(np.prod(shape))
    u = noise.gaussian(seed, index, count, size, stream=stream).reshape(-1, size)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return u.reshape(-1, *shape)


def maximise(model: nn.Module, x: torch.Tensor, radius: torch.Tensor,
             objective: Callable[[torch.Tensor], torch.Tensor], settings: AttackSettings, *,
             seed: int, index: torch.Tensor, box: tuple[float, float] | None,
             starts: torch.Tensor | None = None, clean: Encoded | None = None,
             on_rows: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise ``objective(distortion)`` over ``||d|| <= radius`` and the box, per input.

    Parameters
    ----------
    radius
        ``(B,)`` budget per input.
    objective
        Maps distortions ``(B, K)`` to a value per input ``(B,)``.
    starts
        Optional ``(B, *x.shape[1:])`` direction for the first restart (e.g. the
        random-noise baseline, so the attack is never weaker than it); a zero row keeps
        its random start. Restarts start at the full radius.
    clean
        ``Encoded.of(model, x)`` when the caller has it already (saves a decoder pass).
    on_rows
        Called with the number of decoder rows of each objective evaluation.

    Returns
    -------
    delta, value
        The best perturbation per input over all restarts, and its objective value.
    """
    n_inputs, shape = x.shape[0], tuple(x.shape[1:])
    reps = settings.restarts
    clean = (clean if clean is not None else Encoded.of(model, x)).repeat(reps)
    d_z = clean.mu.shape[1]
    eta = noise.gaussian(seed, index, settings.n_noise, d_z, stream=STREAM_ATTACK,
                         dtype=x.dtype).repeat_interleave(reps, dim=0)
    xr = x.repeat_interleave(reps, dim=0)
    rr = radius.to(x.dtype).repeat_interleave(reps)
    init = random_directions(seed, index, shape, reps, STREAM_START).to(x)
    if starts is not None:
        first = starts.to(x).flatten(1)
        norm = first.norm(dim=1, keepdim=True)
        given = norm[:, 0] > 0
        init.view(n_inputs, reps, -1)[given, 0] = (first / norm.clamp_min(1e-30))[given]
    delta = project(init * rr.view(-1, *([1] * len(shape))), xr, rr, box)

    def evaluate(d: torch.Tensor) -> torch.Tensor:
        if on_rows is not None:
            on_rows(d.shape[0] * settings.n_noise)
        return objective(distortion(model, xr + d, clean, eta, settings.threat))

    return _best_of_restarts(evaluate, delta, xr, rr, box, settings)


def _best_of_restarts(evaluate: Callable[[torch.Tensor], torch.Tensor], delta: torch.Tensor,
                      x: torch.Tensor, radius: torch.Tensor, box: tuple[float, float] | None,
                      settings: AttackSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise all restarts (rows grouped by input) and keep each input's best."""
    run = _pgd if settings.optimizer == "pgd" else _lbfgs
    delta, value = run(evaluate, delta, x, radius, box, settings.steps)
    reps = settings.restarts
    best = value.view(-1, reps).argmax(dim=1)
    pick = torch.arange(best.shape[0], device=delta.device) * reps + best
    return delta[pick].detach(), value[pick].detach()


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

    shift, _ = _best_of_restarts(evaluate, init, clean.mu, rr, None, settings)
    return shift


def _gradient(value: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``d value.sum() / d d``; zero where the objective does not depend on ``d`` at all
    (e.g. a sigma-only threat on a model whose sigma is constant)."""
    if not value.requires_grad:
        return torch.zeros_like(d)
    (grad,) = torch.autograd.grad(value.sum(), d, allow_unused=True)
    return torch.zeros_like(d) if grad is None else grad


def _pgd(evaluate: Callable[[torch.Tensor], torch.Tensor], delta: torch.Tensor,
         x: torch.Tensor, radius: torch.Tensor, box: tuple[float, float] | None,
         steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient ascent with L2-normalised steps of ``2.5 radius / steps``."""
    step = (2.5 * radius / steps).view(-1, *([1] * (delta.ndim - 1)))
    best_delta = delta.clone()
    best_value = torch.full((delta.shape[0],), -torch.inf, dtype=delta.dtype,
                            device=delta.device)
    for _ in range(steps):
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            value = evaluate(d)
            grad = _gradient(value, d)
        better = value.detach() > best_value
        best_value = torch.where(better, value.detach(), best_value)
        best_delta[better] = delta[better]
        direction = _ascent_direction(grad, delta, radius)
        delta = project(delta + step * direction, x, radius, box)
    with torch.no_grad():
        value = evaluate(delta)
    better = value > best_value
    best_value = torch.where(better, value, best_value)
    best_delta[better] = delta[better]
    return best_delta, best_value


def _ascent_direction(grad: torch.Tensor, delta: torch.Tensor,
                      radius: torch.Tensor) -> torch.Tensor:
    """The L2-normalised ascent step; on the ball's surface, without its outward part.

    The projection would undo a step's outward radial part, so keeping it wastes most of
    each normalised step once the iterate sits on the sphere; the tangential part is what
    moves it along the sphere.
    """
    g = grad.flatten(1)
    d = delta.flatten(1)
    d_norm = d.norm(dim=1, keepdim=True)
    on_sphere = d_norm >= radius.view(-1, 1) * (1 - 1e-4)
    unit = d / d_norm.clamp_min(1e-30)
    outward = (g * unit).sum(dim=1, keepdim=True).clamp_min(0.0)
    g = torch.where(on_sphere, g - outward * unit, g)
    return (g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)).view_as(grad)


def _lbfgs(evaluate: Callable[[torch.Tensor], torch.Tensor], delta: torch.Tensor,
           x: torch.Tensor, radius: torch.Tensor, box: tuple[float, float] | None,
           steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scipy's L-BFGS-B, as in the paper: the box as bounds, the ball by radial scaling.

    The objective is separable over inputs, so all inputs and restarts form one problem.
    """
    shape = delta.shape
    radial = radius.view(-1, *([1] * (delta.ndim - 1)))

    def to_ball(v: torch.Tensor) -> torch.Tensor:
        norm = v.flatten(1).norm(dim=1).view_as(radial)
        return v * torch.where(norm > radial, radial / norm.clamp_min(1e-30),
                               torch.ones_like(norm))

    def fun(v_np: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.from_numpy(v_np).to(delta).view(shape).requires_grad_(True)
        with torch.enable_grad():
            value = evaluate(to_ball(v))
            grad = _gradient(value, v)
        return -float(value.detach().sum()), -grad.detach().cpu().double().numpy().ravel()

    if box is None:
        bounds = None
    else:
        lo = (box[0] - x).flatten().cpu().double().numpy()
        hi = (box[1] - x).flatten().cpu().double().numpy()
        bounds = optimize.Bounds(lo, hi)
    result = optimize.minimize(fun, delta.detach().cpu().double().numpy().ravel(), jac=True,
                               method="L-BFGS-B", bounds=bounds,
                               options={"maxiter": steps, "maxcor": 100})
    found = to_ball(torch.from_numpy(result.x).to(delta).view(shape))
    found = project(found, x, radius, box)
    with torch.no_grad():
        value = evaluate(found)
    return found, value


def data_box(model: nn.Module) -> tuple[float, float] | None:
    """The model's ``data_range`` as floats: the box perturbed inputs stay in (None: no box)."""
    box = getattr(model, "data_range", None)
    return None if box is None else (float(box[0]), float(box[1]))


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
