"""Train rcert architectures by maximising the (beta-)ELBO, with early stopping.

Everything random (shuffling, reparameterisation noise) comes from generators seeded by
``seed``, so the same seed, data and initial weights give bit-identical trained weights.
The global torch RNG is not touched.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcert import checkpoint, data, validate
from rcert.errors import RcertError
from rcert.files import atomic_write, check_writable
from rcert.margin import recommend_r
from rcert.nets import VAE, build_model
from rcert.progress import Progress
from rcert.validate import positive_float, positive_int

# Offsets that give the validation noise its own stream, independent of the training one.
_VAL_STREAM = 1_000_003
_NOISE_STREAM = 7_919


def elbo(
    model: VAE, x: Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Per-input beta-ELBO with one reparameterised sample [C Sec 2.1, 2.3].

    ``ELBO_beta(x) = log p(x | z) - beta * KL(q(z|x) || N(0, I))`` with
    ``z = mu(x) + sigma(x) * eps``, ``eps ~ N(0, I)`` (the reparameterisation trick; the
    estimator is Kingma & Welling 2014, Eq. 10) and the closed-form Gaussian KL (ibid.,
    Appendix B)::

        KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

    ``beta = 1`` is the true ELBO, a lower bound on ``log p(x)``; other values give the
    beta-VAE objective (Higgins et al. 2017).

    Parameters
    ----------
    model
        An rcert architecture (needs ``log_likelihood``).
    x
        ``(B, *input_shape)`` inputs.
    beta
        Weight of the KL term, finite and >= 0.
    generator
        Source of ``eps``; the global RNG when ``None``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` ELBO per input, in nats.
    """
    if not isinstance(model, VAE):
        raise RcertError(
            f"elbo needs an rcert architecture (rcert.build_model), got {type(model).__name__}"
        )
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= beta < math.inf:
        raise RcertError(f"beta must be a finite number >= 0, got {beta!r}")
    mu, sigma = model.encode(x)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + sigma * eps
    kl = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(1)
    return model.log_likelihood(x, z) - beta * kl


def _mean_elbo(model: VAE, x: Tensor, batch_size: int, seed: int, beta: float = 1.0) -> float:
    """True ELBO (beta = 1) averaged over ``x``, with noise fixed by ``seed``, in eval mode."""
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            total += elbo(model, batch, beta=beta, generator=generator).sum().item()
    return total / len(x)


def _as_data(x: Tensor | np.ndarray, name: str, model: VAE) -> Tensor:
    """``x`` checked against the model (shape, finite, data range), on its dtype and device."""
    try:
        x = validate.as_data(model, x)
    except RcertError as exc:
        raise RcertError(f"{name}: {exc}") from None
    param = next(model.parameters())
    return x.to(device=param.device, dtype=param.dtype)


def fit(
    model: VAE,
    x_train: Tensor | np.ndarray,
    x_val: Tensor | np.ndarray,
    *,
    beta: float = 1.0,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 1e-3,
    patience: int = 15,
    seed: int = 0,
    progress: bool = True,
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
    beta
        KL weight of the training objective, any finite value > 0.
    epochs, batch_size, lr, patience
        Most epochs, mini-batch size, Adam learning rate, early-stopping patience.
    seed
        Seeds the shuffle and all noise.
    progress
        Show a status line on stderr; stdout is never written.

    Returns
    -------
    dict
        ``best_val_objective`` (mean held-out beta-ELBO of the restored weights),
        ``best_val_elbo`` (their mean held-out true ELBO, beta = 1, comparable across
        models), ``best_epoch`` (1-based), ``epochs_run``, ``train_elbo`` (mean true ELBO
        of the restored weights on ``x_train``, with fixed noise like the held-out one)
        and ``history``: one ``{"epoch", "train_loss", "val_objective"}`` per epoch.

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
    beta = positive_float(beta, "beta")
    lr = positive_float(lr, "lr")
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    patience = positive_int(patience, "patience")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**62:
        raise RcertError(f"seed must be an integer in [0, 2**62), got {seed!r}")
    x_train = _as_data(x_train, "x_train", model)
    x_val = _as_data(x_val, "x_val", model)

    device = x_train.device
    shuffle = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + _NOISE_STREAM)
    val_seed = seed + _VAL_STREAM
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best_val, best_epoch = -math.inf, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, Any]] = []

    def diverged(epoch: int, what: str) -> RcertError:
        model.load_state_dict(best_state)
        model.eval()
        kept = f"the weights of epoch {best_epoch}" if best_epoch else "the initial weights"
        return RcertError(
            f"training diverged (non-finite {what} in epoch {epoch}); lower lr (now {lr:g}); "
            f"{kept} were restored"
        )

    with Progress(epochs, "training epochs", enabled=progress) as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            loss_sum = 0.0
            for index in torch.randperm(len(x_train), generator=shuffle).split(batch_size):
                loss = -elbo(model, x_train[index.to(device)], beta=beta, generator=noise).mean()
                if not torch.isfinite(loss):
                    raise diverged(epoch, "training loss")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(index)
            # Stop on the objective being maximised: for beta != 1 the true ELBO may fall
            # while the beta-ELBO still improves (a beta = 0.1 model would stop at once).
            val = _mean_elbo(model, x_val, batch_size, val_seed, beta=beta)
            if not math.isfinite(val):
                raise diverged(epoch, "held-out objective")
            history.append({"epoch": epoch, "train_loss": loss_sum / len(x_train),
                            "val_objective": val})
            if val > best_val:
                best_val, best_epoch = val, epoch
                best_state = copy.deepcopy(model.state_dict())
            bar.update(
                status=f"train loss {history[-1]['train_loss']:.4f}  val objective {val:.4f}  "
                f"best {best_val:.4f}"
            )
            if epoch - best_epoch >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return {
        "best_val_objective": best_val,
        "best_val_elbo": _mean_elbo(model, x_val, batch_size, val_seed),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_elbo": _mean_elbo(model, x_train, batch_size, val_seed),
        "history": history,
    }


