"""The empirical margin and fixed-direction curves: bounds against attacks (SPEC section 6).

``R_emp(x)`` is the smallest radius at which an attack finds ``d`` with
``P(||Delta(x, d)|| <= r) <= m``, that probability checked on fresh noise draws. It is an
upper bound on the true margin ``R(x)`` up to Monte Carlo error, so a sound certificate
satisfies ``bound <= R(x) <= R_emp(x)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks import objectives, optimizers, projection
from rcert.attacks.objectives import Encoded
from rcert.attacks.optimizers import AttackSettings
from rcert.engine import montecarlo, noise
from rcert.progress import Progress
from rcert.statistics import binomial

# Temperature of the exceedance surrogate, as a share of r.
_TEMPERATURE = 0.1
# First radius of the outward search, as a share of the largest radius, when none is given.
_FIRST_SHARE = 1 / 64


def within_counts(model: nn.Module, x_adv: torch.Tensor, clean: Encoded, *, r: float,
                  n_samples: int, seed: int, index: torch.Tensor, stream: int, threat: str,
                  max_rows: int) -> torch.Tensor:
    """``k = #{||Delta(x, d)|| <= r}`` over ``n_samples`` fresh draws, per input."""
    with torch.no_grad():
        mu_adv, sigma_adv = model.encode(x_adv)
    mu = mu_adv if threat in ("mean", "both") else clean.mu
    sigma = sigma_adv if threat in ("sigma", "both") else clean.sigma
    dist = montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=n_samples,
                                       seed=seed, max_rows=max_rows, stream=stream,
                                       reference=clean.reference)
    return (dist <= r).sum(dim=1)


