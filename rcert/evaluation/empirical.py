"""The empirical margin: the smallest radius an attack breaks r-robustness at (SPEC section 6).

``R_emp(x)`` is the smallest radius at which an attack finds ``d`` with
``P(||Delta(x, d)|| <= r) <= m``, that probability checked on fresh noise draws. It is an
upper bound on the true margin ``R(x)`` up to Monte Carlo error, so a sound certificate
satisfies ``bound <= R(x) <= R_emp(x)``. The final perturbation is checked once more on
draws of its own (``STREAM_VERIFY``), since the draws that selected it are biased towards
success; a violation verdict must rest on those fresh draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from rcert import settings, validate
from rcert.attacks import chunking, objectives, optimizers, projection
from rcert.attacks.objectives import Encoded
from rcert.engine import montecarlo, noise
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.progress import Progress
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, ThreatModel
from rcert.statistics import binomial

# First radius of the outward search, as a share of the largest radius, when none is given.
_FIRST_SHARE = 1 / 64


def within_counts(model: nn.Module, x_adv: torch.Tensor, clean: Encoded, *, r: float,
                  n_samples: int, seed: int, index: torch.Tensor, stream: int,
                  threat: ThreatModel, max_rows: int) -> torch.Tensor:
    """``k = #{||Delta(x, d)|| <= r}`` over ``n_samples`` fresh draws, per input (SPEC 2)."""
    with torch.no_grad():
        mu, sigma, context = objectives.at_threat(model, x_adv, clean, threat)
    dist = montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=n_samples,
                                       seed=seed, max_rows=max_rows, stream=stream,
                                       reference=clean.reference, context=context)
    return (dist <= r).sum(dim=1)


def p_value(k: np.ndarray, n_check: int, m: float) -> np.ndarray:
    """One-sided p-value of "``P(||Delta|| <= r) > m`` at this perturbation" from ``k``
    robust draws of ``n_check``: ``P(Binomial(n_check, m) <= k)``; small ``k`` is evidence
    against it."""
    return stats.binom.cdf(k, n_check, m)


def record(cert: CertifyConfig, atk: AttackConfig) -> dict[str, Any]:
    """What a frame records of its attack (``attrs["config"]["empirical"]``): the attack's
    settings and the certificate's ``r, m, alpha, seed``."""
    return {**settings.as_dict(atk), "r": cert.r, "m": cert.m, "alpha": cert.alpha,
            "seed": cert.seed}


def chunk_sizes(run: RunConfig, x: torch.Tensor, atk: AttackConfig) -> tuple[int, int]:
    """``(max_rows, per)``: decoder rows per batch of draws, and inputs per chunk of an
    attack that holds ``restarts * n_noise`` rows per input, within ``run.memory_mb``."""
    size = x[0].numel()
    return (montecarlo.rows_for_budget(run.memory_mb, size, x.device),
            chunking.inputs_per_chunk(run.memory_mb, size, x.device,
                                      atk.restarts * atk.n_noise))


def attempt(model: nn.Module, x: torch.Tensor, clean: Encoded, index: torch.Tensor,
            radius: np.ndarray, *, cert: CertifyConfig, atk: AttackConfig,
            starts: torch.Tensor, stream: int, max_rows: int,
            box: tuple[float, float] | None) -> tuple[optimizers.Ascent, np.ndarray]:
    """One round of the search: attack each input within its ``radius`` from its start, then
    count ``k``, its robust draws among ``n_check`` fresh ones on ``stream``."""
    rho = torch.as_tensor(radius, dtype=x.dtype, device=x.device)
    found = optimizers.maximise(model, x, rho, objectives.exceedance(cert.r), atk,
                                seed=cert.seed, index=index, box=box, starts=starts,
                                clean=clean)
    k = within_counts(model, x + found.delta, clean, r=cert.r, n_samples=atk.n_check,
                      seed=cert.seed, index=index, stream=stream, threat=atk.threat,
                      max_rows=max_rows)
    return found, k.cpu().numpy()


