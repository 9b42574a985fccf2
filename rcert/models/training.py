"""Train rcert architectures by maximising their family's objective (the beta-ELBO, the
beta-TCVAE's, or Lu & Chen's MMD and Shapiro-Wilk objectives, for VAEs and deterministic
autoencoders), with early stopping.

Everything random (shuffling, reparameterisation noise) comes from generators seeded by
``seed``, so the same seed, data and initial weights give bit-identical trained weights.
The global torch RNG is not touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcert import validate
from rcert.errors import RcertError
from rcert.models.hierarchical import HierarchicalVAE
from rcert.models.nets import VAE
from rcert.models.objectives import beta_tc_elbo, elbo, regularised_elbo
from rcert.progress import Progress
from rcert.settings import MIN_BATCH, TC_FAMILIES, TrainConfig, merge
from rcert.settings.training import DAE_FAMILIES

# Offsets that give the validation noise its own stream, independent of the training one.
VAL_STREAM = 1_000_003
_NOISE_STREAM = 7_919


@dataclass(frozen=True)
class Objective:
    """A training objective: its per-input values on a batch (given the model, the batch and
    the noise), and the smallest batch it can be computed on."""

    per_input: Callable[[VAE, Tensor, torch.Generator], Tensor]
    min_batch: int = 1


#: The true ELBO (beta = 1): what models are compared by, whatever they were trained on.
TRUE_ELBO = Objective(lambda model, x, noise: elbo(model, x, generator=noise))
#: ``log p(x | f_enc(x))``: what a deterministic autoencoder, which has no ELBO, is compared by.
LOG_LIKELIHOOD = Objective(lambda model, x, noise: model.elbo_terms(x, noise).log_likelihood)


def reference(model: VAE) -> tuple[str, Objective]:
    """The objective models are compared by, and its name in the metrics: the true ELBO
    (``"elbo"``), or for a deterministic autoencoder the log-likelihood of its
    reconstruction (``"log_likelihood"``), since the ELBO's KL needs sigma."""
    return ("log_likelihood", LOG_LIKELIHOOD) if model.deterministic else ("elbo", TRUE_ELBO)


def objective(config: TrainConfig, dataset_size: int) -> Objective:
    """The objective ``config.family`` maximises: the beta-ELBO (:func:`elbo`), or the
    beta-TCVAE objective (:func:`beta_tc_elbo`; on the top layer for the Seatbelt-VAE and
    the DLGM), whose total correlation is estimated across each batch (at least 2 inputs)
    as drawn from ``dataset_size`` inputs; with ``config.free_bits`` per layer; or the
    MMD and Shapiro-Wilk objectives of the mmd and swt families (:func:`regularised_elbo`)."""
    if config.family in TC_FAMILIES:
        return Objective(lambda model, x, noise: beta_tc_elbo(
            model, x, beta=config.beta, dataset_size=dataset_size,
            estimator=config.tc_estimator, free_bits=config.free_bits, generator=noise),
            min_batch=MIN_BATCH[config.family])
    if config.family in ("mmd-vae", "swt-vae", *DAE_FAMILIES):
        return Objective(lambda model, x, noise: regularised_elbo(
            model, x, family=config.family, beta=config.beta, kernel=config.mmd_kernel,
            generator=noise), min_batch=MIN_BATCH[config.family])
    return Objective(lambda model, x, noise: elbo(model, x, beta=config.beta,
                                                  free_bits=config.free_bits, generator=noise))


#: What each family's model has: ``likelihood_on`` of a hierarchical VAE, or None for a
#: one-layer model (a flat architecture, or a hierarchical one without upper layers).
_FAMILY_LIKELIHOOD_ON = {"vae": None, "beta-tcvae": None, "seatbelt": "all", "dlgm": "first",
                         "mmd-vae": None, "swt-vae": None, "mmd-dae": None, "swt-dae": None}


def check_family(model: VAE, family: str) -> None:
    """Refuse a model whose layers are not those of ``family`` (an impossible layer
    configuration): the vae and beta-tcvae families have one stochastic layer; seatbelt
    and dlgm are hierarchical VAEs with the likelihood on every layer or on the first; the
    mmd-dae and swt-dae families are deterministic autoencoders (``sigma_mode="none"``),
    and no other family is (a KL or a total correlation needs sigma)."""
    if family in DAE_FAMILIES and not model.deterministic:
        raise RcertError(f"family {family} trains deterministic autoencoders (sigma_mode "
                         f"'none'), but this model's encoder is Gaussian (sigma_mode "
                         f"{model.sigma_mode!r}); use family {DAE_FAMILIES[family]} or "
                         f"sigma_mode 'none'")
    if family not in DAE_FAMILIES and model.deterministic:
        alternative = {v: k for k, v in DAE_FAMILIES.items()}.get(family, "mmd-dae or swt-dae")
        raise RcertError(f"family {family} trains Gaussian encoders, but this model is a "
                         f"deterministic autoencoder (sigma_mode 'none'); use family "
                         f"{alternative}, or a sigma_mode other than 'none'")
    wanted = _FAMILY_LIKELIHOOD_ON[family]
    layers = model.traits.stochastic_layers if isinstance(model, HierarchicalVAE) else 1
    if wanted is None and layers > 1:
        raise RcertError(f"family {family} trains one-layer VAEs, but this model has {layers} "
                         f"stochastic layers; use family seatbelt or dlgm, or no upper_dims")
    if wanted is not None and not (isinstance(model, HierarchicalVAE)
                                   and model.likelihood_on == wanted):
        raise RcertError(f"family {family} trains hierarchical VAEs with likelihood_on="
                         f"{wanted!r} (rcert.build_model('hierarchical', ...)); this model is "
                         f"not one")


