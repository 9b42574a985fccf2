"""Per-input certificates: the Theorem 1 margin and its relatives (SPEC sections 3-5).

:func:`certify` runs, chunk by chunk of inputs, one encoder pass with its exact Jacobian
(:mod:`rcert.engine.jacobian`), the Monte Carlo over encoder noise
(:mod:`rcert.engine.montecarlo`), and turns both into margins
(:mod:`rcert.statistics.margins`). One row per input comes out, with the columns of the
certificates that cover the model (:mod:`rcert.engine.certificates`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.engine import montecarlo
from rcert.engine.certificates import columns_for
from rcert.engine.jacobian import encoder_jacobian, jacobian_norms
from rcert.engine.model_checks import prepare_checked
from rcert.models import contract
from rcert.models.contract import traits
from rcert.progress import Progress
from rcert.settings import CertifyConfig, RunConfig, as_dict, merge
from rcert.statistics import binomial, margins

# Floats held per Jacobian entry during the vmapped VJPs (the Jacobian, the batched
# cotangents' backward activations); turns a budget into a chunk size.
_FLOATS_PER_JACOBIAN_ENTRY = 8


def _inputs_per_chunk(memory_mb: float, d_z: int, input_size: int, n_samples: int) -> int:
    """Inputs whose Jacobians and distance samples fit beside the decoder batch in the budget.

    The decoder takes half of ``memory_mb`` (:func:`_decoder_rows`), or its floor of
    ``MIN_ROWS`` rows if that is more; the rest holds, per input, the Jacobian's VJP
    working set and the ``(B, n_samples)`` float32 distances with one same-sized temporary
    (the ``<= r`` mask, or the copy ``kthvalue`` selects in). Only per-input scalars
    outlive a chunk (SPEC section 3 needs two order statistics of the sample, not the
    sample), so peak memory does not grow with the number of inputs. When one input's row
    alone does not fit beside the decoder's floor, the chunk stays at 1 input: that row is
    the floor. Its draws alone must fit in ``memory_mb``, which :func:`certify` checks
    before any work (:func:`rcert.engine.montecarlo.check_sample_budget`).
    """
    budget = memory_mb * 2**20
    decoder = max(budget / 2, montecarlo.MIN_ROWS * montecarlo.row_bytes(input_size))
    per_input = 4 * (_FLOATS_PER_JACOBIAN_ENTRY * d_z * input_size + 2 * n_samples)
    return max(1, int((budget - decoder) // per_input))


def _decoder_rows(memory_mb: float, output_size: int, device: torch.device) -> int:
    """Latent codes per decoder call: the half of the budget :func:`_inputs_per_chunk` leaves."""
    return montecarlo.rows_for_budget(memory_mb / 2, output_size, device)


@validate.borrows_model
def certify(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    config: CertifyConfig | None = None,
    *,
    r: float | None = None,
    m: float | None = None,
    n_samples: int | None = None,
    alpha: float | None = None,
    seed: int | None = None,
    index: np.ndarray | torch.Tensor | None = None,
    run: RunConfig | None = None,
    device: str | torch.device | None = None,
    memory_mb: float | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Certify each input: Theorem 1 [C Eq 4], its tighter relatives and the latent margin.

    Parameters
    ----------
    model
        A module with ``encode(x) -> (mu, sigma)`` (``sigma`` a standard deviation) and
        ``decode(z) -> g(z)`` (the model contract, :mod:`rcert.models.contract`). It runs in
        ``eval()`` mode and comes back in its own modes, on its own device. Optional
        attributes ``input_shape`` and ``data_range`` are checked against ``x``; the model
        checks (:mod:`rcert.engine.model_checks`) must pass, or be allowed by ``run.allow``.
    x
        ``(N, ...)`` inputs.
    config
        The certificate's parameters (:class:`rcert.settings.CertifyConfig`): ``r``, ``m``,
        ``n_samples``, ``alpha``, ``seed``. The keyword shortcuts of the same names
        override its fields; ``r`` must come from one of them.
    index
        Stable ids of the inputs (default ``0 .. N-1``), e.g. positions in a dataset. The
        draws of an input depend only on ``seed`` and its id, so any subset of inputs
        reproduces its rows (counts exactly, other columns up to float rounding).
    run, device, memory_mb, progress
        Where and how to run (:class:`rcert.settings.RunConfig`): the device (default: the
        model's), the memory budget of a chunk of work, progress on stderr.

    Returns
    -------
    pandas.DataFrame
        One row per input; the columns of the certificates that cover the model
        (:mod:`rcert.engine.certificates`, docs/api.md). What each guarantees:

        * ``jacobian_fro``, ``jacobian_spec``, ``jacobian_whitened``, ``sigma_min``,
          ``sigma_mean``: exact;
        * ``p_lower`` and ``r_min_upper``: hold with probability >= 1 - alpha over the
          Monte Carlo; ``p_hat``, ``r_min``: point estimates;
        * ``bound``: Theorem 1 with ``p_hat``, the paper's number, first order only;
        * ``bound_certified``, ``bound_spectral``, ``bound_whitened``: probability
          >= 1 - alpha, up to the theorem's first-order O(eps) term;
        * ``latent_margin``: exact (no linearisation), probability >= 1 - alpha.

        ``df.attrs["config"]`` records the certificate's settings.
    """
    config = merge(CertifyConfig, config, r=r, m=m, n_samples=n_samples, alpha=alpha,
                   seed=seed)
    run = merge(RunConfig, run, device=device, memory_mb=memory_mb, progress=progress)
    montecarlo.check_sample_budget(config.n_samples, run.memory_mb)
    model, x, index_t, p = prepare_checked(model, x, index=index, seed=config.seed, run=run)
    model_traits = traits(model)
    columns = _certify_chunks(model, x, index_t, config, run, model_traits.stochastic,
                              p.latent_dim)
    if "k" in columns:  # the Monte Carlo ran: the statistics and margins follow from it
        columns.update(_margins(columns, m=config.m, n_samples=config.n_samples,
                                alpha=config.alpha))
    df = pd.DataFrame({col: columns[col] for col in columns_for(model_traits)})
    df.attrs["config"] = as_dict(config)
    return df