@dataclass
class _Search:
    """One chunk's search, per input: the bracket ``[lo, hi]``, ``k`` (the check's count at
    ``hi``, -1 while none), the perturbation ``found`` at ``hi`` (zero where none or at
    radius 0), rounds run, decoder rows, whether an attack moved, and which are done."""

    lo: np.ndarray
    hi: np.ndarray
    k: np.ndarray
    found: torch.Tensor
    rounds: np.ndarray
    rows: np.ndarray
    moved: np.ndarray
    done: np.ndarray


def _search(model: nn.Module, x: torch.Tensor, index: torch.Tensor, radius: np.ndarray, *,
            cert: CertifyConfig, atk: AttackConfig, max_radius: float, max_rows: int,
            bar: Progress) -> tuple[_Search, np.ndarray]:
    """Outward search then bisection for one chunk, all its inputs in lockstep.

    Returns the search and ``k_verify`` (-1 where no attack succeeded).
    """
    n = x.shape[0]
    box = projection.data_box(model)
    clean = Encoded.of(model, x)
    check = {"r": cert.r, "n_samples": atk.n_check, "seed": cert.seed, "threat": atk.threat,
             "max_rows": max_rows}
    # Radius 0: an input that is not r-robust unperturbed has margin 0.
    k0 = within_counts(model, x, clean, index=index, stream=noise.STREAM_CHECK,
                       **check).cpu().numpy()
    broken = k0 / atk.n_check <= cert.m
    s = _Search(np.zeros(n), np.where(broken, 0.0, np.inf), np.where(broken, k0, -1),
                torch.zeros_like(x), np.zeros(n, dtype=np.int64),
                np.full(n, atk.n_check, dtype=np.int64), np.zeros(n, dtype=bool), broken.copy())
    bar.update(int(broken.sum()))
    tolerance = atk.resolution
    while not s.done.all():
        act = np.flatnonzero(~s.done)
        sel = torch.as_tensor(act, device=x.device)
        # Inputs leave the lockstep for good once done, so every active input has run
        # exactly rounds[act] attacks: the check stream is a function of the input's own
        # history, never of its chunk. Each round checks on fresh draws.
        found, k = attempt(model, x[sel], clean.select(sel), index[sel], radius[act],
                           cert=cert, atk=atk, starts=s.found[sel],
                           stream=noise.STREAM_CHECK + 1 + int(s.rounds[act[0]]),
                           max_rows=max_rows, box=box)
        s.rows[act] += found.rows + atk.n_check
        s.rounds[act] += 1
        s.moved[act] |= found.moved
        success = k / atk.n_check <= cert.m
        won, lost = act[success], act[~success]
        s.hi[won], s.k[won] = radius[won], k[success]
        s.found[torch.as_tensor(won, device=x.device)] = found.delta[
            torch.as_tensor(np.flatnonzero(success), device=x.device)]
        s.lo[lost] = radius[lost]
        exhausted = lost[radius[lost] >= max_radius]
        s.done[exhausted] = True
        bracketed = np.isfinite(s.hi)
        width = tolerance if tolerance is not None else 0.02 * s.hi
        finished = bracketed & ~s.done & (s.hi - s.lo <= width)
        s.done |= finished
        bar.update(int(finished.sum() + exhausted.size))
        radius = np.where(bracketed, (s.lo + s.hi) / 2, np.minimum(2 * radius, max_radius))
    return s, _verify(model, x, clean, index, s, check)


def _verify(model: nn.Module, x: torch.Tensor, clean: Encoded, index: torch.Tensor,
            s: _Search, check: dict[str, Any]) -> np.ndarray:
    """``k`` at each input's final perturbation on ``STREAM_VERIFY``: draws that took no part
    in choosing it (SPEC section 6). -1 where no attack succeeded."""
    hit = np.isfinite(s.hi)
    k = np.full(x.shape[0], -1, dtype=np.int64)
    if hit.any():
        sel = torch.as_tensor(np.flatnonzero(hit), device=x.device)
        k[hit] = within_counts(model, x[sel] + s.found[sel], clean.select(sel),
                               index=index[sel], stream=noise.STREAM_VERIFY,
                               **check).cpu().numpy()
        s.rows[hit] += check["n_samples"]
    return k


