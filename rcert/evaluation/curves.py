"""Fixed-direction robustness curves ``p(rho)`` [C Fig 5, 7] (SPEC section 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import settings, validate
from rcert.attacks import chunking, objectives, optimizers, projection
from rcert.attacks.objectives import Encoded
from rcert.engine import montecarlo, noise
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.evaluation.empirical import chunk_sizes, within_counts
from rcert.models import contract
from rcert.progress import Progress
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, ThreatModel
from rcert.statistics import binomial


def _counts(model: nn.Module, x: torch.Tensor, index: torch.Tensor, radii: np.ndarray,
            direction: str | torch.Tensor, cert: CertifyConfig,
            threat: ThreatModel, max_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk: ``k`` and the actual perturbation norms, ``(B, len(radii))`` each, and
    whether the max-damage direction's attack moved (True for other directions)."""
    box = projection.data_box(model)
    u, moved = _directions(model, x, direction, radii.max(), threat, cert.seed, index, box)
    clean = Encoded.of(model, x)
    k = np.empty((x.shape[0], radii.size), dtype=np.int64)
    norms = np.empty((x.shape[0], radii.size))
    for j, rho in enumerate(radii):
        x_adv = x + float(rho) * u.view_as(x)
        if box is not None:
            x_adv = x_adv.clamp(*box)
        # Every radius reuses the same draws (STREAM_CURVE): common random numbers.
        k[:, j] = within_counts(model, x_adv, clean, r=cert.r, n_samples=cert.n_samples,
                                seed=cert.seed, index=index, stream=noise.STREAM_CURVE,
                                threat=threat, max_rows=max_rows).cpu().numpy()
        norms[:, j] = (x_adv - x).flatten(1).norm(dim=1).double().cpu().numpy()
    return k, norms, moved