def _certify_chunks(model: nn.Module, x: torch.Tensor, index: torch.Tensor,
                    config: CertifyConfig, run: RunConfig, stochastic: bool, d_z: int
                    ) -> dict[str, np.ndarray]:
    """:func:`_certify_chunk` over chunks of inputs sized to ``run.memory_mb``, joined."""
    chunk = _inputs_per_chunk(run.memory_mb, d_z, x[0].numel(), config.n_samples)
    n = config.n_samples
    ranks = (binomial.quantile_rank(n, config.m),
             binomial.certified_rank(n, config.m, config.alpha))
    parts: list[dict[str, np.ndarray]] = []
    with Progress(x.shape[0] * n, "certify", enabled=run.progress) as bar:
        for start in range(0, x.shape[0], chunk):
            rows = slice(start, start + chunk)
            parts.append(_certify_chunk(model, x[rows], index[rows], r=config.r,
                                        n_samples=n, seed=config.seed, ranks=ranks,
                                        memory_mb=run.memory_mb, stochastic=stochastic,
                                        on_rows=bar.update))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _certify_chunk(model: nn.Module, x: torch.Tensor, index: torch.Tensor, *, r: float,
                   n_samples: int, seed: int, ranks: tuple[int, int | None], memory_mb: float,
                   stochastic: bool, on_rows: Callable[[int], None]) -> dict[str, np.ndarray]:
    """Per-input statistics of one chunk of inputs, each a ``(B,)`` array (SPEC section 3).

    ``ranks`` are the 1-based ranks of ``r_min`` and ``r_min_upper``
    (:func:`rcert.statistics.binomial.quantile_rank`, ``certified_rank``; None gives inf).
    The ``(B, n_samples)`` distances are reduced to ``k`` and those two order statistics
    here, on the chunk's device, so no chunk's sample survives into the next. A
    deterministic encoder (``stochastic`` False) gets its exact Jacobian norms only: its
    sigma is no standard deviation to whiten by or sample with (SPEC section 9).
    """
    enc = encoder_jacobian(model, x)
    out: dict[str, np.ndarray] = {"index": index.cpu().numpy()}
    if not stochastic:
        validate.check_finite(enc.jacobian, index, "the encoder's Jacobian")
        norms = jacobian_norms(enc.jacobian, torch.ones_like(enc.mu))
        on_rows(x.shape[0] * n_samples)
        return {**out, **{key: norms[key].cpu().numpy()
                          for key in ("jacobian_fro", "jacobian_spec")}}
    validate.check_finite(enc.mu, index, "the encoder's mean")
    validate.check_finite(enc.jacobian, index, "the encoder's Jacobian")
    validate.check_sigma(enc.sigma, index)
    norms = jacobian_norms(enc.jacobian, enc.sigma)
    mu, sigma = enc.mu, enc.sigma
    # The Jacobian is spent; freeing it leaves the budget's room to the decoder batches.
    del enc
    with torch.no_grad():
        context = contract.context(model, x)
    dist = montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=n_samples,
                                       seed=seed,
                                       max_rows=_decoder_rows(memory_mb, x[0].numel(),
                                                              x.device),
                                       context=context, on_rows=on_rows)
    out.update({key: value.cpu().numpy() for key, value in norms.items()})
    out.update(
        sigma_min=sigma.min(dim=1).values.double().cpu().numpy(),
        sigma_mean=sigma.mean(dim=1).double().cpu().numpy(),
        k=(dist <= r).sum(dim=1).cpu().numpy(),
        r_min=_order_statistic(dist, ranks[0]),
        r_min_upper=_order_statistic(dist, ranks[1]),
    )
    return out


