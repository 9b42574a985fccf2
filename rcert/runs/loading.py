"""A model from its source, with the data to certify it on and the radius r to use by default.

Every command and report loads models here: rcert's own checkpoints and foreign files alike
(:func:`rcert.models.foreign.load_model`), so ``rcert margin``, ``rcert report`` and the
``rcert check`` gate cover the same formats.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import torch
from torch import nn

from rcert.data import default_eval_spec, load_data, parse_spec
from rcert.errors import RcertError
from rcert.models import foreign
from rcert.models.contract import traits
from rcert.source import ModelSource


def as_source(source: ModelSource | str | os.PathLike[str]) -> ModelSource:
    """``source`` itself, or a path read with the defaults (the file describes itself)."""
    return source if isinstance(source, ModelSource) else ModelSource(path=os.fspath(source))


def load_with_data(source: ModelSource | str | os.PathLike[str], *,
                   data_spec: str | None = None, limit: int | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """A model and the data to certify it on: ``data_spec``, by default the test split of
    the data the model was trained on (only rcert checkpoints record it); the first
    ``limit`` inputs when given."""
    source = as_source(source)
    model = foreign.load_model(source, device=str(device))
    if data_spec is None:
        if model.meta.get("foreign"):
            raise RcertError(f"{source.path} does not record its training data: pass --data "
                             "(e.g. digits:test, x.npz or mnist:DIR:test)")
        recorded = model.meta.get("data")
        _check_recorded_data(recorded, source.path)
        data_spec = default_eval_spec(recorded, source.path)
    dataset = load_data(data_spec)
    if limit is not None:
        dataset = dataset.subset(limit)
    return model, dataset


def training_data(model: nn.Module, path: str, data_spec: str | None = None,
                  limit: int | None = None) -> Any:
    """Data to train downstream classifiers on (Willetts et al. Table 1): ``data_spec``, by
    default the training split of the data the model was trained on; the first ``limit``
    inputs when given."""
    if data_spec is None:
        recorded = None if model.meta.get("foreign") else model.meta.get("data")
        if not recorded:
            raise RcertError(f"{path} does not record its training data: pass --train-data "
                             f"(e.g. digits:train)")
        _check_recorded_data(recorded, path)
        data_spec = str(parse_spec(recorded).with_split("train"))
    dataset = load_data(data_spec)
    return dataset if limit is None else dataset.subset(limit)


def _check_recorded_data(recorded: Any, path: str) -> None:
    """Refuse training data recorded by a checkpoint that is no data spec rcert reads, naming
    the checkpoint: the spec's own message would read as if the user had given it."""
    if recorded:
        try:
            parse_spec(recorded)
        except RcertError as exc:
            raise RcertError(f"the checkpoint {path} records training data {recorded!r}, which "
                             f"is not a data spec rcert reads ({exc}); pass --data") from None


def radius(model: nn.Module, r: float | None, path: str | os.PathLike[str]) -> float:
    """``r`` if given, else the recommended r the checkpoint records, which must be a
    positive finite number (a damaged one is named as the checkpoint's)."""
    if r is not None:
        return r
    recommended = getattr(model, "meta", {}).get("recommended_r")
    if recommended is None and not traits(model).stochastic:
        raise RcertError(f"{path} is a deterministic autoencoder, which records no recommended "
                         f"r (no r-robustness certificate applies, SPEC section 9): pass the "
                         f"output radius its attacks must exceed (--r, or r in the config)")
    if recommended is None:
        raise RcertError(f"{path} records no recommended r; pass one (--r, or r in the config)")
    if isinstance(recommended, bool) or not isinstance(recommended, numbers.Real) \
            or not 0 < recommended < math.inf:
        raise RcertError(f"the checkpoint {path} recommends r = {recommended!r}, which is not a "
                         "positive finite number; pass one (--r, or r in the config)")
    return float(recommended)


def identity(model: nn.Module, source: ModelSource) -> dict[str, Any]:
    """What a resumable run's key needs to know about the model: its weights' digest and
    how it was read (the same file read with another convention is another model)."""
    described = foreign.describe(model, source)
    # Not the path: a moved model file is the same model.
    return {"weights_sha256": model.meta.get("sha256"),
            **{k: v for k, v in described.items() if k != "path"}}
