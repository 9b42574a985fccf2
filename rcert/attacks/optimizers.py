"""Optimisers of attack objectives within the ball and box: PGD and L-BFGS-B, with restarts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize
from torch import nn

from rcert import validate
from rcert.attacks.objectives import Encoded, distortion
from rcert.attacks.projection import project
from rcert.engine import noise
from rcert.engine.noise import STREAM_ATTACK, STREAM_START

THREATS = ("mean", "sigma", "both")


OPTIMIZERS = ("pgd", "lbfgs")


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

    return best_of_restarts(evaluate, delta, xr, rr, box, settings)


def best_of_restarts(evaluate: Callable[[torch.Tensor], torch.Tensor], delta: torch.Tensor,
                      x: torch.Tensor, radius: torch.Tensor, box: tuple[float, float] | None,
                      settings: AttackSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise all restarts (rows grouped by input) and keep each input's best."""
    run = _pgd if settings.optimizer == "pgd" else _lbfgs
    delta, value = run(evaluate, delta, x, radius, box, settings.steps)
    reps = settings.restarts
    best = value.view(-1, reps).argmax(dim=1)
    pick = torch.arange(best.shape[0], device=delta.device) * reps + best
    return delta[pick].detach(), value[pick].detach()


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