def family_architecture(family: str, arch: str, hparams: dict[str, Any]
                        ) -> tuple[str, dict[str, Any]]:
    """The architecture name and hyper-parameters that train ``family`` on base ``arch``
    (``mlp`` or ``conv``): the hierarchical families wrap it (``base``) with their
    ``likelihood_on``; the DAE families set ``sigma_mode="none"`` (refusing another one);
    the others take it as it is."""
    wanted = _FAMILY_LIKELIHOOD_ON[family]
    hierarchical = {"upper_dims", "inference", "conditional_hidden"} & set(hparams)
    if family in DAE_FAMILIES:
        mode = hparams.get("sigma_mode", "none")
        if mode != "none":
            raise RcertError(f"family {family} is a deterministic autoencoder: sigma "
                             f"{mode!r} does not apply; drop --sigma (or pass none), or "
                             f"use family {DAE_FAMILIES[family]}")
        hparams = {**hparams, "sigma_mode": "none"}
    if wanted is None:
        if hierarchical:
            raise RcertError(f"{', '.join(sorted(hierarchical))} only apply to the "
                             f"hierarchical families (seatbelt, dlgm), not {family}")
        return arch, hparams
    return "hierarchical", {**hparams, "base": arch, "likelihood_on": wanted}


def batches(order: Tensor, batch_size: int, min_batch: int = 1) -> tuple[Tensor, ...]:
    """``order`` split into batches of ``batch_size``; a last batch smaller than
    ``min_batch`` joins the batch before it."""
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < min_batch:
        parts[-2:] = [torch.cat(parts[-2:])]
    return tuple(parts)