def _first_radii(start: np.ndarray | float | None, max_radius: float,
                 n_inputs: int) -> np.ndarray:
    first = np.asarray(max_radius * _FIRST_SHARE if start is None else start, dtype=np.float64)
    if first.ndim > 1 or first.size not in (1, n_inputs):
        raise RcertError(f"start must be one radius or one per input ({n_inputs}), "
                         f"got shape {first.shape}")
    first = np.broadcast_to(first, (n_inputs,)).copy()
    if not np.all(np.isfinite(first) & (first > 0)):
        raise RcertError("start radii must be positive and finite; pass e.g. "
                         "start=0.1 or leave it out")
    return np.minimum(first, max_radius)


def _frame(index: torch.Tensor, s: _Search, k_verify: np.ndarray, cert: CertifyConfig,
           n_check: int) -> pd.DataFrame:
    hit = np.isfinite(s.hi)
    k = np.where(hit, s.k, 0)
    kv = np.where(hit, k_verify, 0)
    return pd.DataFrame({
        "index": index.cpu().numpy(),
        "margin_empirical": s.hi,
        "margin_bracket_lo": s.lo,
        "margin_bracket_hi": s.hi,
        "k_check": np.where(hit, k, -1),
        "n_check": np.full(len(hit), n_check, dtype=np.int64),
        "p_check": np.where(hit, k / n_check, np.nan),
        "p_check_upper": np.where(
            hit, binomial.clopper_pearson_upper(k, n_check, cert.alpha), np.nan),
        "k_verify": np.where(hit, kv, -1),
        "p_verify": np.where(hit, kv / n_check, np.nan),
        "p_verify_upper": np.where(
            hit, binomial.clopper_pearson_upper(kv, n_check, cert.alpha), np.nan),
        "p_value": np.where(hit, p_value(kv, n_check, cert.m), np.nan),
        "rounds": s.rounds,
        "decoder_rows": s.rows,
    })


def _concat(parts: list[tuple[_Search, np.ndarray]]) -> tuple[_Search, np.ndarray]:
    searches = [p[0] for p in parts]
    fields = ("lo", "hi", "k", "rounds", "rows", "moved", "done")
    merged = {f: np.concatenate([getattr(s, f) for s in searches]) for f in fields}
    found = torch.cat([s.found for s in searches])
    return _Search(found=found, **merged), np.concatenate([p[1] for p in parts])


