"""Loaders for the checkpoint conventions of VAE libraries, without the library's training code.

Each loader module (one per name of :data:`rcert.source.LIBRARIES`) exposes

* ``detect(path: Path, obj: Any | None) -> bool``: whether ``path`` follows the library's
  convention; ``obj`` is what :func:`rcert.models.statedict.read_torch_file` returned for a
  file, None for a folder;
* ``load(source: ModelSource, obj: Any | None) -> torch.nn.Module``: the model on the CPU in
  eval mode, seen through :func:`rcert.models.adapters.wrap` (``encode -> (mu, sigma)``,
  ``decode -> g(z)``), with ``input_shape``, ``data_range`` and ``meta`` set from the
  library's conventions (``source`` overrides them where it says).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Library name -> the module that reads its convention.
MODULES = {
    "pythae": "rcert.models.libraries.pythae",
    "pytorch-vae": "rcert.models.libraries.pytorch_vae",
    "beta-tcvae": "rcert.models.libraries.beta_tcvae",
}


def loader(name: str) -> ModuleType:
    """The loader module of library ``name`` (imported on first use)."""
    return importlib.import_module(MODULES[name])