@validate.borrows_model
def curve(
    model: nn.Module, x: torch.Tensor | np.ndarray, certify: CertifyConfig | None = None, *,
    radii: list[float] | np.ndarray, direction: str | torch.Tensor | np.ndarray = "random",
    threat: str | ThreatModel | None = None, r: float | None = None, m: float | None = None,
    n_samples: int | None = None, alpha: float | None = None, seed: int | None = None,
    index: np.ndarray | None = None, run: RunConfig | None = None,
    device: str | torch.device | None = None, memory_mb: float | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """``p(rho) = P(||Delta(x, rho u)|| <= r)`` along one direction ``u`` per input [C Fig 5, 7].

    Where the curve crosses ``m`` is that direction's margin (SPEC section 6). The same
    ``n_samples`` draws (default: :class:`~rcert.settings.CertifyConfig`'s) serve every
    radius (common random numbers), so curves are smooth and comparable across radii.
    ``x + rho u`` is clipped to the data box, so the actual perturbation norm
    (``delta_norm``) can fall short of ``rho`` near the box's faces.

    Parameters
    ----------
    certify
        ``r`` (required, here or as ``r=``), ``m``, ``n_samples``, ``alpha``, ``seed``; the
        shortcuts override it.
    radii
        Perturbation sizes ``rho``.
    direction
        ``"random"`` (a seeded Gaussian direction per input), ``"max-damage"`` (the
        maximum-damage attack's direction [C Eq 5] at the largest radius, with
        :data:`rcert.settings.DAMAGE_ATTACK` on ``threat``), or an array of
        directions, one per input or one for all.
    threat
        What the perturbation reaches (default: :class:`~rcert.settings.ThreatModel`'s).
    index, run, device, memory_mb, progress
        As in :func:`rcert.certify`; inputs run in chunks that fit ``memory_mb``.

    Returns
    -------
    pandas.DataFrame
        One row per radius and input: ``index, rho, delta_norm, k, n, p_hat, p_lower,
        p_upper, certified, broken``. ``certified``: ``p_lower > m``, r-robust at this
        radius with probability >= 1 - alpha; ``broken``: ``p_upper <= m``, not r-robust,
        with the same confidence; neither: undecided at this ``n_samples``.
    """
    if r is None and certify is None:
        raise RcertError("a curve needs r: pass r=... or certify=CertifyConfig(r=...)")
    cert = settings.merge(CertifyConfig, certify, r=r, m=m, n_samples=n_samples, alpha=alpha,
                          seed=seed)
    threat = ThreatModel() if threat is None else ThreatModel.of(threat)
    run = settings.merge(RunConfig, run, device=device, memory_mb=memory_mb, progress=progress)
    montecarlo.check_sample_budget(cert.n_samples, run.memory_mb)
    radii = _radii(radii)
    if isinstance(direction, str):
        settings.choice(direction, "direction", DIRECTIONS)
    contract.require_sigma(model, "a robustness curve P(||Delta(x, rho u)|| <= r)",
                           "use rcert attack --kind damage for its damage against the budget")
    model, x, index, _ = prepare_checked(model, x, index=index, seed=cert.seed, run=run)
    # Chunks sized for what a max-damage direction's attack holds per input.
    max_rows, per = chunk_sizes(run, x, settings.DAMAGE_ATTACK)
    given = None if isinstance(direction, str) else _given_directions(direction, x)
    parts = []
    bar = Progress(x.shape[0], "curve", enabled=run.progress)
    for part in chunking.chunks(x.shape[0], per):
        mine = direction if given is None else given[part]
        parts.append(_counts(model, x[part], index[part], radii, mine, cert, threat, max_rows))
        bar.update(part.stop - part.start)
    bar.close()
    k, norms, moved = (np.concatenate(column) for column in zip(*parts, strict=True))
    if isinstance(direction, str) and direction == "max-damage":
        optimizers.warn_unmoved(moved, np.ones(x.shape[0], dtype=bool))
    out = _frame(index.cpu().numpy(), radii, k, norms, cert)
    out.attrs["config"] = {"r": cert.r, "m": cert.m, "threat": str(threat),
                           "n_samples": cert.n_samples, "alpha": cert.alpha, "seed": cert.seed,
                           "direction": direction if isinstance(direction, str) else "given"}
    return out


#: The directions :func:`curve` draws itself.
DIRECTIONS = ("random", "max-damage")


def _radii(radii: list[float] | np.ndarray) -> np.ndarray:
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if radii.size == 0 or not np.all(np.isfinite(radii) & (radii >= 0)):
        raise RcertError("radii must be a non-empty list of finite numbers >= 0")
    return radii


def _frame(index: np.ndarray, radii: np.ndarray, k: np.ndarray, norms: np.ndarray,
           cert: CertifyConfig) -> pd.DataFrame:
    """The curve's rows, radius-major, from ``k`` and the norms, ``(N, len(radii))`` each."""
    k = k.T.reshape(-1)
    n = cert.n_samples
    p_lower = binomial.clopper_pearson_lower(k, n, cert.alpha)
    p_upper = binomial.clopper_pearson_upper(k, n, cert.alpha)
    return pd.DataFrame({
        "index": np.tile(index, radii.size), "rho": np.repeat(radii, index.size),
        "delta_norm": norms.T.reshape(-1), "k": k, "n": n, "p_hat": k / n,
        "p_lower": p_lower, "p_upper": p_upper,
        "certified": p_lower > cert.m, "broken": p_upper <= cert.m,
    })


def _given_directions(direction: torch.Tensor | np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Directions given by the caller, one per input ``(B, *shape)`` (one for all repeated)."""
    n_inputs, shape = x.shape[0], tuple(x.shape[1:])
    u = torch.as_tensor(np.asarray(direction) if not isinstance(direction, torch.Tensor)
                        else direction).to(x)
    if u.shape == shape:
        u = u.expand(n_inputs, *shape)
    if tuple(u.shape) != (n_inputs, *shape):
        raise RcertError(f"direction must have shape {shape} or "
                         f"{(n_inputs, *shape)}, got {tuple(u.shape)}")
    return u


def _directions(model: nn.Module, x: torch.Tensor, direction: str | torch.Tensor,
                largest: float, threat: ThreatModel, seed: int, index: torch.Tensor,
                box: tuple[float, float] | None) -> tuple[torch.Tensor, np.ndarray]:
    """Unit directions ``(B, D)`` for :func:`curve`, and per input whether the max-damage
    attack moved (True for the other kinds)."""
    n_inputs, shape = x.shape[0], tuple(x.shape[1:])
    moved = np.ones(n_inputs, dtype=bool)
    if isinstance(direction, str):
        u = optimizers.random_directions(seed, index, shape, 1, noise.STREAM_START).to(x)
        if direction == "max-damage":
            radius = torch.full((n_inputs,), max(float(largest), 1e-12), dtype=x.dtype,
                                device=x.device)
            config = settings.merge(AttackConfig, settings.DAMAGE_ATTACK, threat=threat)
            found = optimizers.maximise(model, x, radius, objectives.expected_damage, config,
                                        seed=seed, index=index, box=box, starts=u)
            u, moved = found.delta, found.moved
    else:
        u = direction
    u = u.flatten(1)
    norm = u.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise RcertError("a direction is zero; give non-zero directions")
    return u / norm, moved
