"""Per-input certificates: the Theorem 1 margin and its relatives (SPEC sections 3-5).

:func:`certify` runs, chunk by chunk of inputs, one encoder pass with its exact Jacobian
(:mod:`rcert.jacobian`), the Monte Carlo over encoder noise (:mod:`rcert.montecarlo`),
and turns both into margins (:mod:`rcert.bounds`). One row per input comes out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.engine import montecarlo
from rcert.engine.jacobian import encoder_jacobian, jacobian_norms
from rcert.errors import RcertError
from rcert.progress import Progress
from rcert.statistics import binomial, margins

#: Columns of :func:`certify`'s DataFrame, a public contract (docs/api.md).
COLUMNS = (
    "index", "sigma_min", "sigma_mean", "jacobian_fro", "jacobian_spec", "jacobian_whitened",
    "k", "n", "p_hat", "p_lower", "r_min", "r_min_upper",
    "bound", "bound_certified", "bound_spectral", "bound_whitened", "latent_margin", "abstain",
)

# Floats held per Jacobian entry during the vmapped VJPs (the Jacobian, the batched
# cotangents' backward activations); turns a budget into a chunk size.
_FLOATS_PER_JACOBIAN_ENTRY = 8


def _inputs_per_chunk(memory_mb: float, d_z: int, input_size: int, n_samples: int) -> int:
    """Inputs whose Jacobians and distance samples fit together in the memory budget."""
    budget = memory_mb * 2**20
    per_input = 4 * (_FLOATS_PER_JACOBIAN_ENTRY * d_z * input_size + 2 * n_samples)
    return max(1, int(budget // per_input))


def certify(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    *,
    r: float,
    m: float = 0.5,
    n_samples: int = 1000,
    alpha: float = 0.001,
    seed: int = 0,
    index: np.ndarray | torch.Tensor | None = None,
    device: str | torch.device | None = None,
    memory_mb: float = 256.0,
    progress: bool = False,
    empirical: bool = False,
    threat: str = "mean",
    attack: dict | None = None,
) -> pd.DataFrame:
    """Certify each input: Theorem 1 [C Eq 4] and its tighter relatives.

    Parameters
    ----------
    model
        Any module with ``encode(x) -> (mu, sigma)`` (``sigma`` a standard deviation) and
        ``decode(z) -> g(z)``. It is put in ``eval()`` mode. Optional attributes
        ``input_shape`` and ``data_range`` are checked against ``x``.
    x
        ``(N, ...)`` inputs.
    r
        Output radius of r-robustness [C Def 3.1].
    m
        Level of r-robustness, ``P(||Delta|| <= r) > m``; 1/2 in the paper.
    n_samples
        Encoder-noise draws per input for ``p0`` and ``r_min`` (SPEC section 3).
    alpha
        ``p_lower`` and ``r_min_upper`` hold with probability at least ``1 - alpha``.
    seed
        Seeds the noise. The draws of an input depend only on ``seed`` and its ``index``,
        so any subset of inputs reproduces its rows: counts exactly, other columns up to
        float rounding (batch shapes change how matrix products round).
    index
        Stable ids of the inputs (default ``0 .. N-1``), e.g. positions in a dataset.
    device
        Where to compute (default: the model's device). The model is moved there.
    memory_mb
        Memory budget for a chunk: Jacobians of a chunk of inputs, and decoder batches.
    progress
        Show progress on stderr.
    empirical
        Also attack every certificate (:func:`rcert.evaluation.empirical.empirical_margin`) and add
        ``margin_empirical``, its bracket, ``p_check``, ``p_check_upper``, ``violation``
        (the attack beat ``bound_certified`` beyond Monte Carlo error) and ``tightness``
        (``bound_certified / margin_empirical``; NaN where no attack succeeded).
    threat
        For ``empirical``: ``"mean"`` (the bound's threat model, default) or ``"both"``.
    attack
        For ``empirical``: further arguments of ``empirical_margin`` (``restarts``,
        ``steps``, ``optimizer``, ``n_noise``, ``n_check``, ``resolution``,
        ``max_radius``).

    Returns
    -------
    pandas.DataFrame
        One row per input with the columns in :data:`COLUMNS` (see docs/api.md):
        ``bound`` is Theorem 1 with ``p_hat`` (the paper's number), ``bound_certified``
        the same with ``p_lower``; ``bound_spectral``, ``bound_whitened`` and
        ``latent_margin`` use ``p_lower``. ``df.attrs["config"]`` records the parameters.
    """
    validate.check_options(r=r, m=m, alpha=alpha, n_samples=n_samples)
    validate.positive_float(memory_mb, "memory_mb")
    model, x, index_t = validate.prepare(model, x, index=index, seed=seed, device=device)
    n_inputs = x.shape[0]

    d_z = _latent_dim(model, x[:1])
    input_size = x[0].numel()
    chunk = _inputs_per_chunk(memory_mb, d_z, input_size, n_samples)
    parts: list[dict[str, np.ndarray]] = []
    with Progress(n_inputs * n_samples, "certify", enabled=progress) as bar:
        for start in range(0, n_inputs, chunk):
            rows = slice(start, start + chunk)
            parts.append(_certify_chunk(model, x[rows], index_t[rows], r=r,
                                        n_samples=n_samples, seed=seed, memory_mb=memory_mb,
                                        on_rows=bar.update))
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    df = _margins(columns, m=m, n_samples=n_samples, alpha=alpha)
    config = {"r": float(r), "m": float(m), "n_samples": int(n_samples),
              "alpha": float(alpha), "seed": int(seed)}
    if empirical:
        from rcert.evaluation.verdicts import _with_empirical
        df = _with_empirical(df, model, x, index_t, r=r, m=m, alpha=alpha, seed=seed,
                             threat=threat, memory_mb=memory_mb, progress=progress,
                             attack=attack or {})
        config["empirical"] = df.attrs.pop("empirical_config")
    df.attrs["config"] = config
    return df


def _latent_dim(model: nn.Module, x1: torch.Tensor) -> int:
    """Latent size from one encoder call, turning a model/data mismatch into an RcertError."""
    try:
        with torch.no_grad():
            mu, sigma = model.encode(x1)
    except (RuntimeError, ValueError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RcertError(f"the model cannot encode data of input shape "
                                  f"{tuple(x1.shape[1:])}: {first_line}") from exc
    if mu.ndim != 2 or mu.shape != sigma.shape:
        raise RcertError(f"encode(x) must return (mu, sigma) of shape (batch, d_z); got "
                                  f"{tuple(mu.shape)} and {tuple(sigma.shape)}")
    return int(mu.shape[1])


def _certify_chunk(model: nn.Module, x: torch.Tensor, index: torch.Tensor, *, r: float,
                   n_samples: int, seed: int, memory_mb: float,
                   on_rows: Callable[[int], None]) -> dict[str, np.ndarray]:
    """Encoder statistics and the sorted distance sample for one chunk of inputs."""
    enc = encoder_jacobian(model, x)
    validate.check_sigma(enc.sigma, index)
    norms = jacobian_norms(enc.jacobian, enc.sigma)
    max_rows = montecarlo.rows_for_budget(memory_mb, x[0].numel(), x.device)
    dist = montecarlo.distortion_norms(model, enc.mu, enc.sigma, index=index,
                                       n_samples=n_samples, seed=seed, max_rows=max_rows,
                                       on_rows=on_rows)
    out = {key: value.cpu().numpy() for key, value in norms.items()}
    out.update(
        index=index.cpu().numpy(),
        sigma_min=enc.sigma.min(dim=1).values.double().cpu().numpy(),
        sigma_mean=enc.sigma.mean(dim=1).double().cpu().numpy(),
        k=(dist <= r).sum(dim=1).cpu().numpy(),
        sorted_dist=dist.sort(dim=1).values.cpu().numpy(),
    )
    return out


def _order_statistic(sorted_dist: np.ndarray, rank: int | None) -> np.ndarray:
    """The ``rank``-th smallest distance (1-based) per input; ``inf`` when rank is None."""
    if rank is None:
        return np.full(sorted_dist.shape[0], np.inf)
    return sorted_dist[:, rank - 1].astype(np.float64)


def _margins(c: dict[str, np.ndarray], *, m: float, n_samples: int,
             alpha: float) -> pd.DataFrame:
    """Turn the per-input statistics into the public columns (SPEC sections 3-5)."""
    n = n_samples
    p_hat = c["k"] / n
    p_lower = binomial.clopper_pearson_lower(c["k"], n, alpha)
    t_hat = margins.probit_gap(margins.capped_p_hat(p_hat, n), m)
    t_lower = margins.probit_gap(p_lower, m)
    s_min = c["sigma_min"]
    return pd.DataFrame({
        "index": c["index"].astype(np.int64),
        "sigma_min": s_min,
        "sigma_mean": c["sigma_mean"],
        "jacobian_fro": c["jacobian_fro"],
        "jacobian_spec": c["jacobian_spec"],
        "jacobian_whitened": c["jacobian_whitened"],
        "k": c["k"].astype(np.int64),
        "n": np.full(len(p_hat), n, dtype=np.int64),
        "p_hat": p_hat,
        "p_lower": p_lower,
        "r_min": _order_statistic(c["sorted_dist"], binomial.quantile_rank(n, m)),
        "r_min_upper": _order_statistic(c["sorted_dist"], binomial.certified_rank(n, m, alpha)),
        "bound": margins.theorem1(s_min, t_hat, c["jacobian_fro"]),
        "bound_certified": margins.theorem1(s_min, t_lower, c["jacobian_fro"]),
        "bound_spectral": margins.spectral(s_min, t_lower, c["jacobian_spec"]),
        "bound_whitened": margins.whitened(t_lower, c["jacobian_whitened"]),
        "latent_margin": margins.latent_margin(s_min, t_lower),
        "abstain": p_lower <= m,
    }, columns=list(COLUMNS))
