"""A checkpoint with the data to certify it on, and the radius r to use by default."""

from __future__ import annotations

import os

import torch

from rcert.data import default_eval_spec, load_data
from rcert.errors import RcertError
from rcert.models.checkpoint import load
from rcert.models.nets import VAE


def load_with_data(path: str | os.PathLike[str], *, data_spec: str | None = None,
                   limit: int | None = None, device: str | torch.device = "cpu"):
    """A checkpoint and the data to certify it on: ``data_spec``, by default the test split
    of the data the model was trained on; the first ``limit`` inputs when given."""
    model = load(path, device=device)
    if data_spec is None:
        data_spec = default_eval_spec(model.meta.get("data"), str(path))
    dataset = load_data(data_spec)
    if limit is not None:
        dataset = dataset.subset(limit)
    return model, dataset


def radius(model: VAE, r: float | None, path: str | os.PathLike[str]) -> float:
    """``r`` if given, else the recommended r the checkpoint records."""
    if r is not None:
        return r
    recommended = getattr(model, "meta", {}).get("recommended_r")
    if recommended is None:
        raise RcertError(f"{path} records no recommended r; pass one (--r, or r in the config)")
    return recommended
