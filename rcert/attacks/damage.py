"""Maximum-damage attacks [C Eq 5] within an L2 ball and the data's box (SPEC section 6).

An attack maximises the expected distortion ``E_eta ||Delta(x, d)||`` over perturbations
``d`` with ``||d|| <= L`` and ``x + d`` inside the data range. The objective averages over
a fixed set of encoder-noise draws (common random numbers), so the ascent is not driven
by noise. Inputs run in chunks that fit the memory budget (:mod:`rcert.attacks.chunking`);
an input's row depends only on its index and the seed.

The threat (:class:`rcert.settings.ThreatModel`) says what the perturbation reaches: the
encoder's mean, its sigma, or both [C Fig 4].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import settings, validate
from rcert.attacks import chunking
from rcert.attacks.objectives import Encoded, at_threat, expected_damage
from rcert.attacks.optimizers import maximise, random_directions, warn_unmoved
from rcert.attacks.projection import data_box, project
from rcert.engine import montecarlo
from rcert.engine.model_checks import prepare_checked
from rcert.engine.noise import STREAM_DISTORTION, STREAM_START
from rcert.errors import RcertError
from rcert.models import contract
from rcert.progress import Progress
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, ThreatModel


def _log_likelihood_degradation(model: nn.Module, x: torch.Tensor, z_adv: torch.Tensor,
                                z: torch.Tensor) -> torch.Tensor:
    """``|log p(x|z*) - log p(x|z)| / |log p(x|z)|`` [C Sec 4.1]; NaN without a likelihood."""
    log_likelihood = getattr(model, "log_likelihood", None)
    if log_likelihood is None:
        return torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    with torch.no_grad():
        clean = log_likelihood(x, z).double()
        adv = log_likelihood(x, z_adv).double()
    return ((adv - clean).abs() / clean.abs()).cpu()


def _damage_columns(model: nn.Module, x: torch.Tensor, delta: torch.Tensor,
                    clean: Encoded, threat: ThreatModel, prefix: str) -> dict[str, np.ndarray]:
    """Damage ``||g(mu(x + d)) - g(mu(x))||`` and log-likelihood degradation [C Sec 4.1].

    Both see the mean only: under threat ``sigma`` they are 0 by definition, which is why
    the ``distortion`` columns exist.
    """
    with torch.no_grad():
        mu_adv, _, context = at_threat(model, x + delta, clean, threat)
        g = contract.decode(model, mu_adv, context).flatten(1)
        damage = (g - clean.reference).norm(dim=1)
    degradation = _log_likelihood_degradation(model, x, mu_adv, clean.mu) \
        if clean.context is None else torch.full((x.shape[0],), float("nan"))
    return {f"{prefix}damage": damage.double().cpu().numpy(),
            f"{prefix}loglik_degradation": degradation.numpy()}


def _mean_distortion(model: nn.Module, x_adv: torch.Tensor, clean: Encoded,
                     config: AttackConfig, seed: int, index: torch.Tensor,
                     max_rows: int) -> np.ndarray:
    """``E||Delta(x, d)||`` over ``n_check`` fresh draws (``STREAM_DISTORTION``), with mu and
    sigma at ``x + d`` as the threat says, measured from ``g(mu(x))`` (SPEC section 2).

    Every call draws the same noise for an input, so the attack, the clean point and the
    noise baseline are compared on common draws.
    """
    with torch.no_grad():
        mu, sigma, context = at_threat(model, x_adv, clean, config.threat)
    dist = montecarlo.distortion_norms(model, mu, sigma, index=index, n_samples=config.n_check,
                                       seed=seed, max_rows=max_rows, stream=STREAM_DISTORTION,
                                       reference=clean.reference, context=context)
    return dist.double().mean(dim=1).cpu().numpy()


@dataclass
class _Chunk:
    """What every budget of one chunk of inputs shares: the clean point, the noise
    baseline's direction and the clean distortion ``E||Delta(x)||``."""

    x: torch.Tensor
    index: torch.Tensor
    clean: Encoded
    direction: torch.Tensor
    clean_distortion: np.ndarray
    box: tuple[float, float] | None

    @classmethod
    def of(cls, model: nn.Module, x: torch.Tensor, index: torch.Tensor,
           config: AttackConfig, seed: int, max_rows: int) -> _Chunk:
        clean = Encoded.of(model, x)
        direction = random_directions(seed, index, tuple(x.shape[1:]), 1, STREAM_START).to(x)
        return cls(x, index, clean, direction,
                   _mean_distortion(model, x, clean, config, seed, index, max_rows),
                   data_box(model))


