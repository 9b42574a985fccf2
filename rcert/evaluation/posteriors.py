"""Per-input measures of a VAE's posterior that Willetts et al. relate to robustness (spec 4):
the overlap proxy ``||sigma(x)||_2`` (Fig 2), the ELBO without any penalty (Fig 6), and the
denoising likelihood ``log p(x | z)`` with ``z ~ q(z | x + a eps)`` (Fig F.12).

Everything is one row per input, seeded per input id (:mod:`rcert.engine.noise`), so a row
depends only on the seed and its input's id, and the noise levels ``a`` of a run share their
draws (common random numbers across levels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.engine import noise
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.models import contract
from rcert.settings import RunConfig, merge
from rcert.values import check_seed, nonnegative_float, positive_int

#: The paper's noise scales of the denoising likelihood (App F).
NOISE_LEVELS = (0.1, 0.5, 1.0)
#: Noise streams of the ELBO's sample, and of the corruption and posterior sample.
STREAM_ELBO = 8
STREAM_DENOISE = 9


@validate.borrows_model
def posterior_table(model: nn.Module, x: torch.Tensor | np.ndarray, *,
                    levels: Sequence[float] = NOISE_LEVELS, draws: int = 1, seed: int = 0,
                    index: np.ndarray | None = None, run: RunConfig | None = None
                    ) -> pd.DataFrame:
    """One row per input: ``index``, ``sigma_norm`` (``||sigma(x)||_2`` of the first layer),
    ``elbo`` (the true ELBO, no penalty, one-sample estimate averaged over ``draws``) and
    ``denoise_<a>`` for each level ``a``: ``log p(x | z)``, ``z ~ q(z | x + a eps)`` with
    ``eps ~ N(0, I)`` on the input (not clipped to the data range: the paper adds Gaussian
    noise), averaged over ``draws``.

    Needs the model's likelihood (``elbo_terms``: an rcert architecture).
    """
    if not callable(getattr(model, "elbo_terms", None)):
        raise RcertError("the posterior measures need the model's likelihood (an rcert "
                         "checkpoint)")
    levels = [nonnegative_float(a, "noise level") for a in levels]
    draws, seed = positive_int(draws, "draws"), check_seed(seed)
    run = merge(RunConfig, run)
    contract.require_sigma(model, "each posterior measure (sigma norm, ELBO, denoising "
                           "likelihood)", "use rcert latent-attack or rcert attack")
    model, x, index_t, _ = prepare_checked(model, x, index=index, seed=seed, run=run)
    per = max(1, int(run.memory_mb * 2**20 // (64 * x[0].numel() * draws)))
    parts = [_rows(model, x[s], index_t[s], levels, draws, seed)
             for s in (slice(i, i + per) for i in range(0, x.shape[0], per))]
    return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


@torch.no_grad()
def _rows(model: nn.Module, x: torch.Tensor, index: torch.Tensor, levels: list[float],
          draws: int, seed: int) -> dict[str, np.ndarray]:
    dims = contract.layer_dims(model, x)
    rep = x.repeat_interleave(draws, dim=0)
    out = {"index": index.cpu().numpy(),
           "sigma_norm": model.encode(x)[1].double().norm(dim=1).cpu().numpy()}
    eta = _draws(seed, index, draws, sum(dims), STREAM_ELBO, x.dtype)
    out["elbo"] = _mean(model.elbo_terms(rep, noise=list(eta.split(dims, 1))).elbo, draws)
    size = x[0].numel()
    both = _draws(seed, index, draws, size + sum(dims), STREAM_DENOISE, x.dtype)
    corruption = both[:, :size].reshape(rep.shape)
    latent = list(both[:, size:].split(dims, 1))
    for a in levels:
        terms = model.elbo_terms(rep + a * corruption, noise=latent, target=rep)
        out[f"denoise_{a:g}"] = _mean(terms.log_likelihood, draws)
    return out


def _draws(seed: int, index: torch.Tensor, draws: int, width: int, stream: int,
           dtype: torch.dtype) -> torch.Tensor:
    return noise.gaussian(seed, index, draws, width, stream=stream, dtype=dtype).reshape(
        -1, width)


def _mean(values: torch.Tensor, draws: int) -> np.ndarray:
    return values.reshape(-1, draws).double().mean(dim=1).cpu().numpy()
