"""Lu & Chen's latent-space attacks, scored (spec sections 2 and 4): PGD on the code ``z``
between the encoder and the decoder, over a grid of budgets, with the fidelity of every
adversarial reconstruction.

:func:`latent_attack` encodes each input to its clean code ``z0`` (the mean, or one
reparameterised sample), attacks it for every epsilon of the grid and every seed
(:func:`rcert.attacks.latent_pgd.latent_pgd_chunked`), decodes the returned codes and
scores them against the reference (the clean reconstruction ``g(z0)`` or the input) with
MSE, L2, SSIM, PSNR and, given its weights, LPIPS. A targeted attack also records
``target_mse``, the MSE to its target; ``output_mean`` is the mean value of ``g(z*)`` (how
black a black-targeted reconstruction has become). With ``r``, ``exceeds_r`` says whether
``||g(z*) - g(z0)|| > r``: a broken r-robustness threshold, the bridge to the
certificates. Each row is one (seed, input, epsilon); its ``batch`` is
``index // FidelityConfig.batch``, the groups whose curves give the spread.

This is not the input-space "latent attack" of Willetts et al.
(:func:`rcert.evaluation.targeted.targeted_attack`): here the encoder is bypassed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import checks, validate
from rcert.attacks.chunking import chunks
from rcert.attacks.latent_pgd import LatentResult, latent_pgd_chunked
from rcert.attacks.latent_targets import STREAM_LATENT_TARGET, latent_target, other_inputs
from rcert.engine import montecarlo, noise
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.models import contract
from rcert.progress import Progress
from rcert.settings import FidelityConfig, LatentAttackConfig, RunConfig, as_dict, merge
from rcert.statistics import fidelity as scores
from rcert.statistics.ddcurve import latent_statistics, parse_limits
from rcert.statistics.embedding import tsne
from rcert.statistics.latent_summary import summarize_latent
from rcert.values import check_seed, positive_float

#: The noise stream of sampled clean codes (``code="sample"``).
STREAM_LATENT_CODE = 12


@dataclasses.dataclass(frozen=True)
class Clean:
    """What every seed's attack starts from: the codes, the reconstructions, the units."""

    z0: torch.Tensor
    recon: torch.Tensor
    context: torch.Tensor | None
    scale: torch.Tensor | None
    target: torch.Tensor | None


@validate.borrows_model
def latent_attack(model: nn.Module, x: torch.Tensor | np.ndarray,
                  config: LatentAttackConfig | None = None, *,
                  fidelity: FidelityConfig | None = None, seeds: Sequence[int] | None = None,
                  index: np.ndarray | None = None, labels: np.ndarray | None = None,
                  targets: torch.Tensor | np.ndarray | None = None, r: float | None = None,
                  statistics_at: Sequence[float] = (), tsne_at: Sequence[float] = (),
                  run: RunConfig | None = None,
                  **shortcuts: object) -> pd.DataFrame:
    """Attack every input's latent code for every epsilon and seed; score the results.

    Parameters
    ----------
    model
        Any model of the contract; a deterministic encoder (SPEC section 9) takes
        ``code="mean"`` and ``scale`` raw or spread (sigma needs a Gaussian encoder).
    x
        ``(N, ...)`` inputs, in the model's data range.
    config, fidelity
        :class:`LatentAttackConfig` (keyword shortcuts override its fields) and
        :class:`FidelityConfig`.
    seeds
        The seeds to repeat the attack with (random starts, sampled codes, prior and other
        targets) [default: ``config.seed``].
    labels
        ``(N,)`` labels: an ``other`` target then comes from another label.
    targets
        Images to draw ``other`` targets from instead of ``x`` (one per input, drawn by its
        index), shaped like the model's outputs.
    r
        A distortion threshold: adds ``exceeds_r``.
    statistics_at, tsne_at
        Epsilons of the grid at which to record the Eq 7 per-dimension statistics and a
        t-SNE embedding of clean and adversarial codes (first seed), in
        ``attrs["sections"]``.
    index, run
        As in :func:`rcert.certify`.

    Returns
    -------
    pandas.DataFrame
        One row per (seed, input, epsilon): ``seed, index, batch, epsilon, shift_l2``
        (``||z* - z0||``), ``shift_scaled`` (in epsilon's units, scaled runs), ``loss``
        (the attack distance D at ``z*``), the scores, ``output_mean``, ``target_mse``,
        ``exceeds_r``.
        ``attrs``: ``config`` (both settings), ``summary``
        (:func:`rcert.statistics.latent_summary.summarize_latent`), ``sections``.
    """
    config = merge(LatentAttackConfig, config, **shortcuts)
    fidelity = merge(FidelityConfig, fidelity)
    run = merge(RunConfig, run)
    seeds = [config.seed] if seeds is None else [check_seed(s, "seeds") for s in seeds]
    if not seeds:
        raise RcertError("seeds needs at least one seed, e.g. seeds=[0] (--seeds 0)")
    if r is not None:
        r = positive_float(r, "r", "; pass e.g. --r 4")
    limits = parse_limits(fidelity.limits)
    model, x, index_t, _ = prepare_checked(model, x, index=index, seed=config.seed, run=run)
    box = _requirements(model, x, config, fidelity, statistics_at, tsne_at)
    pool = None if targets is None else _target_pool(targets, x, config)
    lpips = _lpips(fidelity)
    encoded = _encoded(model, x, run)
    frames, attacked = [], []
    with Progress(len(seeds), "latent attack", enabled=run.progress) as bar:
        for seed in seeds:
            cfg = dataclasses.replace(config, seed=seed)
            clean = _clean(model, x, index_t, encoded, cfg, labels, pool, box)
            result = _attack(model, clean, index_t, cfg, fidelity, box, run)
            frames.append(_rows(model, x, index_t, clean, result, cfg, fidelity, box, r,
                                lpips, encoded.per))
            attacked.append((clean.z0, result.z))
            bar.update(1)
    df = pd.concat(frames, ignore_index=True)
    summary, crossings = summarize_latent(df, limits)
    for message in crossings:
        checks.warn("limit-crossing", message)
    # The seed recorded is the first one run (config.seed stands in only without seeds).
    df.attrs["config"] = {**as_dict(config), "seed": seeds[0], "seeds": seeds,
                          "fidelity": as_dict(fidelity)}
    df.attrs["summary"] = summary
    df.attrs["sections"] = _sections(attacked[0], config.epsilons, index_t, statistics_at,
                                     tsne_at, seeds[0])
    return df


