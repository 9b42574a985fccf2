"""Train rcert architectures by maximising the (beta-)ELBO, with early stopping.

Everything random (shuffling, reparameterisation noise) comes from generators seeded by
``seed``, so the same seed, data and initial weights give bit-identical trained weights.
The global torch RNG is not touched.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rcert import validate
from rcert.errors import RcertError
from rcert.models.nets import VAE
from rcert.models.objectives import elbo
from rcert.progress import Progress
from rcert.validate import positive_float, positive_int

# Offsets that give the validation noise its own stream, independent of the training one.
VAL_STREAM = 1_000_003
_NOISE_STREAM = 7_919


def mean_elbo(model: VAE, x: Tensor, batch_size: int, seed: int, beta: float = 1.0) -> float:
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
    val_seed = seed + VAL_STREAM
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
            val = mean_elbo(model, x_val, batch_size, val_seed, beta=beta)
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
        "best_val_elbo": mean_elbo(model, x_val, batch_size, val_seed),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_elbo": mean_elbo(model, x_train, batch_size, val_seed),
        "history": history,
    }
