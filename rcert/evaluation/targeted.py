"""The targeted attacks of Willetts et al. with the paper's per-attack metrics (spec section 4).

:func:`targeted_attack` runs the lambda sweep of :mod:`rcert.attacks.targeted` and adds, per
pair and lambda, at the converged distortion ``d*`` (``x* = x + d*``):

* ``neg_log_lik_target``: ``-log p(x_t | z*)`` with ``z* ~ q(z | x*)`` (every layer of a
  hierarchy), averaged over the objective's ``n_noise`` common draws; larger means a less
  successful attack (spec 4.2). Absent for a model without a likelihood;
* ``l2_input_target``: ``||x* - x_t||``, the adversarial input's distance to the target
  (App E's reading);
* ``l2_output_target``: ``||g(x*) - x_t||``, the adversarial reconstruction's (the main
  text's reading); both are given since the paper uses both (spec 8.12);
* ``l2_target_recon``: ``||x_t - g(x_t)||``, how well the target itself reconstructs.

``loss`` is the converged ``Delta`` (higher: more robust), ``attack_loss`` the divergence or
output term without the penalty, ``distortion`` is ``||d*||``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks.targeted import STREAM_TARGETED, Sweep, Targets, sweep
from rcert.engine import montecarlo, noise
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.models import contract
from rcert.progress import Progress
from rcert.settings import RunConfig, TargetedConfig, as_dict, merge

#: The per-row metrics, in column order.
METRICS = ("neg_log_lik_target", "l2_input_target", "l2_output_target", "l2_target_recon")


@validate.borrows_model
def targeted_attack(model: nn.Module, x: torch.Tensor | np.ndarray,
                    config: TargetedConfig | None = None, *, labels: np.ndarray | None = None,
                    index: np.ndarray | None = None,
                    targets: torch.Tensor | np.ndarray | None = None,
                    target_labels: np.ndarray | None = None, run: RunConfig | None = None,
                    **shortcuts: object) -> pd.DataFrame:
    """Attack input-target pairs of ``x`` under the lambda-sweep protocol (spec section 3).

    Parameters
    ----------
    model
        Any model of the contract; ``output-elbo`` and ``neg_log_lik_target`` need its
        likelihood (an rcert architecture).
    x
        ``(N, ...)`` inputs the pairs are drawn from.
    config
        :class:`rcert.settings.TargetedConfig`; keyword shortcuts (``kind=``, ``pairs=``,
        ...) override its fields.
    labels
        ``(N,)`` labels, needed for ``different_label`` targets.
    targets, target_labels
        Inputs to draw the targets from instead of ``x`` (e.g. another split), shaped like
        ``x``'s inputs, and their labels; the ``target`` column then holds their positions.
    index, run
        As in :func:`rcert.certify`: the inputs' stable ids, and where to run.

    Returns
    -------
    pandas.DataFrame
        One row per pair and lambda: ``pair, input, target, lambda, loss, attack_loss,
        distortion, status, iterations, evaluations, selected`` and :data:`METRICS`;
        ``attrs["config"]`` records the settings.
    """
    config = merge(TargetedConfig, config, **shortcuts)
    run = merge(RunConfig, run)
    model, x, index_t, _ = prepare_checked(model, x, index=index, seed=config.seed, run=run)
    pool = None
    if targets is not None:
        try:
            _, x_t, t_index = validate.prepare(model, targets, index=None, seed=config.seed,
                                               device=x.device)
        except RcertError as exc:
            raise RcertError(f"targets: {exc}") from None
        pool = Targets(x_t, target_labels, t_index)
    with Progress(1, f"targeted {config.kind} attack", enabled=run.progress) as bar:
        result = sweep(model, x, index_t, config, run.memory_mb, labels, pool)
        bar.update(1)
    df = pd.concat([result.table, metrics(model, x, result, config, run.memory_mb)], axis=1)
    df.insert(0, "kind", config.kind)
    df.attrs["config"] = as_dict(config)
    return df


@torch.no_grad()
def metrics(model: nn.Module, x: torch.Tensor, result: Sweep, config: TargetedConfig,
            memory_mb: float) -> pd.DataFrame:
    """The per-row metrics of the module docstring, one row per row of ``result.table``."""
    n_lambda = len(result.lambdas)
    inputs = torch.as_tensor(np.repeat(result.pairs.inputs, n_lambda), device=x.device)
    pairs = torch.arange(len(result.pairs.inputs), device=x.device).repeat_interleave(n_lambda)
    per = max(1, montecarlo.rows_for_budget(memory_mb, x[0].numel(), x.device)
              // config.n_noise)
    parts = [_chunk_metrics(model, x[inputs[s]] + result.delta[s], result.x_t[pairs[s]],
                            torch.as_tensor(np.array(result.table["pair"].to_numpy()[s]),
                                            device=x.device), config)
             for s in (slice(i, i + per) for i in range(0, len(inputs), per))]
    return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _chunk_metrics(model: nn.Module, x_adv: torch.Tensor, x_t: torch.Tensor,
                   pair: torch.Tensor, config: TargetedConfig) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if callable(getattr(model, "elbo_terms", None)):
        out["neg_log_lik_target"] = _neg_log_lik(model, x_adv, x_t, pair, config)
    out["l2_input_target"] = _norm(x_adv - x_t)
    out["l2_output_target"] = _norm(contract.reconstruct(model, x_adv) - x_t)
    out["l2_target_recon"] = _norm(contract.reconstruct(model, x_t) - x_t)
    return out


def _neg_log_lik(model: nn.Module, x_adv: torch.Tensor, x_t: torch.Tensor,
                 pair: torch.Tensor, config: TargetedConfig) -> np.ndarray:
    """``-log p(x_t | z*)``, ``z*`` ancestral from ``x_adv`` with the pair's common draws."""
    dims = contract.layer_dims(model, x_adv)
    draws = config.n_noise
    eta = noise.gaussian(config.seed, pair, draws, sum(dims), stream=STREAM_TARGETED,
                         dtype=x_adv.dtype).reshape(-1, sum(dims))
    terms = model.elbo_terms(x_adv.repeat_interleave(draws, 0), noise=list(eta.split(dims, 1)),
                             target=x_t.repeat_interleave(draws, 0))
    return (-terms.log_likelihood).reshape(-1, draws).mean(1).double().cpu().numpy()


def _norm(t: torch.Tensor) -> np.ndarray:
    return t.flatten(1).double().norm(dim=1).cpu().numpy()