def _requirements(model: nn.Module, x: torch.Tensor, config: LatentAttackConfig,
                  fidelity: FidelityConfig, statistics_at: Sequence[float],
                  tsne_at: Sequence[float]) -> tuple[float, float]:
    """Refuse what the model or the data cannot give, before any work; the data range."""
    traits = contract.traits(model)
    if not traits.stochastic and (config.scale == "sigma" or config.code == "sample"):
        what = "--scale sigma" if config.scale == "sigma" else "--code sample"
        raise RcertError(f"{what} needs the encoder's sigma, but this model has a "
                         f"deterministic encoder (SPEC section 9); use --scale raw or spread "
                         f"and --code mean")
    if traits.data_range is None:
        raise RcertError("latent attacks score and target images in the model's data range, "
                         "which this model does not state; pass --data-range low,high")
    if "ssim" in fidelity.metrics or config.distance == "ssim":
        scores.check_window(tuple(x.shape[1:]), fidelity.ssim_window)
    if config.scale == "spread" and len(x) < 2:
        raise RcertError("--scale spread measures epsilon in the codes' standard deviation "
                         "over the attacked inputs, which needs at least 2 of them; pass more "
                         "inputs or --scale raw")
    for name, values in (("statistics_at", statistics_at), ("tsne_at", tsne_at)):
        missing = sorted(set(float(v) for v in values) - set(config.epsilons))
        if missing:
            raise RcertError(f"{name} {missing[0]:g} is not on the epsilon grid "
                             f"{list(config.epsilons)}; pick one of its values")
    return traits.data_range


def _target_pool(targets: torch.Tensor | np.ndarray, x: torch.Tensor,
                 config: LatentAttackConfig) -> torch.Tensor:
    """The ``other`` targets' pool, checked against the inputs' shape."""
    if config.goal != "targeted" or config.target != "other":
        raise RcertError("targets apply to a targeted attack with target other; pass "
                         "--goal targeted --target other, or drop --targets")
    pool = torch.as_tensor(np.asarray(targets) if not torch.is_tensor(targets) else targets)
    if pool.dim() < 2 or tuple(pool.shape[1:]) != tuple(x.shape[1:]) or len(pool) == 0:
        raise RcertError(f"targets have shape {tuple(pool.shape)} but the model's outputs are "
                         f"(batch, {', '.join(map(str, x.shape[1:]))}); pass target images of "
                         f"the model's input shape")
    return pool.to(device=x.device, dtype=x.dtype)


