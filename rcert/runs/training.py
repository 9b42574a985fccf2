"""Train a VAE to a checkpoint with a model card, and the recommended r it records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rcert import validate
from rcert.data import load_data, parse_spec
from rcert.engine.certify import certify
from rcert.errors import RcertError
from rcert.files import STDOUT, atomic_write, check_writable
from rcert.models import checkpoint
from rcert.models.architectures import build_model
from rcert.models.contract import traits
from rcert.models.training import VAL_STREAM, family_architecture, fit, mean_elbo, reference
from rcert.runs.adversarial import LatentAdversary
from rcert.settings import AdversarialTrainingConfig, CertifyConfig, TrainConfig, as_dict, merge


def train_checkpoint(
    data_spec: str,
    out: str | Path,
    *,
    arch: str = "mlp",
    hparams: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    command: str | None = None,
    adversarial: AdversarialTrainingConfig | None = None,
) -> dict[str, Any]:
    """Train a VAE on a data spec; save the checkpoint and its model card beside it.

    A seeded ``val_fraction`` of the training split is held out for early stopping and
    for the recommended ``r`` (:func:`rcert.runs.training.recommend_r`); the test split, when the
    data have one, gives the card's ``test_elbo``. The card is ``out`` with suffix
    ``.json``. Both files are written atomically. A deterministic autoencoder (families
    mmd-dae, swt-dae) has no ELBO and no r-robustness certificate (SPEC section 9): its
    card records ``test_log_likelihood``, ``recommended_r: null`` and a
    ``recommended_r_note`` saying why.

    Parameters
    ----------
    data_spec
        Training data, e.g. ``digits:train``; a test split is refused.
    out
        Checkpoint path.
    arch, hparams
        Architecture name and its hyper-parameters (see
        :func:`rcert.models.architectures.build_model`); the input shape and data range come
        from the data. The seatbelt and dlgm families build a hierarchical VAE on ``arch``
        (:func:`rcert.models.training.family_architecture`).
    config
        :class:`rcert.settings.TrainConfig`; ``seed`` also seeds the initial weights and the
        held-out split.
    progress
        Show a status line on stderr.
    command
        The command line that regenerates this checkpoint, recorded in the card.
    adversarial
        Latent adversarial training (Lu & Chen Algorithm 1,
        :class:`rcert.runs.adversarial.LatentAdversary`) after every training step; its
        settings go to the card's ``adversarial_training``.

    Returns
    -------
    dict
        The model card.
    """
    spec = parse_spec(data_spec)
    if spec.split == "test":
        raise RcertError(f"refusing to train on the test split of {spec.name}: pass "
                         f"{spec.with_split('train')} (margin certifies the test split)")
    config = config or TrainConfig()
    seed = config.seed
    if str(out) == STDOUT:
        raise RcertError("cannot write the checkpoint to - (stdout): its model card goes "
                         "beside it as .json; give a file name such as vae.safetensors")
    out = check_writable(out)
    card_path = out.with_suffix(".json")
    if out.suffix == ".json":
        raise RcertError(f"{out}: give the checkpoint a suffix other than .json (e.g. "
                         f".safetensors); the model card takes .json")
    check_writable(card_path)  # now, not after training
    dataset = load_data(spec)
    n_val = max(1, math.ceil(config.val_fraction * len(dataset)))
    if len(dataset) - n_val < 1:
        raise RcertError(f"{spec} has {len(dataset)} inputs: too few to hold out validation data")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    x_train, x_val = dataset.x[order[n_val:]], dataset.x[order[:n_val]]
    arch, hparams = family_architecture(config.family, arch,
                                        {"data_range": dataset.data_range, **(hparams or {})})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(arch, input_shape=dataset.input_shape, **hparams)
    adversary = None if adversarial is None else LatentAdversary(model, adversarial, seed)
    history = fit(model, x_train, x_val, config, progress=progress, after_step=adversary)
    metrics = {k: v for k, v in history.items() if k != "history"}
    metrics.update(n_train=len(x_train), n_val=len(x_val))
    name, target = reference(model)
    if spec.name != "file" and spec.split == "train":
        x_test = validate.as_data(model, load_data(spec.with_split("test")).x)
        metrics[f"test_{name}"] = mean_elbo(model, x_test, config.batch_size,
                                            seed + VAL_STREAM, target)
    # A deterministic encoder has no sigma, so no input is r-robust in the certified sense
    # at any r (SPEC section 9): there is no r to recommend.
    r = None if model.deterministic else recommend_r(model, x_val, seed=seed)
    extra: dict[str, Any] = {"training": as_dict(config)}
    if adversary is not None:
        extra["adversarial_training"] = adversary.record()
    checkpoint.save(model, out, data=str(spec), metrics=metrics, recommended_r=r, extra=extra)
    note = {"recommended_r_note": NO_RECOMMENDED_R} if r is None else {}
    card = checkpoint.model_card(out, command=command, **note)
    atomic_write(card_path, json.dumps(card, indent=2) + "\n")
    return card


#: Why a deterministic autoencoder's card recommends no r.
NO_RECOMMENDED_R = ("none: a deterministic autoencoder has no sigma, so no r-robustness "
                    "certificate applies (SPEC section 9); its Jacobian norms (rcert report) "
                    "and attacks do")

#: Share of held-out inputs certified r-robust unperturbed at the recommended r.
RECOMMEND_QUANTILE = 0.9


def recommend_r(model: nn.Module, x: torch.Tensor, config: CertifyConfig | None = None, *,
                m: float | None = None, n_samples: int | None = None,
                alpha: float | None = None, seed: int | None = None) -> float:
    """An output radius at which most held-out inputs are certified r-robust unperturbed.

    The :data:`RECOMMEND_QUANTILE` (90 %) of ``r_min_upper`` over ``x``, rounded up to two
    significant figures: at this ``r`` about that share of inputs have ``p_lower > m`` and
    so a positive certified margin. ``config`` (or the shortcuts) gives ``m``,
    ``n_samples``, ``alpha`` and ``seed``; its ``r`` is not used, since ``r_min`` does not
    depend on ``r``.
    """
    config = merge(CertifyConfig, config or CertifyConfig(r=1.0), m=m, n_samples=n_samples,
                   alpha=alpha, seed=seed)
    if not traits(model).stochastic:
        raise RcertError("cannot recommend r for a deterministic autoencoder: it has no sigma, "
                         "so no input is certified r-robust at any r (SPEC section 9); choose "
                         "r for its attacks yourself")
    df = certify(model, x, config)
    value = float(np.quantile(df["r_min_upper"].to_numpy(), RECOMMEND_QUANTILE))
    if not math.isfinite(value) or value <= 0:
        raise RcertError("cannot recommend r: too few samples to certify any input; "
                         "raise n_samples")
    digits = 1 - math.floor(math.log10(value))
    return math.ceil(value * 10**digits) / 10**digits
