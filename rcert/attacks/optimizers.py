"""Optimisers of attack objectives within the ball and box: PGD and L-BFGS-B, with restarts.

An input's result depends only on its own rows (SPEC section 6: rows depend only on the
input's index and the seed). PGD updates all rows of a batch at once, but each row only
from its own objective, so batching changes nothing beyond float rounding. L-BFGS-B solves
one scipy problem per input *and restart*, each evaluated on its own rows alone: a joint
problem would couple inputs through the shared line search and stopping rule, and separate
restarts keep each start's trajectory its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize
from torch import nn

from rcert import checks
from rcert.attacks.objectives import Encoded, distortion
from rcert.attacks.projection import project
from rcert.engine import noise
from rcert.engine.noise import STREAM_ATTACK, STREAM_START
from rcert.models import contract
from rcert.settings import AttackConfig

#: ``evaluate(d, rows)``: the objective at perturbations ``d`` of the optimiser's rows
#: ``rows`` (None: all of them), one value per row.
Evaluate = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class Ascent:
    """What an attack found, per input.

    ``delta`` and ``value``: the best perturbation over the restarts and its objective;
    ``moved``: some restart saw a non-zero gradient at some step (False: the attack never
    left its start); ``rows``: decoder rows of the objective evaluated for this input.
    """

    delta: torch.Tensor
    value: torch.Tensor
    moved: np.ndarray
    rows: np.ndarray


def random_directions(seed: int, index: torch.Tensor, shape: tuple[int, ...], count: int,
                      stream: int) -> torch.Tensor:
    """``count`` unit directions per input, ``(B * count, *shape)``, seeded per input."""
    size = int(np.prod(shape))
    u = noise.gaussian(seed, index, count, size, stream=stream).reshape(-1, size)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return u.reshape(-1, *shape)


def _pick(t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return t if rows is None else t[rows]


def maximise(model: nn.Module, x: torch.Tensor, radius: torch.Tensor,
             objective: Callable[[torch.Tensor], torch.Tensor], config: AttackConfig, *,
             seed: int, index: torch.Tensor, box: tuple[float, float] | None,
             starts: torch.Tensor | None = None, clean: Encoded | None = None) -> Ascent:
    """Maximise ``objective(distortion)`` over ``||d|| <= radius`` and the box, per input.

    ``config`` gives the threat, restarts, steps, optimiser and the ``n_noise`` common draws
    of the objective [C Eq 5] (stream ``STREAM_ATTACK``, keyed by ``index``).

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
    """
    n_inputs, shape = x.shape[0], tuple(x.shape[1:])
    reps = config.restarts
    clean, eta = restart_rows(model, x, config, seed=seed, index=index, clean=clean)
    xr = x.repeat_interleave(reps, dim=0)
    rr = radius.to(x.dtype).repeat_interleave(reps)
    init = random_directions(seed, index, shape, reps, STREAM_START).to(x)
    if starts is not None:
        first = starts.to(x).flatten(1)
        norm = first.norm(dim=1, keepdim=True)
        given = norm[:, 0] > 0
        init.view(n_inputs, reps, -1)[given, 0] = (first / norm.clamp_min(1e-30))[given]
    delta = project(init * rr.view(-1, *([1] * len(shape))), xr, rr, box)

    def evaluate(d: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return objective(distortion(model, _pick(xr, rows) + d,
                                    clean if rows is None else clean.select(rows),
                                    _pick(eta, rows), config.threat))

    return best_of_restarts(evaluate, delta, xr, rr, box, config)


def restart_rows(model: nn.Module, x: torch.Tensor, config: AttackConfig, *, seed: int,
                 index: torch.Tensor, clean: Encoded | None = None
                 ) -> tuple[Encoded, torch.Tensor]:
    """The clean point and the ``n_noise`` common draws (stream ``STREAM_ATTACK``), each
    repeated for the ``config.restarts`` rows of every input."""
    if config.optimizer == "lbfgs":
        # L-BFGS-B is exact per input only if its clean point is too (see Encoded.each).
        clean = Encoded.each(model, x)
    clean = (clean if clean is not None else Encoded.of(model, x)).repeat(config.restarts)
    width = contract.noise_dim(model, clean.mu.shape[1])
    eta = noise.gaussian(seed, index, config.n_noise, width, stream=STREAM_ATTACK,
                         dtype=x.dtype).repeat_interleave(config.restarts, dim=0)
    return clean, eta


def best_of_restarts(evaluate: Evaluate, delta: torch.Tensor, x: torch.Tensor,
                     radius: torch.Tensor, box: tuple[float, float] | None,
                     config: AttackConfig) -> Ascent:
    """Optimise all restarts (rows grouped by input, ``config.restarts`` each) and keep each
    input's best."""
    run = _pgd if config.optimizer == "pgd" else _lbfgs
    delta, value, moved, evaluations = run(evaluate, delta, x, radius, box, config.steps)
    reps = config.restarts
    best = value.view(-1, reps).argmax(dim=1)
    pick = torch.arange(best.shape[0], device=delta.device) * reps + best
    return Ascent(delta[pick].detach(), value[pick].detach(),
                  moved.reshape(-1, reps).any(axis=1),
                  evaluations.reshape(-1, reps).sum(axis=1) * config.n_noise)


