"""Downstream robustness (Willetts et al. Table 1, spec section 3.6 and 4.6): classifiers
trained on a VAE's clean reconstructions or latent means, scored on the reconstructions and
latents of inputs attacked towards targets of another label.

Protocol, with every unstated choice exposed: the classifiers (:mod:`rcert.evaluation.
classifiers`: a 2-hidden-layer MLP on reconstructions, a fully convolutional net on
reconstructions when the inputs are images, an MLP on latents) train on the training data's
reconstructions ``g(x)`` and latent means (every layer's chain mean, concatenated, for a
hierarchy). The attack is the targeted one of ``attack`` (default: the KL attack at
``lambda = 1`` with ``different_label`` targets, as the paper's "picks a target with a
different label and attacks ... with lambda = 1"). Accuracy is measured on the attacked
pairs' inputs, clean and attacked; the drop is attacked minus clean (negative: the attack
hurt, as in the paper's parentheses).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import validate
from rcert.attacks.targeted import sweep
from rcert.engine.model_checks import prepare_checked
from rcert.errors import RcertError
from rcert.evaluation.classifiers import accuracy_under_attack, train_classifier
from rcert.models import contract
from rcert.settings import RunConfig, TargetedConfig, as_dict, merge

#: The paper's downstream attack: KL, lambda = 1, targets of another label.
DOWNSTREAM_ATTACK = TargetedConfig(kind="kl", lambda_values=(1.0,), different_label=True,
                                   pairs=100)


@torch.no_grad()
def reconstruct_and_embed(model: nn.Module, x: torch.Tensor, batch: int = 512
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``g(x)`` (shaped like ``x``) and the latent means of every layer, concatenated."""
    recon, codes = [], []
    for part in x.split(batch):
        # One encoder pass: the first layer of the chain of means is what encode gives.
        layers = contract.posteriors(model, part)
        recon.append(contract.decode(model, layers[0][0], contract.context(model, part))
                     .reshape(part.shape))
        codes.append(torch.cat([m for m, _ in layers], dim=1))
    return torch.cat(recon), torch.cat(codes)


@validate.borrows_model
def downstream_table(model: nn.Module, x_train: torch.Tensor | np.ndarray,
                     y_train: np.ndarray, x_test: torch.Tensor | np.ndarray,
                     y_test: np.ndarray, *, attack: TargetedConfig = DOWNSTREAM_ATTACK,
                     epochs: int = 20, seed: int = 0, run: RunConfig | None = None
                     ) -> pd.DataFrame:
    """Table 1 for one model: one row per classifier (``mlp_recon``, ``conv_recon`` for
    images, ``mlp_latent``) with ``accuracy_clean``, ``accuracy_attacked`` and
    ``accuracy_drop`` on the attacked pairs (module docstring). ``attack`` must keep one
    lambda (the paper's 1)."""
    run = merge(RunConfig, run)
    lambdas = attack.lambda_values or (None,) * attack.lambdas
    if len(lambdas) != 1:
        raise RcertError(f"the downstream attack needs one lambda (the paper's 1), got "
                         f"{len(lambdas)}; pass lambda_values=(1.0,)")
    model, x_test, index, _ = prepare_checked(model, x_test, index=None, seed=attack.seed,
                                              run=run)
    x_train = validate.as_data(model, x_train).to(x_test)
    y_train_t, y_test_t = (torch.as_tensor(np.array(y), dtype=torch.int64)
                           for y in (y_train, y_test))
    result = sweep(model, x_test, index, attack, run.memory_mb, np.asarray(y_test))
    inputs = torch.as_tensor(result.pairs.inputs)
    x_clean = x_test[inputs]
    x_adv = x_clean + result.delta
    recon_train, z_train = reconstruct_and_embed(model, x_train)
    clean, attacked = reconstruct_and_embed(model, x_clean), reconstruct_and_embed(model, x_adv)
    labels = y_test_t[inputs]
    kinds = [("mlp_recon", "mlp", 0)] + ([("conv_recon", "conv", 0)] if x_train.dim() == 4
                                         else []) + [("mlp_latent", "mlp", 1)]
    rows = []
    for name, kind, part in kinds:
        net = train_classifier(kind, (recon_train, z_train)[part], y_train_t, epochs=epochs,
                               seed=seed)
        rows.append({"classifier": name, **accuracy_under_attack(
            net, clean[part], attacked[part], labels), "n_attacked": len(labels)})
    df = pd.DataFrame(rows)
    df.attrs["config"] = {**as_dict(attack), "epochs": epochs}
    return df
