"""``rcert inspect``: what rcert sees in a model file, and the result of every model check.

:func:`inspect_model` loads the model as the certifying commands do
(:func:`rcert.runs.loading`), encodes a small probe and runs the model checks of
:mod:`rcert.engine.model_checks` on it, without raising on a failed check: it reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rcert.data import default_eval_spec, load_data
from rcert.engine.model_checks import PROBE, probe, run_checks
from rcert.errors import RcertError
from rcert.models import contract, foreign
from rcert.models.contract import traits
from rcert.source import ModelSource


def _inputs(model: nn.Module, source: ModelSource, data_spec: str | None,
           seed: int) -> tuple[torch.Tensor, str]:
    """Inputs to look at the model with, and where they came from."""
    recorded = model.meta.get("data") if not model.meta.get("foreign") else None
    if data_spec is not None or recorded:
        spec = data_spec or default_eval_spec(recorded, source.path)
        dataset = load_data(spec).subset(PROBE)
        return dataset.x, f"the first {len(dataset)} inputs of {dataset.spec}"
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise RcertError(f"{source.path} does not say its input shape: pass --data or "
                         "--input-shape")
    low, high = traits(model).data_range or (0.0, 1.0)
    generator = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand((PROBE, *shape), generator=generator)
    return x, f"{PROBE} uniform random inputs in [{low:g}, {high:g}] (seed {seed}); pass " \
              "--data to probe with real inputs"


def _sigma_convention(model: nn.Module) -> str:
    kind = getattr(model, "sigma_kind", None)
    if kind is not None:
        return kind
    mode = getattr(model, "sigma_mode", None)
    if mode == "none":
        return "rcert none (a deterministic encoder: z = mu(x), sigma ignored)"
    return f"rcert {mode} (softplus head)" if mode in ("learned", "floor") else \
        f"rcert {mode}" if mode else "sigma"


def inspect_model(source: ModelSource, *, data_spec: str | None = None,
                  device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """What rcert sees in ``source``: format, family, shapes, latent size, data range,
    sigma convention, likelihood, and every model check's result (passed or not).

    Returns a JSON-able dict; ``checks`` is a list of ``{code, passed, message}``.
    """
    model = foreign.load_model(source, device=device)
    x, where = _inputs(model, source, data_spec, seed)
    x = x.to(device=device, dtype=next(model.parameters()).dtype)
    model_traits = traits(model)
    answers = probe(model, x)
    results = run_checks(model, answers, model_traits)
    return {
        "model": foreign.describe(model, source),
        "family": {"encoder": model_traits.encoder,
                   "stochastic_layers": model_traits.stochastic_layers,
                   "input_feeds_upper_layers": model_traits.input_feeds_upper_layers},
        "input_shape": list(x.shape[1:]),
        "latent_dim": answers.latent_dim,
        # A hierarchical model's layer sizes, first (the certified one) to top.
        "layer_dims": contract.layer_dims(model, x),
        "data_range": None if model_traits.data_range is None else list(
            model_traits.data_range),
        "sigma_convention": _sigma_convention(model),
        "likelihood": model_traits.likelihood,
        "probe": where,
        "checks": [{"code": r.code, "passed": r.passed, "message": r.message}
                   for r in results],
    }