def warn_unmoved(moved: np.ndarray, attacked: np.ndarray) -> None:
    """One ``zero-gradient`` reliability warning for the attacked inputs that never moved."""
    stuck = int((attacked & ~moved).sum())
    if stuck:
        checks.warn("zero-gradient",
                    f"{stuck} of {int(attacked.sum())} inputs had an attack gradient of exactly "
                    "zero at every step; those attacks did not move from their start (e.g. "
                    "threat sigma on a model whose sigma is constant); attack a threat whose "
                    "encoder outputs depend on the input")


def _gradient(value: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``d value.sum() / d d``; zero where the objective does not depend on ``d`` at all
    (e.g. a sigma-only threat on a model whose sigma is constant): callers count it."""
    if not value.requires_grad:
        return torch.zeros_like(d)
    (grad,) = torch.autograd.grad(value.sum(), d, allow_unused=True)
    return torch.zeros_like(d) if grad is None else grad


def _pgd(evaluate: Evaluate, delta: torch.Tensor, x: torch.Tensor, radius: torch.Tensor,
         box: tuple[float, float] | None, steps: int
         ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Projected gradient ascent with L2-normalised steps of ``2.5 radius / steps``."""
    step = (2.5 * radius / steps).view(-1, *([1] * (delta.ndim - 1)))
    best_delta = delta.clone()
    best_value = torch.full((delta.shape[0],), -torch.inf, dtype=delta.dtype,
                            device=delta.device)
    moved = torch.zeros(delta.shape[0], dtype=torch.bool, device=delta.device)
    for _ in range(steps):
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            value = evaluate(d, None)
            grad = _gradient(value, d)
        moved |= grad.flatten(1).ne(0).any(dim=1)
        better = value.detach() > best_value
        best_value = torch.where(better, value.detach(), best_value)
        best_delta[better] = delta[better]
        direction = _ascent_direction(grad, delta, radius)
        delta = project(delta + step * direction, x, radius, box)
    with torch.no_grad():
        value = evaluate(delta, None)
    better = value > best_value
    best_value = torch.where(better, value, best_value)
    best_delta[better] = delta[better]
    evaluations = np.full(delta.shape[0], steps + 1, dtype=np.int64)
    return best_delta, best_value, moved.cpu().numpy(), evaluations


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


def _lbfgs(evaluate: Evaluate, delta: torch.Tensor, x: torch.Tensor, radius: torch.Tensor,
           box: tuple[float, float] | None, steps: int
           ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """scipy's L-BFGS-B, as in the paper, one problem per row (an input's restart)."""
    found, values, moved, evaluations = [], [], [], []
    for row in range(delta.shape[0]):
        d, value, row_moved, count = _lbfgs_row(evaluate, delta, x, radius, box, steps, row)
        found.append(d)
        values.append(value)
        moved.append(row_moved)
        evaluations.append(count)
    return (torch.cat(found), torch.cat(values), np.array(moved, dtype=bool),
            np.array(evaluations, dtype=np.int64))


def _lbfgs_row(evaluate: Evaluate, delta: torch.Tensor, x: torch.Tensor,
               radius: torch.Tensor, box: tuple[float, float] | None, steps: int, row: int
               ) -> tuple[torch.Tensor, torch.Tensor, bool, int]:
    """One row's problem: the box as bounds, the ball by radial scaling [C Sec 4.1]."""
    rows = torch.tensor([row], device=delta.device)
    start, x_row, radial = delta[row:row + 1], x[row:row + 1], radius[row:row + 1]
    shape = start.shape
    state = {"moved": False, "evaluations": 1}  # the final evaluation below

    def to_ball(v: torch.Tensor) -> torch.Tensor:
        norm = v.flatten(1).norm(dim=1)
        scale = torch.where(norm > radial, radial / norm.clamp_min(1e-30), torch.ones_like(norm))
        return v * scale.view(-1, *([1] * (v.ndim - 1)))

    def fun(v_np: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.from_numpy(v_np).to(start).view(shape).requires_grad_(True)
        with torch.enable_grad():
            value = evaluate(to_ball(v), rows)
            grad = _gradient(value, v)
        state["evaluations"] += 1
        state["moved"] = state["moved"] or bool(grad.ne(0).any())
        return -float(value.detach().sum()), -grad.detach().cpu().double().numpy().ravel()

    bounds = None if box is None else optimize.Bounds(
        (box[0] - x_row).flatten().cpu().double().numpy(),
        (box[1] - x_row).flatten().cpu().double().numpy())
    result = optimize.minimize(fun, start.detach().cpu().double().numpy().ravel(), jac=True,
                               method="L-BFGS-B", bounds=bounds,
                               options={"maxiter": steps, "maxcor": 100})
    found = project(to_ball(torch.from_numpy(result.x).to(start).view(shape)), x_row, radial,
                    box)
    with torch.no_grad():
        value = evaluate(found, rows)
    return found, value, state["moved"], state["evaluations"]