def _order_statistic(dist: torch.Tensor, rank: int | None) -> np.ndarray:
    """The ``rank``-th smallest distance (1-based) per row of ``dist``; ``inf`` if rank is None.

    ``kthvalue`` selects in O(n) per row without sorting and returns the same element as
    ``sort()[rank - 1]`` (NaNs rank last in both), so the value is bit-identical.
    """
    if rank is None:
        return np.full(dist.shape[0], np.inf)
    return torch.kthvalue(dist, rank, dim=1).values.double().cpu().numpy()


def _margins(c: dict[str, np.ndarray], *, m: float, n_samples: int,
             alpha: float) -> dict[str, np.ndarray]:
    """The public columns that follow from the Monte Carlo counts (SPEC sections 3-5)."""
    n = n_samples
    p_hat = c["k"] / n
    p_lower = binomial.clopper_pearson_lower(c["k"], n, alpha)
    t_hat = margins.probit_gap(margins.capped_p_hat(p_hat, n), m)
    t_lower = margins.probit_gap(p_lower, m)
    s_min = c["sigma_min"]
    return {
        "k": c["k"].astype(np.int64),
        "n": np.full(len(p_hat), n, dtype=np.int64),
        "p_hat": p_hat,
        "p_lower": p_lower,
        "bound": margins.theorem1(s_min, t_hat, c["jacobian_fro"]),
        "bound_certified": margins.theorem1(s_min, t_lower, c["jacobian_fro"]),
        "bound_spectral": margins.spectral(s_min, t_lower, c["jacobian_spec"]),
        "bound_whitened": margins.whitened(t_lower, c["jacobian_whitened"]),
        "latent_margin": margins.latent_margin(s_min, t_lower),
        "abstain": p_lower <= m,
    }