def mean_elbo(model: VAE, x: Tensor, batch_size: int, seed: int,
              target: Objective = TRUE_ELBO) -> float:
    """``target`` (default: the true ELBO) averaged over ``x`` in fixed batches, with noise
    fixed by ``seed``, in eval mode."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for index in batches(torch.arange(len(x)), batch_size, target.min_batch):
            total += target.per_input(model, x[index.to(x.device)], generator).sum().item()
    return total / len(x)


def _as_data(x: Tensor | np.ndarray, name: str, model: VAE) -> Tensor:
    """``x`` checked against the model (shape, finite, data range), on its dtype and device."""
    try:
        x = validate.as_data(model, x)
    except RcertError as exc:
        raise RcertError(f"{name}: {exc}") from None
    param = next(model.parameters())
    return x.to(device=param.device, dtype=param.dtype)


#: A step taken after each training step on its batch: ``(x_batch, positions, noise)``.
AfterStep = Callable[[Tensor, Tensor, torch.Generator], None]


def _epoch(model: VAE, x: Tensor, parts: tuple[Tensor, ...], optimizer: torch.optim.Optimizer,
           target: Objective, noise: torch.Generator, after_step: AfterStep | None) -> float:
    """One pass of Adam over the batches ``parts`` of ``x`` (each followed by
    ``after_step``); the mean loss, or NaN once it diverges."""
    model.train()
    loss_sum = 0.0
    for index in parts:
        batch = x[index.to(x.device)]
        loss = -target.per_input(model, batch, noise).mean()
        if not torch.isfinite(loss):
            return math.nan
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(batch, index, noise)
            model.train()
        loss_sum += loss.item() * len(index)
    return loss_sum / len(x)


class _Best:
    """The best held-out objective so far and its weights, restored at the end or on failure."""

    def __init__(self, model: VAE) -> None:
        self.model = model
        self.value, self.epoch = -math.inf, 0
        self.state = copy.deepcopy(model.state_dict())

    def offer(self, epoch: int, value: float) -> None:
        if value > self.value:
            self.value, self.epoch = value, epoch
            self.state = copy.deepcopy(self.model.state_dict())

    def restore(self) -> None:
        self.model.load_state_dict(self.state)
        self.model.eval()

    def diverged(self, epoch: int, what: str, lr: float) -> RcertError:
        self.restore()
        kept = f"the weights of epoch {self.epoch}" if self.epoch else "the initial weights"
        return RcertError(f"training diverged (non-finite {what} in epoch {epoch}); lower lr "
                          f"(now {lr:g}); {kept} were restored")


def _epochs(model: VAE, x_train: Tensor, x_val: Tensor, config: TrainConfig, best: _Best,
            progress: bool, after_step: AfterStep | None) -> list[dict[str, Any]]:
    """The epochs of :func:`fit` until ``config.patience`` epochs bring no better held-out
    objective (``best`` keeps the best weights); their history."""
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator(device=x_train.device).manual_seed(config.seed + _NOISE_STREAM)
    val_seed = config.seed + VAL_STREAM
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    # The held-out objective weighs its batches' TC as drawn from the training set too.
    target = objective(config, len(x_train))
    history: list[dict[str, Any]] = []
    with Progress(config.epochs, "training epochs", enabled=progress) as bar:
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(len(x_train), generator=shuffle)
            parts = batches(order, config.batch_size, target.min_batch)
            loss = _epoch(model, x_train, parts, optimizer, target, noise, after_step)
            if not math.isfinite(loss):
                raise best.diverged(epoch, "training loss", config.lr)
            # Stop on the objective being maximised: for beta != 1 the true ELBO may fall
            # while the beta-ELBO still improves (a beta = 0.1 model would stop at once).
            val = mean_elbo(model, x_val, config.batch_size, val_seed, target)
            if not math.isfinite(val):
                raise best.diverged(epoch, "held-out objective", config.lr)
            history.append({"epoch": epoch, "train_loss": loss, "val_objective": val})
            best.offer(epoch, val)
            bar.update(status=f"train loss {loss:.4f}  val objective {val:.4f}  "
                              f"best {best.value:.4f}")
            if epoch - best.epoch >= config.patience:
                break
    return history


def fit(
    model: VAE,
    x_train: Tensor | np.ndarray,
    x_val: Tensor | np.ndarray,
    config: TrainConfig | None = None,
    *,
    beta: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    after_step: AfterStep | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place with Adam on ``-mean beta-ELBO``, early-stopping on held-out data.

    Each epoch visits ``x_train`` once in a seeded random order, then evaluates the
    training objective (the beta-ELBO, :func:`elbo`) on ``x_val`` with the same noise
    every epoch, so epochs compare fairly. Training stops after ``patience`` epochs
    without a strictly better held-out objective; the best weights are restored and the
    model is left in eval mode. For ``beta = 1`` the objective is the ELBO itself.

    Parameters
    ----------
    model
        An rcert architecture; its initial weights are the caller's (seed them).
    x_train, x_val
        ``(n, *input_shape)`` data in the model's ``data_range``.
    config
        :class:`rcert.settings.TrainConfig`; the keyword shortcuts override its fields:
        ``beta`` (KL weight, finite and > 0), ``epochs``, ``batch_size``, ``lr`` (Adam),
        ``patience`` (early stopping) and ``seed`` (the shuffle and all noise).
        ``val_fraction`` is not used here: the caller splits the data.
    progress
        Show a status line on stderr; stdout is never written.
    after_step
        Called after every training step with the batch, its positions in ``x_train`` and
        the noise generator: a defence's extra step, e.g. latent adversarial training
        (:class:`rcert.runs.adversarial.LatentAdversary`).

    Returns
    -------
    dict
        ``best_val_objective`` (mean held-out beta-ELBO of the restored weights),
        ``best_val_elbo`` (their mean held-out true ELBO, beta = 1, comparable across
        models), ``best_epoch`` (1-based), ``epochs_run``, ``train_elbo`` (mean true ELBO
        of the restored weights on ``x_train``, with fixed noise like the held-out one)
        and ``history``: one ``{"epoch", "train_loss", "val_objective"}`` per epoch. A
        deterministic autoencoder has no ELBO: ``best_val_log_likelihood`` and
        ``train_log_likelihood`` (``log p(x | f_enc(x))``, :func:`reference`) stand in for
        ``best_val_elbo`` and ``train_elbo``.

    Raises
    ------
    RcertError
        Bad arguments or data, or training diverged (non-finite loss or held-out objective); in
        the latter case the best weights so far are restored first.
    """
    if not isinstance(model, VAE):
        raise RcertError(
            f"fit trains rcert architectures (rcert.build_model), got {type(model).__name__}"
        )
    config = merge(TrainConfig, config, beta=beta, epochs=epochs, batch_size=batch_size, lr=lr,
                   patience=patience, seed=seed)
    check_family(model, config.family)
    x_train = _as_data(x_train, "x_train", model)
    x_val = _as_data(x_val, "x_val", model)
    val_seed = config.seed + VAL_STREAM
    best = _Best(model)
    history = _epochs(model, x_train, x_val, config, best, progress, after_step)
    best.restore()
    best_val, best_epoch, batch_size = best.value, best.epoch, config.batch_size
    name, target = reference(model)
    return {
        "best_val_objective": best_val,
        f"best_val_{name}": mean_elbo(model, x_val, batch_size, val_seed, target),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        f"train_{name}": mean_elbo(model, x_train, batch_size, val_seed, target),
        "history": history,
    }