def _lpips(fidelity: FidelityConfig) -> nn.Module | None:
    if "lpips" not in fidelity.metrics:
        return None
    from rcert.statistics.lpips import load_lpips

    return load_lpips(fidelity.lpips_weights)


@dataclasses.dataclass(frozen=True)
class Codes:
    """What every seed shares: the encoder's mean and sigma, the context of the upper
    layers, the reconstruction from the mean, and the decoder rows per chunk."""

    mu: torch.Tensor
    sigma: torch.Tensor
    context: torch.Tensor | None
    recon: torch.Tensor
    per: int


@torch.no_grad()
def _encoded(model: nn.Module, x: torch.Tensor, run: RunConfig) -> Codes:
    """Encode ``x`` once, in chunks of the memory budget."""
    per = montecarlo.rows_for_budget(run.memory_mb, x[0].numel(), x.device)
    parts = [model.encode(x[s]) for s in chunks(len(x), per)]
    mu = torch.cat([p[0] for p in parts])
    context = contract.context(model, x)
    return Codes(mu, torch.cat([p[1] for p in parts]), context,
                   _decode(model, mu, context, per), per)


@torch.no_grad()
def _clean(model: nn.Module, x: torch.Tensor, index: torch.Tensor, encoded: Codes,
           config: LatentAttackConfig, labels: np.ndarray | None, pool: torch.Tensor | None,
           box: tuple[float, float]) -> Clean:
    """The clean codes, reconstructions, units of epsilon and targets of one seed."""
    z0, recon = encoded.mu, encoded.recon
    if config.code == "sample":
        eta = noise.gaussian(config.seed, index, 1, z0.shape[1], stream=STREAM_LATENT_CODE,
                             dtype=z0.dtype)[:, 0]
        z0 = encoded.mu + encoded.sigma * eta
        recon = _decode(model, z0, encoded.context, encoded.per)
    scale = None
    if config.scale == "sigma":
        scale = encoded.sigma
    elif config.scale == "spread":
        scale = z0.std(dim=0, keepdim=True).expand_as(z0).contiguous()
    target = None
    if config.goal == "targeted":
        other = None
        if config.target == "other" and pool is not None:
            u = torch.special.ndtr(noise.gaussian(config.seed, index, 1, 1,
                                                  stream=STREAM_LATENT_TARGET,
                                                  dtype=torch.float64)[:, 0, 0])
            other = pool[(u * len(pool)).long().clamp_max(len(pool) - 1)]
        elif config.target == "other":
            pick = other_inputs(len(x), seed=config.seed, labels=labels,
                                different_label=labels is not None)
            other = x[torch.as_tensor(pick, device=x.device)]
        target = latent_target(config.target, clean=recon, data_range=box, seed=config.seed,
                               index=index, other=other)
    return Clean(z0, recon, encoded.context, scale, target)


def _decode(model: nn.Module, z: torch.Tensor, context: torch.Tensor | None, per: int
            ) -> torch.Tensor:
    """``g(z)`` in chunks of ``per`` rows (``context`` aligned with ``z``'s rows)."""
    return torch.cat([contract.decode(model, z[s], None if context is None else context[s])
                      for s in chunks(len(z), per)])


def _attack(model: nn.Module, clean: Clean, index: torch.Tensor, config: LatentAttackConfig,
            fidelity: FidelityConfig, box: tuple[float, float], run: RunConfig
            ) -> LatentResult:
    def decode_for(rows: slice) -> Callable[[torch.Tensor], torch.Tensor]:
        context = None if clean.context is None else clean.context[rows]

        def decode(z: torch.Tensor) -> torch.Tensor:
            # The attack's rows repeat each input over epsilons and restarts.
            reps = len(z) // len(context) if context is not None else 1
            ctx = None if context is None else context.repeat_interleave(reps, 0)
            return contract.decode(model, z, ctx)
        return decode

    z0 = clean.z0
    return latent_pgd_chunked(
        decode_for, z0, torch.tensor(config.epsilons, dtype=z0.dtype, device=z0.device),
        config=config, index=index, scale=clean.scale, target=clean.target, data_range=box,
        ssim=(fidelity.ssim_window, fidelity.ssim_sigma), memory_mb=run.memory_mb,
        output_size=clean.recon[0].numel(), device=z0.device)