@validate.borrows_model
def empirical_margin(
    model: nn.Module, x: torch.Tensor | np.ndarray, certify: CertifyConfig | None = None,
    attack: AttackConfig | None = None, *, r: float | None = None, m: float | None = None,
    alpha: float | None = None, seed: int | None = None,
    threat: str | ThreatModel | None = None, preset: str | None = None,
    optimizer: str | None = None, restarts: int | None = None, steps: int | None = None,
    n_noise: int | None = None, n_check: int | None = None, resolution: float | None = None,
    start: np.ndarray | float | None = None, max_radius: float | None = None,
    index: np.ndarray | None = None, run: RunConfig | None = None,
    device: str | torch.device | None = None, memory_mb: float | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Smallest radius at which an attack breaks r-robustness, by bisection (SPEC section 6).

    Per input: an outward search from ``start`` (doubling until an attack succeeds or
    ``max_radius`` fails), then a bisection of the bracket ``[lo, hi]`` (an attack failed
    at ``lo`` and succeeded at ``hi``) down to ``attack.resolution``. At each radius the
    attack maximises a smooth surrogate of ``P(||Delta|| > r)`` over ``n_noise`` common
    draws, warm-started from the last success; success is judged on ``n_check`` fresh
    draws: ``k/n_check <= m``. The final perturbation (zero for inputs broken at radius 0)
    is then re-checked on ``n_check`` draws of a dedicated stream.

    Parameters
    ----------
    certify
        ``r`` (required, here or as ``r=``), ``m``, ``alpha`` and ``seed``; its
        ``n_samples`` plays no part. Shortcuts ``r, m, alpha, seed`` override it.
    attack
        The attack at each radius (default :data:`rcert.settings.EMPIRICAL_ATTACK`);
        shortcuts ``threat, preset, optimizer, restarts, steps, n_noise, n_check,
        resolution`` override it.
    start
        First radius per input (default ``max_radius / 64``); about twice the certified
        bound is a good start.
    max_radius
        Largest radius searched (default: the data box's diagonal, else 1000).
    index, run, device, memory_mb, progress
        As in :func:`rcert.certify`; inputs run in chunks that fit ``memory_mb``.

    Returns
    -------
    pandas.DataFrame
        ``index, margin_empirical`` (the bracket's upper end: ``inf`` when no attack
        succeeded up to ``max_radius``, 0 when not r-robust unperturbed),
        ``margin_bracket_lo, margin_bracket_hi, k_check, n_check, p_check, p_check_upper``
        (the search's check at ``hi``), ``k_verify, p_verify, p_verify_upper`` (the fresh
        re-check; Clopper-Pearson upper at ``alpha``), ``p_value`` (``binom.cdf(k_verify,
        n_check, m)``; NaN where no attack succeeded), ``rounds`` and ``decoder_rows``.
    """
    if r is None and certify is None:
        raise RcertError("the empirical margin needs r: pass r=... or "
                         "certify=CertifyConfig(r=...)")
    cert = settings.merge(CertifyConfig, certify, r=r, m=m, alpha=alpha, seed=seed)
    atk = settings.merge(AttackConfig, settings.EMPIRICAL_ATTACK if attack is None else attack,
                         threat=threat, preset=preset, optimizer=optimizer, restarts=restarts,
                         steps=steps, n_noise=n_noise, n_check=n_check, resolution=resolution)
    run = settings.merge(RunConfig, run, device=device, memory_mb=memory_mb, progress=progress)
    return perturbations(model, x, cert, atk, start=start, max_radius=max_radius, index=index,
                         run=run)[0]


@validate.borrows_model
def perturbations(model: nn.Module, x: torch.Tensor | np.ndarray, cert: CertifyConfig,
                  atk: AttackConfig, *, start: np.ndarray | float | None = None,
                  max_radius: float | None = None, index: np.ndarray | None = None,
                  run: RunConfig | None = None) -> tuple[pd.DataFrame, torch.Tensor]:
    """:func:`empirical_margin`'s rows and, per input, the perturbation ``d`` it found at
    ``margin_empirical`` (zero where no attack succeeded or at radius 0), ``(N, ...)``.

    Rows depend only on their input's index, so rerunning a few inputs with the same
    settings and starts finds the same perturbations (to float rounding), e.g. to picture
    them in a report.
    """
    run = run or RunConfig()
    montecarlo.check_sample_budget(atk.n_check, run.memory_mb, "n_check")
    model, x, index, _ = prepare_checked(model, x, index=index, seed=cert.seed, run=run)
    box = projection.data_box(model)
    n_inputs, size = x.shape[0], x[0].numel()
    if max_radius is None:
        max_radius = math.sqrt(size) * (box[1] - box[0]) if box is not None else 1e3
    max_radius = settings.positive_float(max_radius, "max_radius")
    first = _first_radii(start, max_radius, n_inputs)
    max_rows, per = chunk_sizes(run, x, atk)
    bar = Progress(n_inputs, "empirical margin", enabled=run.progress)
    parts = [_search(model, x[part], index[part], first[part], cert=cert, atk=atk,
                     max_radius=max_radius, max_rows=max_rows, bar=bar)
             for part in chunking.chunks(n_inputs, per)]
    bar.close()
    s, k_verify = _concat(parts)
    optimizers.warn_unmoved(s.moved, s.rounds > 0)
    out = _frame(index, s, k_verify, cert, atk.n_check)
    out.attrs["config"] = record(cert, atk)
    return out, s.found.view_as(x)