def train_checkpoint(
    data_spec: str,
    out: str | Path,
    *,
    arch: str = "mlp",
    hparams: dict[str, Any] | None = None,
    beta: float = 1.0,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 1e-3,
    patience: int = 15,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train a VAE on a data spec; save the checkpoint and its model card beside it.

    A seeded ``val_fraction`` of the training split is held out for early stopping and
    for the recommended ``r`` (:func:`rcert.margin.recommend_r`); the test split, when the
    data have one, gives the card's ``test_elbo``. The card is ``out`` with suffix
    ``.json``. Both files are written atomically.

    Parameters
    ----------
    data_spec
        Training data, e.g. ``digits:train``; a test split is refused.
    out
        Checkpoint path.
    arch, hparams
        Architecture name and its hyper-parameters (see :func:`rcert.nets.build_model`);
        the input shape comes from the data.
    beta, epochs, batch_size, lr, patience, seed, progress
        As in :func:`fit`; ``seed`` also seeds the initial weights and the held-out split.
    command
        The command line that regenerates this checkpoint, recorded in the card.

    Returns
    -------
    dict
        The model card.
    """
    spec = data.parse_spec(data_spec)
    if spec.split == "test":
        raise RcertError(f"refusing to train on the test split of {spec.name}: pass "
                         f"{spec.with_split('train')} (margin certifies the test split)")
    if not 0 < val_fraction <= 0.5:
        raise RcertError(f"val_fraction must lie in (0, 0.5], got {val_fraction!r}")
    out = check_writable(out)
    card_path = out.with_suffix(".json")
    if out.suffix == ".json":
        raise RcertError(f"{out}: give the checkpoint a suffix other than .json (e.g. .rcert); "
                         f"the model card takes .json")
    dataset = data.load_data(spec)
    n_val = max(1, math.ceil(val_fraction * len(dataset)))
    if len(dataset) - n_val < 1:
        raise RcertError(f"{spec} has {len(dataset)} inputs: too few to hold out validation data")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    x_train, x_val = dataset.x[order[n_val:]], dataset.x[order[:n_val]]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(arch, input_shape=dataset.input_shape, **(hparams or {}))
    history = fit(model, x_train, x_val, beta=beta, epochs=epochs, batch_size=batch_size, lr=lr,
                  patience=patience, seed=seed, progress=progress)
    metrics = {k: v for k, v in history.items() if k != "history"}
    metrics.update(n_train=len(x_train), n_val=len(x_val))
    if spec.name != "file" and spec.split == "train":
        x_test = validate.as_data(model, data.load_data(spec.with_split("test")).x)
        metrics["test_elbo"] = _mean_elbo(model, x_test, batch_size, seed + _VAL_STREAM)
    r = recommend_r(model, x_val, seed=seed)
    training = {"beta": beta, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "patience": patience, "val_fraction": val_fraction, "seed": seed}
    checkpoint.save(model, out, data=str(spec), metrics=metrics, recommended_r=r,
                    extra={"training": training})
    card = checkpoint.model_card(out, command=command)
    atomic_write(card_path, json.dumps(card, indent=2) + "\n")
    return card
