"""Checks of a model's behaviour on a few inputs before certifying it (see :mod:`rcert.checks`).

They catch glue mistakes that would otherwise certify silently: an encoder that samples or
keeps dropout on in eval mode, rows coupled across the batch, a decoder that returns logits
where the data range says probabilities. Each issues a reliability warning, never an error:
the numbers are still computed, and the warning travels with them.
"""

from __future__ import annotations

import torch
from torch import nn

from rcert import checks
from rcert.models.contract import ModelTraits

# Inputs the checks run on: enough to see batch coupling, cheap next to any certificate.
_PROBE = 4
# Relative differences below this are float rounding of different batch shapes.
_RTOL = 1e-4


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) <= _RTOL * scale


@torch.no_grad()
def check_model(model: nn.Module, x: torch.Tensor, model_traits: ModelTraits) -> None:
    """Warn about non-determinism, batch coupling and out-of-range reconstructions."""
    probe = x[:_PROBE]
    mu, sigma = model.encode(probe)
    mu_again, sigma_again = model.encode(probe)
    g = model.decode(mu)
    if not (_close(mu, mu_again) and _close(sigma, sigma_again)
            and _close(g, model.decode(mu))):
        checks.warn("nondeterministic",
                    "encode/decode gave different outputs for the same input in eval mode "
                    "(sampling inside encode, or dropout that eval() does not switch off); "
                    "encode must return the mean and sigma, decode the mean g(z)")
    elif probe.shape[0] > 1:
        alone = torch.cat([model.encode(probe[i:i + 1])[0] for i in range(probe.shape[0])])
        if not _close(mu, alone):
            checks.warn("batch-coupling",
                        "an input's encoding depends on the other inputs of its batch "
                        "(BatchNorm in train mode, or batch statistics); per-input "
                        "Jacobians and rows are then wrong: put such layers in eval mode")
    if model_traits.data_range is not None:
        lo, hi = model_traits.data_range
        g_min, g_max = float(g.min()), float(g.max())
        slack = 1e-3 * (hi - lo)
        if g_min < lo - slack or g_max > hi + slack:
            checks.warn("decoder-range",
                        f"reconstructions span [{g_min:.3g}, {g_max:.3g}] outside the data "
                        f"range [{lo:g}, {hi:g}]; decode must return the decoder mean (for a "
                        f"Bernoulli decoder the probabilities, not the logits)")
