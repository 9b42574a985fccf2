"""What attacks maximise: the distortion ``||Delta(x, d)||`` under a threat model and
its objectives (expected damage [C Eq 5], a smooth exceedance surrogate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rcert.engine.montecarlo import distances
from rcert.models import contract
from rcert.settings import ThreatModel


@dataclass
class Encoded:
    """The clean point an attack starts from: ``mu(x)``, ``sigma(x)``, ``g(mu(x))`` and the
    model's context of ``x`` (None for all but some hierarchical models,
    :func:`rcert.models.contract.context`)."""

    mu: torch.Tensor
    sigma: torch.Tensor
    reference: torch.Tensor
    context: torch.Tensor | None = None

    @classmethod
    def of(cls, model: nn.Module, x: torch.Tensor) -> Encoded:
        with torch.no_grad():
            mu, sigma = model.encode(x)
            context = contract.context(model, x)
            return cls(mu, sigma, contract.decode(model, mu, context).flatten(1), context)

    def _tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.mu, self.sigma, self.reference, self.context)

    @classmethod
    def each(cls, model: nn.Module, x: torch.Tensor) -> Encoded:
        """As :meth:`of`, one input at a time: bit for bit what the input gives alone, which a
        batched matmul does not promise (its rounding may depend on the batch size)."""
        parts = [cls.of(model, x[i:i + 1]) for i in range(x.shape[0])]
        return cls(*(None if ts[0] is None else torch.cat(ts)
                     for ts in zip(*(p._tensors() for p in parts), strict=True)))

    def repeat(self, times: int) -> Encoded:
        return Encoded(*(None if t is None else t.repeat_interleave(times, dim=0)
                         for t in self._tensors()))

    def select(self, rows: torch.Tensor) -> Encoded:
        return Encoded(*(None if t is None else t[rows] for t in self._tensors()))


def at_threat(model: nn.Module, x_adv: torch.Tensor, clean: Encoded, threat: ThreatModel
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(mu', sigma', context')``: the encoder's outputs at ``x + d`` where ``threat``
    reaches them, at ``x`` elsewhere (SPEC section 2). A hierarchical model's context (what
    its upper means see of ``x``) moves with the mean."""
    mu_adv, sigma_adv = model.encode(x_adv)
    moved = threat.moves_mean and clean.context is not None
    return (mu_adv if threat.moves_mean else clean.mu,
            sigma_adv if threat.moves_sigma else clean.sigma,
            contract.context(model, x_adv) if moved else clean.context)


def distortion(model: nn.Module, x_adv: torch.Tensor, clean: Encoded, eta: torch.Tensor,
               threat: ThreatModel) -> torch.Tensor:
    """``||Delta(x, d)||`` at ``x_adv = x + d`` for each noise draw: ``(B, K)``.

    ``Delta = g(mu' + eta sigma') - g(mu(x))`` with ``mu'``, ``sigma'`` taken at ``x + d``
    or at ``x`` according to ``threat`` (SPEC section 2; ``both`` is [C Eq 5]).
    """
    mu, sigma, context = at_threat(model, x_adv, clean, threat)
    return distances(model, mu, sigma, eta, clean.reference, context)


def expected_damage(dist: torch.Tensor) -> torch.Tensor:
    """The maximum-damage objective [C Eq 5]: the mean distortion over the draws."""
    return dist.mean(dim=1)


#: Temperature of the exceedance surrogate, as a share of ``r``.
EXCEEDANCE_TEMPERATURE = 0.1


def exceedance(r: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth surrogate of ``P(||Delta|| > r)``: the mean of ``sigmoid((||Delta|| - r) / T)``
    with ``T = EXCEEDANCE_TEMPERATURE * r``.

    Steps are normalised, so only the direction of its gradient matters; the draws
    nearest to ``r`` dominate it, which is what moving ``P(||Delta|| <= r)`` needs.
    """
    temperature = EXCEEDANCE_TEMPERATURE * r

    def objective(dist: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((dist - r) / temperature).mean(dim=1)
    return objective