@torch.no_grad()
def _rows(model: nn.Module, x: torch.Tensor, index: torch.Tensor, clean: Clean,
          result: LatentResult, config: LatentAttackConfig, fidelity: FidelityConfig,
          box: tuple[float, float], r: float | None, lpips: nn.Module | None,
          per: int) -> pd.DataFrame:
    """One seed's rows: the adversarial reconstructions decoded in chunks of ``per`` rows
    and scored."""
    n, n_eps, d = result.z.shape
    z = result.z.reshape(n * n_eps, d)
    context = None if clean.context is None else clean.context.repeat_interleave(n_eps, 0)
    adv = _decode(model, z, context, per)
    reference = (clean.recon if config.reference == "clean" else x)
    reference = reference.repeat_interleave(n_eps, 0)
    shift = result.z - clean.z0[:, None]
    out = {
        "seed": np.full(n * n_eps, config.seed, dtype=np.int64),
        "index": np.repeat(index.cpu().numpy(), n_eps),
        "batch": np.repeat(index.cpu().numpy() // fidelity.batch, n_eps),
        "epsilon": np.tile(np.asarray(config.epsilons, dtype=np.float64), n),
        "shift_l2": _numpy(shift.norm(dim=2)),
    }
    if clean.scale is not None:
        out["shift_scaled"] = _numpy(_scaled_norm(shift, clean.scale[:, None], config.norm))
    out["loss"] = _numpy(result.loss)
    out.update(_scores(adv, reference, fidelity, box, lpips, per))
    out["output_mean"] = _numpy(adv.flatten(1).mean(1))
    if clean.target is not None:
        out["target_mse"] = _numpy(scores.mse(adv, clean.target.repeat_interleave(n_eps, 0)))
    if r is not None:
        gap = scores.l2(adv, clean.recon.repeat_interleave(n_eps, 0))
        out["exceeds_r"] = (gap > r).cpu().numpy()
    return pd.DataFrame(out)


def _scaled_norm(shift: torch.Tensor, scale: torch.Tensor, norm: str) -> torch.Tensor:
    """``||shift / scale||`` in the ball's norm; a dimension of zero scale cannot move."""
    u = torch.where(scale > 0, shift / scale.clamp_min(torch.finfo(shift.dtype).tiny), 0.0)
    return u.norm(dim=-1) if norm == "l2" else u.abs().amax(dim=-1)


def _scores(adv: torch.Tensor, reference: torch.Tensor, fidelity: FidelityConfig,
            box: tuple[float, float], lpips: nn.Module | None, per: int
            ) -> dict[str, np.ndarray]:
    """Each score of ``fidelity.metrics`` per row, computed in chunks of ``per`` rows."""
    functions = {
        "mse": scores.mse, "l2": scores.l2,
        "ssim": lambda a, b: scores.ssim(a, b, data_range=box, window=fidelity.ssim_window,
                                         sigma=fidelity.ssim_sigma),
        "psnr": lambda a, b: scores.psnr(a, b, data_range=box),
        "lpips": lambda a, b: lpips(a, b, data_range=box),
    }
    return {name: np.concatenate([_numpy(functions[name](adv[s], reference[s]))
                                  for s in chunks(len(adv), per)])
            for name in fidelity.metrics}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.reshape(-1).double().cpu().numpy()


def _sections(codes: tuple[torch.Tensor, torch.Tensor], epsilons: Sequence[float],
              index: torch.Tensor, statistics_at: Sequence[float], tsne_at: Sequence[float],
              seed: int) -> dict[str, list[dict[str, object]]]:
    """The Eq 7 statistics and t-SNE embeddings asked for, as records."""
    z0, z = codes
    grid = list(epsilons)
    sections: dict[str, list[dict[str, object]]] = {}
    for eps in statistics_at:
        table = latent_statistics(z0, z[:, grid.index(float(eps))])
        table.insert(0, "epsilon", float(eps))
        sections.setdefault("statistics", []).extend(table.to_dict(orient="records"))
    ids = index.cpu().numpy()
    for eps in tsne_at:
        both = torch.cat((z0, z[:, grid.index(float(eps))])).double().cpu().numpy()
        xy = tsne(both, seed=seed)
        table = pd.DataFrame({"epsilon": float(eps), "code": ["clean"] * len(ids)
                              + ["adversarial"] * len(ids), "index": np.tile(ids, 2),
                              "x": xy[:, 0], "y": xy[:, 1]})
        sections.setdefault("embedding", []).extend(table.to_dict(orient="records"))
    return sections