def empirical_margin(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    *,
    r: float,
    m: float = 0.5,
    threat: str = "mean",
    restarts: int = 1,
    steps: int = 10,
    optimizer: str = "pgd",
    n_noise: int = 32,
    n_check: int = 200,
    alpha: float = 0.001,
    resolution: float | None = None,
    start: np.ndarray | float | None = None,
    max_radius: float | None = None,
    seed: int = 0,
    index: np.ndarray | None = None,
    device: str | torch.device | None = None,
    memory_mb: float = 256.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Smallest radius at which an attack breaks r-robustness, by bisection (SPEC section 6).

    Every input runs, in lockstep with the others, an outward search from ``start``
    (doubling until an attack succeeds or ``max_radius`` fails) and then a bisection of
    the bracket ``[lo, hi]`` (an attack failed at ``lo`` and succeeded at ``hi``) down to
    ``resolution``. At each radius the attack maximises a smooth surrogate of
    ``P(||Delta|| > r)`` over ``n_noise`` common draws; success is judged on
    ``n_check`` fresh draws: ``k/n_check <= m``. Each attack starts from the last
    successful perturbation's direction, when there is one.

    Parameters
    ----------
    model, x, r, m, seed, index, device, memory_mb, progress
        As in :func:`rcert.certify`.
    threat
        ``"mean"`` (the theorem's threat model, default) or ``"both"`` (mean and sigma),
        or ``"sigma"``.
    restarts, steps, optimizer, n_noise
        Attack strength at each radius (see :func:`rcert.attacks.damage.attack`). The defaults
        were chosen in benchmarks/bench_empirical.py: with 32 common draws, more restarts
        or steps found no smaller margins (each round also warm-starts from the last
        success), at several times the cost.
    n_check, alpha
        Fresh draws that judge success, and the level of ``p_check_upper``.
    resolution
        Width at which the bisection stops (default: 2 % of the bracket's upper end).
    start
        First radius per input (default ``max_radius / 64``); a good start is about twice
        the certified bound.
    max_radius
        Largest radius searched (default: the data box's diagonal).

    Returns
    -------
    pandas.DataFrame
        ``index, margin_empirical`` (the bracket's upper end: ``inf`` when no attack
        succeeded up to ``max_radius``, 0 when the input is not r-robust unperturbed),
        ``margin_bracket_lo``, ``margin_bracket_hi``, ``k_check``, ``n_check``,
        ``p_check`` and ``p_check_upper`` (the Clopper-Pearson upper bound on
        ``P(||Delta|| <= r)`` at the successful perturbation), ``rounds`` (attacks run)
        and ``decoder_rows`` (latent codes decoded for this input).
    """
    validate.check_options(r=r, m=m, alpha=alpha, n_samples=n_check)
    settings = AttackSettings(threat, restarts, steps, optimizer, n_noise)
    settings.check()
    model, x, index = validate.prepare(model, x, index=index, seed=seed, device=device)
    box = projection.data_box(model)
    n_inputs = x.shape[0]
    size = x[0].numel()
    if max_radius is None:
        max_radius = math.sqrt(size) * (box[1] - box[0]) if box is not None else 1e3
    max_radius = validate.positive_float(max_radius, "max_radius")
    if resolution is not None:
        validate.positive_float(resolution, "resolution")
    first = np.asarray(max_radius * _FIRST_SHARE if start is None else start, dtype=np.float64)
    if first.ndim > 1 or first.size not in (1, n_inputs):
        raise validate.RcertError(f"start must be one radius or one per input ({n_inputs}), "
                                  f"got shape {first.shape}")
    first = np.broadcast_to(first, (n_inputs,)).copy()
    if not np.all(np.isfinite(first) & (first > 0)):
        raise validate.RcertError("start radii must be positive and finite")
    first = np.minimum(first, max_radius)
    max_rows = montecarlo.rows_for_budget(memory_mb, size, x.device)
    clean = Encoded.of(model, x)
    check = {"r": r, "n_samples": n_check, "seed": seed, "threat": threat,
             "max_rows": max_rows}

    lo = np.zeros(n_inputs)
    hi = np.full(n_inputs, np.inf)
    k_found = np.full(n_inputs, -1, dtype=np.int64)
    rows = np.zeros(n_inputs, dtype=np.int64)
    rounds = np.zeros(n_inputs, dtype=np.int64)
    radius = first
    starts = torch.zeros_like(x)  # the last successful perturbation; zero: none yet

    # Radius 0: an input that is not r-robust unperturbed has margin 0.
    k0 = within_counts(model, x, clean, index=index, stream=noise.STREAM_CHECK,
                       **check).cpu().numpy()
    rows += n_check
    broken = k0 / n_check <= m
    hi[broken], k_found[broken] = 0.0, k0[broken]
    done = broken.copy()

    def tolerance(upper: np.ndarray) -> np.ndarray:
        return np.full_like(upper, resolution) if resolution is not None else 0.02 * upper

    bar = Progress(n_inputs, "empirical margin", enabled=progress)
    stream = noise.STREAM_CHECK
    counted = [0]

    def count(n: int) -> None:
        counted[0] += n

    while not done.all():
        act = np.flatnonzero(~done)
        sel = torch.as_tensor(act, device=x.device)
        counted[0] = 0
        rho = torch.as_tensor(radius[act], dtype=x.dtype, device=x.device)
        delta, _ = optimizers.maximise(
            model, x[sel], rho, objectives.exceedance(r, _TEMPERATURE * r), settings, seed=seed,
            index=index[sel], box=box, starts=starts[sel], clean=clean.select(sel),
            on_rows=count)
        stream += 1  # fresh draws for every check
        k = within_counts(model, x[sel] + delta, clean.select(sel), index=index[sel],
                          stream=stream, **check).cpu().numpy()
        rows[act] += counted[0] // len(act) + n_check
        rounds[act] += 1
        success = k / n_check <= m
        won, lost = act[success], act[~success]
        hi[won], k_found[won] = radius[won], k[success]
        starts[torch.as_tensor(won, device=x.device)] = delta[torch.as_tensor(
            np.flatnonzero(success), device=x.device)]
        lo[lost] = radius[lost]
        exhausted = lost[radius[lost] >= max_radius]
        done[exhausted] = True
        bracketed = np.isfinite(hi)
        finished = bracketed & ~done & (hi - lo <= tolerance(hi))
        done |= finished
        bar.update(int(finished.sum() + exhausted.size))
        radius = np.where(bracketed, (lo + hi) / 2, np.minimum(2 * radius, max_radius))
    bar.close()
    k_report = np.where(k_found >= 0, k_found, 0)
    p_upper = np.where(np.isfinite(hi),
                       binomial.clopper_pearson_upper(k_report, n_check, alpha), np.nan)
    out = pd.DataFrame({
        "index": index.cpu().numpy(),
        "margin_empirical": hi,
        "margin_bracket_lo": lo,
        "margin_bracket_hi": hi,
        "k_check": np.where(np.isfinite(hi), k_report, -1),
        "n_check": np.full(n_inputs, n_check, dtype=np.int64),
        "p_check": np.where(np.isfinite(hi), k_report / n_check, np.nan),
        "p_check_upper": p_upper,
        "rounds": rounds,
        "decoder_rows": rows,
    })
    out.attrs["config"] = {"r": float(r), "m": float(m), "threat": threat,
                           "restarts": restarts, "steps": steps, "optimizer": optimizer,
                           "n_noise": n_noise, "n_check": n_check, "seed": seed}
    return out
