"""rcert: certify how robust a variational autoencoder is to input perturbations.

The public API (see docs/api.md)::

    model = rcert.load("models/vae-digits.safetensors")
    model = rcert.load_model(rcert.ModelSource("vae.pt", factory="mypkg.models:build_vae",
                                               sigma="logvar", data_range=(0, 1)))
    df = rcert.certify(model, x, r=4.0, m=0.5, n_samples=1000, alpha=0.001, seed=0)
    df = rcert.certify(model, x, rcert.CertifyConfig(r=4.0),
                       attack=rcert.AttackConfig(preset="standard"))   # and attack it
    summary = rcert.summarize(df)

Names are imported on first use, so ``import rcert`` (and the ``rcert`` command's start-up)
does not pay for torch, scipy or plotting until they are needed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("rcert")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Public name -> the module that defines it.
_API = {
    "RcertError": "rcert.errors",
    "attack": "rcert.attacks.damage",
    "build_model": "rcert.models.architectures",
    "certify": "rcert.api",
    "curve": "rcert.evaluation.curves",
    "empirical_margin": "rcert.evaluation.empirical",
    "fit": "rcert.models.training",
    "load": "rcert.models.checkpoint",
    "load_data": "rcert.data",
    "load_model": "rcert.models.foreign",
    "inspect_model": "rcert.runs.inspection",
    "latent_attack": "rcert.evaluation.latent",
    "latent_tightness": "rcert.evaluation.latent_certificate",
    "recommend_r": "rcert.runs.training",
    "save": "rcert.models.checkpoint",
    "summarize": "rcert.statistics.summary",
    "summarize_targeted": "rcert.statistics.summary",
    "targeted_attack": "rcert.evaluation.targeted",
    "train_checkpoint": "rcert.runs.training",
    "wrap": "rcert.models.adapters",
    "AdversarialTrainingConfig": "rcert.settings",
    "AttackConfig": "rcert.settings",
    "CertifyConfig": "rcert.settings",
    "FidelityConfig": "rcert.settings",
    "LatentAttackConfig": "rcert.settings",
    "RunConfig": "rcert.settings",
    "TargetedConfig": "rcert.settings",
    "ThreatModel": "rcert.settings",
    "TrainConfig": "rcert.settings",
    "ModelTraits": "rcert.models.contract",
    "ModelSource": "rcert.source",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    try:  # subpackages, e.g. rcert.engine after a bare ``import rcert``
        return importlib.import_module(f"rcert.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'rcert' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
