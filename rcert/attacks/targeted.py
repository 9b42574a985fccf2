"""The targeted attacks of Willetts et al. under their lambda-sweep protocol (spec section 3).

For an input ``x``, a target ``x_t`` and a penalty weight ``lambda``, the attacker minimises

    Delta(d) = r(x + d, x_t) + lambda * ||d||        over  low - x <= d <= high - x

with ``r`` one of (:class:`rcert.settings.TargetedConfig` ``kind``):

* ``kl``, ``w2``: the KL divergence or 2-Wasserstein distance of ``q(z | x + d)`` from
  ``q(z | x_t)`` (E1), summed over the layers of a hierarchical VAE (E10; all, bottom or top
  layer, App D). Above the first layer the posteriors are the chain's conditional Gaussians,
  their parents at the chain of means or at fixed-noise samples (spec 3.4);
* ``output-elbo``: minus the ELBO of ``x_t`` under ``q(z | x + d)`` (E2 with its sign fixed:
  ``-E log p(x_t | z) + KL(q(z | x + d) || p(z))``, over every layer for a hierarchy);
* ``output-l2``: ``||g(x + d) - x_t||``, the reconstruction's distance to the target (the
  earlier version's output attack).

Every (pair, lambda) is its own bound-constrained problem, solved together by the batched
L-BFGS of :mod:`rcert.attacks.lbfgsb`, from ``d = 0``. Stochastic objectives use common
random numbers: ``n_noise`` draws per pair, fixed for the whole optimisation and shared by
all of the pair's lambdas, so the objective is deterministic (L-BFGS needs that). A row
depends only on the seed, its pair's number and its lambda, never on the other rows.

"Most successful" (spec 3.5, Fig 4): per pair, the row with the smallest ``attack_loss``
(``r`` without the penalty), ties to the smaller distortion; it is flagged ``selected``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert.attacks.divergences import divergence, lambda_grid, penalty
from rcert.attacks.lbfgsb import LbfgsbResult, minimize_box
from rcert.attacks.projection import data_box
from rcert.engine import montecarlo, noise
from rcert.errors import RcertError
from rcert.models import contract
from rcert.settings import TargetedConfig

#: Noise streams: the common random numbers of the objectives, and the pair draw.
STREAM_TARGETED = 6
STREAM_PAIRS = 7


@dataclass(frozen=True)
class Pairs:
    """Input-target pairs as positions in the attacked data."""

    inputs: np.ndarray
    targets: np.ndarray


def draw_pairs(n: int, count: int, seed: int, labels: np.ndarray | None = None,
               different_label: bool = False, *, n_targets: int | None = None,
               target_labels: np.ndarray | None = None) -> Pairs:
    """``count`` pairs: distinct inputs drawn without replacement from ``n``, each target
    uniform among the other inputs, or among ``n_targets`` separate targets (of another
    label with ``different_label``)."""
    separate = n_targets is not None
    if n < (1 if separate else 2) or (separate and n_targets < 1):
        raise RcertError(f"input-target pairs need at least 2 inputs, but the data has {n}"
                         + (f" and the targets {n_targets}" if separate else "")
                         + "; choose a split with data or raise --limit")
    if count > n:
        raise RcertError(f"{count} pairs need {count} distinct inputs, but the data has {n}; "
                         f"lower --pairs")
    t_labels = target_labels if separate else labels
    if different_label and (labels is None or t_labels is None):
        raise RcertError("different_label needs labelled inputs and targets; use data with "
                         "labels")
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_PAIRS]))
    inputs = rng.choice(n, size=count, replace=False)
    targets = np.empty(count, dtype=np.int64)
    for k, i in enumerate(inputs):  # a handful of pairs, not a hot path
        ok = np.ones(n_targets if separate else n, dtype=bool)
        if not separate:
            ok[i] = False
        if different_label:
            ok &= t_labels != labels[i]
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            raise RcertError(f"input {i} has no target of another label; the data hold one "
                             f"label only")
        targets[k] = rng.choice(candidates)
    return Pairs(inputs.astype(np.int64), targets)


def lambdas_of(config: TargetedConfig) -> np.ndarray:
    """The penalty weights: the explicit ones, else the geometric grid (spec 3.5)."""
    if config.lambda_values:
        return np.asarray(config.lambda_values, dtype=np.float64)
    return lambda_grid(config.lambdas, config.lambda_low, config.lambda_high)


class Objective:
    """``r(x + d, x_t)`` for the rows of a sweep, with the targets' side computed once."""

    def __init__(self, model: nn.Module, x: torch.Tensor, x_t: torch.Tensor,
                 config: TargetedConfig) -> None:
        self.model, self.x, self.x_t, self.config = model, x, x_t, config
        self.dims = contract.layer_dims(model, x)
        hierarchical = len(self.dims) > 1
        stochastic = config.kind == "output-elbo" or (
            config.kind in ("kl", "w2") and config.chain == "samples" and hierarchical)
        self.draws = config.n_noise if stochastic else 1
        if config.kind == "output-elbo" and not callable(getattr(model, "elbo_terms", None)):
            raise RcertError("the output-elbo attack needs the model's likelihood (an rcert "
                             "checkpoint); use --kind output-l2, kl or w2")
        pair = torch.arange(x.shape[0], device=x.device)
        self.eta = noise.gaussian(config.seed, pair, self.draws, sum(self.dims),
                                  stream=STREAM_TARGETED, dtype=x.dtype) if stochastic else None
        layers = range(len(self.dims))
        self.layers = {"all": list(layers), "bottom": [0], "top": [len(self.dims) - 1]}[
            config.layers]
        self.kind = {"kl": "kl", "w2": "w2_squared" if config.w2_squared else "w2"}.get(
            config.kind)
        with torch.no_grad():
            self.target = self._posteriors(x_t, pair) if self.kind else None

    def _noise(self, pair: torch.Tensor) -> list[torch.Tensor] | None:
        """Each layer's fixed draws for the rows of ``pair``, ``(rows * draws, d_i)``."""
        if self.eta is None:
            return None
        return list(self.eta[pair].reshape(-1, self.eta.shape[-1]).split(self.dims, dim=1))

    def _posteriors(self, x: torch.Tensor, pair: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        return contract.posteriors(self.model, x.repeat_interleave(self.draws, dim=0),
                                   self._noise(pair))

    def __call__(self, x_adv: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """``r`` per row of ``x_adv`` (the attacked inputs of the pairs ``pair``)."""
        if self.kind is not None:
            attacked = self._posteriors(x_adv, pair)
            rows = (pair[:, None] * self.draws + torch.arange(self.draws, device=pair.device)
                    ).reshape(-1)
            value = sum(divergence(self.kind, *attacked[i], self.target[i][0][rows],
                                   self.target[i][1][rows]) for i in self.layers)
        elif self.config.kind == "output-elbo":
            repeat = self.draws
            terms = self.model.elbo_terms(x_adv.repeat_interleave(repeat, dim=0),
                                          noise=self._noise(pair),
                                          target=self.x_t[pair].repeat_interleave(repeat, 0))
            value = -terms.elbo
        else:
            mu = self.model.encode(x_adv)[0]
            g = contract.decode(self.model, mu, contract.context(self.model, x_adv))
            value = (g.flatten(1) - self.x_t[pair].flatten(1)).norm(dim=1)
        return value.reshape(-1, self.draws).mean(dim=1)


@dataclass(frozen=True)
class Targets:
    """Where targets are drawn from: inputs ``x`` (prepared like the attacked data), their
    labels (or None) and their stable ids."""

    x: torch.Tensor
    labels: np.ndarray | None
    index: torch.Tensor


@dataclass(frozen=True)
class Sweep:
    """A sweep's result: ``table`` (one row per pair and lambda, pair-major), the converged
    distortions ``delta`` ``(rows, *input_shape)``, the pairs, the lambdas and the pairs'
    targets ``x_t`` ``(pairs, *input_shape)``."""

    table: pd.DataFrame
    delta: torch.Tensor
    pairs: Pairs
    lambdas: np.ndarray
    x_t: torch.Tensor


def sweep(model: nn.Module, x: torch.Tensor, index: torch.Tensor, config: TargetedConfig,
          memory_mb: float, labels: np.ndarray | None = None,
          targets: Targets | None = None) -> Sweep:
    """Run ``config``'s attack on its pairs of ``x`` for every lambda (module docstring).

    ``model`` and ``x`` are prepared (eval mode, checked, on one device); ``index`` holds
    the inputs' stable ids, reported in the table. ``targets`` (default: ``x`` itself) are
    where the targets are drawn from.
    """
    pool = targets or Targets(x, labels, index)
    pairs = draw_pairs(x.shape[0], config.pairs, config.seed, labels, config.different_label,
                       n_targets=None if targets is None else targets.x.shape[0],
                       target_labels=pool.labels)
    lambdas = lambdas_of(config)
    x_in, x_t = x[torch.as_tensor(pairs.inputs)], pool.x[torch.as_tensor(pairs.targets)]
    objective = Objective(model, x_in, x_t, config)
    n_lambda = len(lambdas)
    rows = len(pairs.inputs) * n_lambda
    pair_of = torch.arange(rows, device=x.device) // n_lambda
    lam = torch.as_tensor(np.tile(lambdas, len(pairs.inputs)), device=x.device)
    size = x[0].numel()
    per_call = max(1, montecarlo.rows_for_budget(memory_mb, size, x.device) // objective.draws)

    def fun(d: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_value_and_grad(objective, d[start:start + per_call], x_in,
                                 pair_of[which[start:start + per_call]],
                                 lam[which[start:start + per_call]], config)
                 for start in range(0, which.numel(), per_call)]
        return torch.cat([v for v, _ in parts]), torch.cat([g for _, g in parts])

    low, high = data_box(model) or (-np.inf, np.inf)
    base = x_in.flatten(1)[pair_of].double()
    result = minimize_box(fun, torch.zeros_like(base), low - base, high - base,
                          max_iter=config.max_iter)
    delta = result.x.to(x.dtype).reshape(rows, *x.shape[1:])
    with torch.no_grad():
        attack_loss = torch.cat([objective(x_in[pair_of[p]] + delta[p], pair_of[p])
                                 for p in torch.arange(rows, device=x.device).split(per_call)])
    table = _table(pairs, lambdas, (index, pool.index), result, attack_loss, delta)
    return Sweep(table, delta, pairs, lambdas, x_t)


def _value_and_grad(objective: Objective, d: torch.Tensor, x_in: torch.Tensor,
                    pair: torch.Tensor, lam: torch.Tensor, config: TargetedConfig
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``Delta`` and its gradient for a chunk of rows (flattened float64 ``d``)."""
    d = d.to(x_in.dtype).reshape(-1, *x_in.shape[1:]).requires_grad_(True)
    with torch.enable_grad():
        value = objective(x_in[pair] + d, pair) + lam.to(d.dtype) * penalty(config.penalty, d)
        (grad,) = torch.autograd.grad(value.sum(), d)
    return value.detach(), grad.flatten(1)


def _table(pairs: Pairs, lambdas: np.ndarray, index: tuple[torch.Tensor, torch.Tensor],
           result: LbfgsbResult, attack_loss: torch.Tensor, delta: torch.Tensor
           ) -> pd.DataFrame:
    ids, target_ids = (t.cpu().numpy() for t in index)
    n_lambda = len(lambdas)
    table = pd.DataFrame({
        "pair": np.repeat(np.arange(len(pairs.inputs)), n_lambda),
        "input": np.repeat(ids[pairs.inputs], n_lambda),
        "target": np.repeat(target_ids[pairs.targets], n_lambda),
        "lambda": np.tile(lambdas, len(pairs.inputs)),
        "loss": result.value.cpu().numpy(),
        "attack_loss": attack_loss.double().cpu().numpy(),
        "distortion": delta.flatten(1).double().norm(dim=1).cpu().numpy(),
        "status": result.status,
        "iterations": result.iterations,
        "evaluations": result.evaluations,
    })
    order = table.sort_values(["pair", "attack_loss", "distortion", "lambda"]).index
    best = table.loc[order].groupby("pair").head(1).index
    table["selected"] = table.index.isin(best)
    return table
