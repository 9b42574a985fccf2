"""The exact latent certificate against the latent attack (SPEC section 5; Lu & Chen spec
sections 7.3 and 8, C9): how far no attack can go, and how far the first one does.

For a Gaussian encoder, every shift ``d_z`` of the latent mean (a receiver that adds the
encoder noise itself) with ``||d_z / sigma|| < t(p_lower)`` keeps
``P(||g(mu + d_z + eta sigma) - g(mu)|| <= r) > m``, with probability ``1 - alpha``; in raw
units every ``||d_z|| < latent_margin = s_min t(p_lower)`` does. :func:`latent_tightness`
checks both geometries per input:

* **inside**: the latent attack (:func:`rcert.attacks.latent.latent_attack`, the EOT
  surrogate of ``P(||Delta|| > r)`` over common draws) at each of ``inside`` times the
  certified radius; the probability is then counted on ``n_check`` fresh draws. A
  Clopper-Pearson upper bound (level ``1 - alpha``) at or below ``m`` is a **violation**:
  the certificate would be wrong, which is a bug;
* **beyond**: the same attack at each factor of ``beyond``; the smallest factor whose
  fresh-draw estimate is ``<= m`` gives the latent empirical margin, and its ratio to the
  certificate is the latent tightness (``inf`` when no factor breaks).

A deterministic encoder has no such certificate (SPEC section 9) and is refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks.latent import latent_attack
from rcert.attacks.objectives import Encoded
from rcert.engine import montecarlo
from rcert.engine.certify import certify
from rcert.engine.noise import STREAM_VERIFY
from rcert.errors import RcertError
from rcert.models import contract
from rcert.progress import Progress
from rcert.settings import EMPIRICAL_ATTACK, AttackConfig, CertifyConfig, RunConfig, as_dict, merge
from rcert.statistics import binomial, margins

#: Multiples of the certified radius attacked inside it (1 is its boundary).
INSIDE = (0.5, 1.0)
#: Multiples attacked beyond it, for the first break.
BEYOND = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
#: The two geometries: raw L2 of ``d_z`` against ``latent_margin``, and ``||d_z / sigma||``
#: against ``t(p_lower)``.
GEOMETRIES = ("l2", "whitened")


@validate.borrows_model
def latent_tightness(model: nn.Module, x: torch.Tensor | np.ndarray,
                     config: CertifyConfig, attack: AttackConfig | None = None, *,
                     inside: tuple[float, ...] = INSIDE, beyond: tuple[float, ...] = BEYOND,
                     index: np.ndarray | None = None, run: RunConfig | None = None
                     ) -> pd.DataFrame:
    """Certify each input, then attack its latent mean inside and beyond the certificate.

    Returns
    -------
    pandas.DataFrame
        One row per input: ``index, p_lower, t_lower, latent_margin`` and, per geometry
        ``g`` of :data:`GEOMETRIES`: ``g_p_inside`` (the smallest fresh-draw estimate of
        ``P(robust)`` inside), ``g_upper_inside`` (its Clopper-Pearson upper bound),
        ``g_violation``, ``g_empirical`` (the radius of the first break, in the geometry's
        units) and ``g_tightness`` (``g_empirical`` over the certified radius). Inputs
        whose certificate abstains get NaN attack columns. ``attrs["config"]`` records the
        settings.
    """
    attack = merge(AttackConfig, attack if attack is not None else EMPIRICAL_ATTACK)
    run = merge(RunConfig, run)
    contract.require_sigma(model, "the latent certificate", "use rcert latent-attack")
    if not contract.traits(model).perturbation_reaches_first_layer_only:
        raise RcertError("the latent certificate needs the input to reach only the first "
                         "layer (SPEC section 8); this hierarchical model feeds x to its upper "
                         "layers, so there is nothing to attack it against")
    cert = certify(model, x, config, index=index, run=run)
    model, x_t, index_t = validate.prepare(model, x, index=index, seed=config.seed,
                                           device=run.device)
    t_lower = margins.probit_gap(cert["p_lower"].to_numpy(), config.m)
    out = pd.DataFrame({"index": cert["index"], "p_lower": cert["p_lower"],
                        "t_lower": t_lower, "latent_margin": cert["latent_margin"]})
    keep = ~cert["abstain"].to_numpy(dtype=bool)
    factors = tuple(inside) + tuple(beyond)
    rows = torch.as_tensor(keep)
    with torch.no_grad():  # every input once per factor: the same id, the same draws
        clean = Encoded.of(model, x_t[rows]).repeat(len(factors)) if keep.any() else None
    with Progress(len(GEOMETRIES), "latent certificate attacks", enabled=run.progress) as bar:
        for geometry in GEOMETRIES:
            radius = out["latent_margin"] if geometry == "l2" else out["t_lower"]
            p = np.full((len(out), len(factors)), np.nan)
            if keep.any():
                p[keep] = _probabilities(model, x_t[rows], index_t[rows], clean,
                                         radius.to_numpy()[keep], factors, config, attack,
                                         geometry == "whitened", run)
            out = out.join(_verdicts(p, len(inside), factors, radius.to_numpy(), config,
                                     attack.n_check, geometry))
            bar.update(1)
    out.attrs["config"] = {**as_dict(config), "attack": as_dict(attack),
                           "inside": list(inside), "beyond": list(beyond)}
    return out


def _probabilities(model: nn.Module, x: torch.Tensor, index: torch.Tensor, clean: Encoded,
                   radius: np.ndarray, factors: tuple[float, ...], config: CertifyConfig,
                   attack: AttackConfig, whitened: bool, run: RunConfig) -> np.ndarray:
    """Fresh-draw estimates of ``P(robust)`` after the attack at each factor, ``(B, F)``:
    every input is repeated once per factor (same id, so the same common draws); ``clean``
    is the repeated inputs' encoding."""
    n_f = len(factors)
    xs = x.repeat_interleave(n_f, 0)
    ids = index.repeat_interleave(n_f, 0)
    radii = torch.as_tensor(np.outer(radius, factors).reshape(-1), dtype=x.dtype,
                            device=x.device)
    shift = latent_attack(model, xs, radii, r=config.r, config=attack, seed=config.seed,
                          index=ids, whitened=whitened, clean=clean)
    with torch.no_grad():
        dist = montecarlo.distortion_norms(
            model, clean.mu + shift, clean.sigma, index=ids, n_samples=attack.n_check,
            seed=config.seed, max_rows=montecarlo.rows_for_budget(run.memory_mb,
                                                                  x[0].numel(), x.device),
            stream=STREAM_VERIFY, reference=clean.reference, context=clean.context)
    k = (dist <= config.r).sum(dim=1).cpu().numpy()
    return (k / attack.n_check).reshape(-1, n_f)


def _verdicts(p: np.ndarray, n_inside: int, factors: tuple[float, ...], radius: np.ndarray,
              config: CertifyConfig, n_check: int, geometry: str) -> pd.DataFrame:
    """The per-input columns of one geometry from the probabilities at each factor."""
    inside = p[:, :n_inside]
    worst = inside.min(axis=1)
    k = np.rint(np.nan_to_num(worst) * n_check)
    upper = np.where(np.isnan(worst), np.nan,
                     binomial.clopper_pearson_upper(k, n_check, config.alpha))
    broken = p[:, n_inside:] <= config.m
    first = np.where(broken.any(axis=1), np.argmax(broken, axis=1), -1)
    beyond = np.asarray(factors[n_inside:], dtype=np.float64)
    factor = np.where(first >= 0, beyond[np.maximum(first, 0)], np.inf)
    factor = np.where(np.isnan(worst), np.nan, factor)
    return pd.DataFrame({f"{geometry}_p_inside": worst, f"{geometry}_upper_inside": upper,
                         f"{geometry}_violation": upper <= config.m,
                         f"{geometry}_empirical": factor * radius,
                         f"{geometry}_tightness": factor})
