"""The registry of rcert's own architectures, and the one function that builds them.

``build_model(**model.config())`` rebuilds any of them: checkpoints store only that dict
and the weights.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from rcert.errors import RcertError
from rcert.models.hierarchical import HierarchicalVAE
from rcert.models.nets import MLPVAE, VAE, ConvVAE
from rcert.reading import FileLimits

ARCHITECTURES: dict[str, type[VAE]] = {"mlp": MLPVAE, "conv": ConvVAE,
                                       "hierarchical": HierarchicalVAE}


def build_model(arch: str, **hparams: Any) -> VAE:
    """Build an rcert architecture by name; ``build_model(**model.config())`` rebuilds a model.

    Parameters
    ----------
    arch
        A key of :data:`ARCHITECTURES` (``"mlp"``, ``"conv"`` or ``"hierarchical"``).
    **hparams
        The architecture's keyword arguments (``input_shape`` and ``latent_dim`` required).

    Raises
    ------
    RcertError
        Unknown architecture, unknown or missing hyper-parameter, or a bad value.
    """
    cls = ARCHITECTURES.get(arch) if isinstance(arch, str) else None
    if cls is None:
        raise RcertError(
            f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}"
        )
    # The architecture's own parameters, then the options every VAE shares (its **options).
    params = {
        name: p
        for klass in (cls, VAE)
        for name, p in inspect.signature(klass).parameters.items()
        if p.kind is not p.VAR_KEYWORD
    }
    unknown = sorted(set(hparams) - set(params))
    missing = [n for n, p in params.items() if p.default is p.empty and n not in hparams]
    if unknown or missing:
        problem = f"unknown {unknown}" if unknown else f"missing {missing}"
        raise RcertError(
            f"bad hyper-parameters for arch {arch!r}: {problem}; valid ones are {list(params)}"
        )
    _check_size(cls, arch, hparams)
    return cls(**hparams)


def _check_size(cls: type[VAE], arch: str, hparams: dict[str, Any]) -> None:
    """Refuse, before any weight is allocated, an architecture larger than the checkpoints
    rcert reads (:class:`rcert.reading.FileLimits`): it could not be saved and read back,
    and allocating it could take the machine's memory."""
    with torch.device("meta"):  # shapes only: no memory for the weights
        shapes = cls(**hparams)
    n_params = sum(p.numel() for p in shapes.parameters())
    limit = FileLimits.from_env().file_mb
    if n_params * 4 > limit * 2**20:
        raise RcertError(
            f"architecture {arch!r} with {hparams} has {n_params:.3g} parameters "
            f"({n_params * 4 / 2**20:.4g} MB), more than the {limit:g} MB of a checkpoint "
            f"rcert reads; choose smaller layers (e.g. --hidden) or raise RCERT_MAX_FILE_MB")