def _budget_columns(model: nn.Module, c: _Chunk, budget: float, config: AttackConfig,
                    seed: int, max_rows: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One budget on one chunk of inputs: the frame's columns, and which attacks moved."""
    x = c.x
    radius = torch.full((x.shape[0],), budget, dtype=x.dtype, device=x.device)
    # The baseline: a Gaussian direction at norm L, projected like any perturbation.
    noise_delta = project(c.direction * budget, x, radius, c.box)
    found = maximise(model, x, radius, expected_damage, config, seed=seed, index=c.index,
                     box=c.box, starts=c.direction, clean=c.clean)
    measure = {"clean": c.clean, "config": config, "seed": seed, "index": c.index,
               "max_rows": max_rows}
    cols = {"index": c.index.cpu().numpy(), "L": np.full(x.shape[0], budget)}
    cols.update(_damage_columns(model, x, found.delta, c.clean, config.threat, ""))
    cols["delta_norm"] = found.delta.flatten(1).norm(dim=1).double().cpu().numpy()
    cols["objective"] = found.value.double().cpu().numpy()
    cols["distortion"] = _mean_distortion(model, x + found.delta, **measure)
    cols["clean_distortion"] = c.clean_distortion
    cols.update(_damage_columns(model, x, noise_delta, c.clean, config.threat, "noise_"))
    cols["noise_delta_norm"] = noise_delta.flatten(1).norm(dim=1).double().cpu().numpy()
    cols["noise_distortion"] = _mean_distortion(model, x + noise_delta, **measure)
    return cols, found.moved


def _budgets(L: float | list[float] | None) -> list[float]:
    budgets = [L] if np.isscalar(L) else list(L) if L is not None else []
    if not budgets:
        raise RcertError("L must be a positive number or a non-empty list of them; "
                         "pass e.g. L=1.0")
    return [settings.positive_float(value, "L") for value in budgets]


@validate.borrows_model
def attack(model: nn.Module, x: torch.Tensor | np.ndarray, config: AttackConfig | None = None,
           *, L: float | list[float], threat: str | ThreatModel | None = None,
           preset: str | None = None, optimizer: str | None = None,
           restarts: int | None = None, steps: int | None = None, n_noise: int | None = None,
           seed: int | None = None, index: np.ndarray | None = None,
           run: RunConfig | None = None, device: str | torch.device | None = None,
           memory_mb: float | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Maximum-damage attack [C Eq 5] on each input, for each budget in ``L`` (SPEC section 6).

    Maximises ``E_eta ||Delta(x, d)||`` over ``||d|| <= L`` with ``x + d`` in the model's
    ``data_range``, and compares with Gaussian noise of the same norm (projected into the
    box the same way). The first restart starts from the noise's direction, so the attack's
    objective is never below the baseline's.

    Parameters
    ----------
    config
        How hard to attack (default :data:`rcert.settings.DAMAGE_ATTACK`); the keyword shortcuts
        ``threat, preset, optimizer, restarts, steps, n_noise`` override its fields, None
        meaning "the config's value". ``config.n_check`` fresh draws measure the
        ``distortion`` columns.
    L
        Budget, or a list of budgets (a damage-vs-L curve, [C Fig 9b]).
    seed
        Seeds all randomness (default: :class:`~rcert.settings.CertifyConfig`'s seed).
    index, run, device, memory_mb, progress
        As in :func:`rcert.certify`; inputs run in chunks that fit ``memory_mb``.

    Returns
    -------
    pandas.DataFrame
        One row per budget and input: ``index, L, damage, loglik_degradation, delta_norm,
        objective, distortion, clean_distortion, noise_damage, noise_loglik_degradation,
        noise_delta_norm, noise_distortion``. ``damage`` is ``||g(mu(x + d)) - g(mu(x))||``
        (0 under threat sigma); ``distortion`` is ``E||Delta(x, d)||`` under the threat on
        fresh draws, which sees sigma too, ``clean_distortion`` the same at ``d = 0``.
    """
    budgets = _budgets(L)
    config = settings.merge(AttackConfig, settings.DAMAGE_ATTACK if config is None else config,
                            threat=threat, preset=preset, optimizer=optimizer,
                            restarts=restarts, steps=steps, n_noise=n_noise)
    run = settings.merge(RunConfig, run, device=device, memory_mb=memory_mb, progress=progress)
    seed = settings.check_seed(settings.default(CertifyConfig, "seed") if seed is None else seed)
    montecarlo.check_sample_budget(config.n_check, run.memory_mb, "n_check")
    model, x, index_t, _ = prepare_checked(model, x, index=index, seed=seed, run=run)
    size = x[0].numel()
    max_rows = montecarlo.rows_for_budget(run.memory_mb, size, x.device)
    per = chunking.inputs_per_chunk(run.memory_mb, size, x.device,
                                    config.restarts * config.n_noise)
    moved = np.zeros(x.shape[0], dtype=bool)
    frames: list[list[pd.DataFrame]] = [[] for _ in budgets]  # budget-major, as rows are
    bar = Progress(len(budgets) * x.shape[0], "attack", enabled=run.progress)
    for part in chunking.chunks(x.shape[0], per):
        chunk = _Chunk.of(model, x[part], index_t[part], config, seed, max_rows)
        for j, budget in enumerate(budgets):
            cols, part_moved = _budget_columns(model, chunk, budget, config, seed, max_rows)
            moved[part] |= part_moved
            frames[j].append(pd.DataFrame(cols))
            bar.update(part.stop - part.start, status=f"L={budget:g}")
    bar.close()
    warn_unmoved(moved, np.ones_like(moved))
    out = pd.concat([f for per_budget in frames for f in per_budget], ignore_index=True)
    out.attrs["config"] = {**settings.as_dict(config), "seed": seed}
    return out
