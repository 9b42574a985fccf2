"""Fixed-direction robustness curves ``p(rho)`` [C Fig 5, 7] (SPEC section 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks import objectives, optimizers, projection
from rcert.attacks.objectives import Encoded
from rcert.attacks.optimizers import AttackSettings
from rcert.engine import montecarlo, noise
from rcert.evaluation.empirical import within_counts
from rcert.statistics import binomial


def curve(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    *,
    r: float,
    radii: list[float] | np.ndarray,
    direction: str | torch.Tensor | np.ndarray = "random",
    m: float = 0.5,
    threat: str = "mean",
    n_samples: int = 500,
    alpha: float = 0.001,
    seed: int = 0,
    index: np.ndarray | None = None,
    device: str | torch.device | None = None,
    memory_mb: float = 256.0,
) -> pd.DataFrame:
    """``p(rho) = P(||Delta(x, rho u)|| <= r)`` along one direction ``u`` per input [C Fig 5, 7].

    Where the curve crosses ``m`` is that direction's margin (SPEC section 6). The same
    ``n_samples`` draws serve every radius (common random numbers), so curves are smooth
    and comparable across radii. ``x + rho u`` is clipped to the data box, so the actual
    perturbation norm (``delta_norm``) can fall short of ``rho`` near the box's faces.

    Parameters
    ----------
    radii
        Perturbation sizes ``rho``.
    direction
        ``"random"`` (a seeded Gaussian direction per input), ``"max-damage"`` (the
        direction of the maximum-damage attack [C Eq 5] at the largest radius, on
        ``threat``), or an array of directions, one per input or one for all.
    m, alpha
        The level the curve is read against, and the confidence of ``p_lower`` and
        ``p_upper``.
    model, x, r, threat, n_samples, seed, index, device, memory_mb
        As in :func:`empirical_margin`.

    Returns
    -------
    pandas.DataFrame
        One row per input and radius: ``index, rho, delta_norm, k, n, p_hat, p_lower,
        p_upper, robust`` (``p_hat > m``).
    """
    validate.check_options(r=r, m=m, alpha=alpha, n_samples=n_samples)
    validate.choice(threat, "threat", optimizers.THREATS)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if radii.size == 0 or not np.all(np.isfinite(radii) & (radii >= 0)):
        raise validate.RcertError("radii must be a non-empty list of finite numbers >= 0")
    model, x, index = validate.prepare(model, x, index=index, seed=seed, device=device)
    box = projection.data_box(model)
    shape = tuple(x.shape[1:])
    u = _directions(model, x, direction, radii.max(), threat, seed, index, box)
    clean = Encoded.of(model, x)
    max_rows = montecarlo.rows_for_budget(memory_mb, x[0].numel(), x.device)
    frames = []
    for rho in radii:
        x_adv = x + float(rho) * u.view(-1, *shape)
        if box is not None:
            x_adv = x_adv.clamp(*box)
        k = within_counts(model, x_adv, clean, r=r, n_samples=n_samples, seed=seed,
                          index=index, stream=noise.STREAM_CURVE, threat=threat,
                          max_rows=max_rows).cpu().numpy()
        frames.append(pd.DataFrame({
            "index": index.cpu().numpy(),
            "rho": float(rho),
            "delta_norm": (x_adv - x).flatten(1).norm(dim=1).double().cpu().numpy(),
            "k": k, "n": n_samples, "p_hat": k / n_samples,
            "p_lower": binomial.clopper_pearson_lower(k, n_samples, alpha),
            "p_upper": binomial.clopper_pearson_upper(k, n_samples, alpha),
            "robust": k / n_samples > m,
        }))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["config"] = {"r": float(r), "m": float(m), "threat": threat,
                           "n_samples": n_samples, "seed": seed,
                           "direction": direction if isinstance(direction, str) else "given"}
    return out


def _directions(model: nn.Module, x: torch.Tensor, direction: str | torch.Tensor | np.ndarray,
                largest: float, threat: str, seed: int, index: torch.Tensor,
                box: tuple[float, float] | None) -> torch.Tensor:
    """Unit directions ``(B, D)`` for :func:`curve`."""
    n_inputs, shape = x.shape[0], tuple(x.shape[1:])
    if isinstance(direction, str):
        validate.choice(direction, "direction", ("random", "max-damage"))
        u = optimizers.random_directions(seed, index, shape, 1, noise.STREAM_START).to(x)
        if direction == "max-damage":
            radius = torch.full((n_inputs,), max(float(largest), 1e-12), dtype=x.dtype,
                                device=x.device)
            u, _ = optimizers.maximise(model, x, radius, objectives.expected_damage,
                                    AttackSettings(threat=threat), seed=seed, index=index,
                                    box=box, starts=u)
    else:
        u = torch.as_tensor(np.asarray(direction) if not isinstance(direction, torch.Tensor)
                            else direction).to(x)
        if u.shape == shape:
            u = u.expand(n_inputs, *shape)
        if tuple(u.shape) != (n_inputs, *shape):
            raise validate.RcertError(f"direction must have shape {shape} or "
                                      f"{(n_inputs, *shape)}, got {tuple(u.shape)}")
    u = u.flatten(1)
    norm = u.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise validate.RcertError("a direction is zero; give non-zero directions")
    return u / norm
