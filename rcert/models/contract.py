"""The model contract: what the engine may assume about a model, and how a model says so.

Every model the engine takes is a ``torch.nn.Module`` with ``encode(x)`` and ``decode(z)``
(SPEC section 1). What else it has is stated by its :class:`ModelTraits`:

* how many stochastic layers its encoder has (SPEC section 8), and whether the input feeds
  the layers above the first;
* whether the encoder is a Gaussian (``encode -> (mu, sigma)``, ``sigma`` a standard
  deviation) or deterministic (``encode -> (mu, sigma)`` with ``sigma`` ignored, SPEC
  section 9);
* its data range (the box perturbed inputs must stay in), if known;
* its likelihood, if known (``bernoulli`` or ``gaussian``; it gives ``log p(x|z)``).

A hierarchical model (SPEC section 8) has two more, optional, parts:

* ``upper_noise_dim``: how many standard normals its layers above the first add to a latent
  code. ``decode`` takes ``(z^1, eta_2, ..., eta_L)`` as well as ``z^1`` alone (the upper
  layers at their chain of means); :func:`noise_dim` and :func:`latent_codes` build them.
* ``context(x)``: what the upper layers need of ``x`` beyond ``z^1`` (``q(z^{i+1}|z^i, x)``),
  passed to ``decode(z, context=...)``; :func:`context` and :func:`decode` pass it on only
  where a model has one, so a one-layer model's ``decode(z)`` is all the engine calls.

A model states its traits with a ``traits`` attribute (a :class:`ModelTraits`); a model
without one, e.g. a wrapped foreign model, is taken as a one-layer Gaussian VAE with the
``data_range`` and ``likelihood`` attributes it happens to have. Certificates are chosen
from the traits alone (:mod:`rcert.engine.certificates`), never by branching on a model's
class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rcert.errors import RcertError
from rcert.source import parse_range

ENCODERS = ("gaussian", "deterministic")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class ModelTraits:
    """What a model has (see the module docstring).

    Parameters
    ----------
    stochastic_layers
        ``L``, the number of stochastic latent layers; 0 for a deterministic encoder.
    encoder
        ``"gaussian"`` or ``"deterministic"``.
    input_feeds_upper_layers
        Whether ``x`` reaches the reconstruction through layers above the first (inference
        ``q(z^{i+1}|z^i, x)`` and a likelihood that sees them); the first-layer certificates
        of SPEC section 8 need it False.
    data_range
        ``(low, high)`` of valid inputs, or None when unknown (attacks then run unboxed).
    likelihood
        ``"bernoulli"``, ``"gaussian"`` or None when the model has no ``log_likelihood``.
    """

    stochastic_layers: int = 1
    encoder: str = "gaussian"
    input_feeds_upper_layers: bool = False
    data_range: tuple[float, float] | None = None
    likelihood: str | None = None

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise RcertError(f"unknown encoder kind {self.encoder!r}; choose one of: "
                             f"{', '.join(ENCODERS)}")
        layers = self.stochastic_layers
        valid = isinstance(layers, int) and not isinstance(layers, bool) and (
            layers == 0 if self.encoder == "deterministic" else layers >= 1)
        if not valid:
            need = "0" if self.encoder == "deterministic" else "an integer >= 1"
            raise RcertError(f"a {self.encoder} encoder has {need} stochastic layers, got "
                             f"{layers!r}")
        if not isinstance(self.input_feeds_upper_layers, bool):
            raise RcertError(f"input_feeds_upper_layers must be True or False, got "
                             f"{self.input_feeds_upper_layers!r}")
        object.__setattr__(self, "data_range", parse_range(self.data_range))
        if self.likelihood is not None and self.likelihood not in LIKELIHOODS:
            raise RcertError(f"unknown likelihood {self.likelihood!r}; choose one of: "
                             f"{', '.join(LIKELIHOODS)}")

    @property
    def stochastic(self) -> bool:
        """Whether the encoder adds noise at all (sections 3-5 need it)."""
        return self.encoder == "gaussian"

    @property
    def perturbation_reaches_first_layer_only(self) -> bool:
        """Whether an input perturbation shifts only the first layer's mean (SPEC section 8)."""
        return self.stochastic and (self.stochastic_layers == 1
                                    or not self.input_feeds_upper_layers)


def traits(model: nn.Module) -> ModelTraits:
    """The traits ``model`` states, or those of a one-layer Gaussian VAE with its attributes."""
    stated = getattr(model, "traits", None)
    if isinstance(stated, ModelTraits):
        return stated
    if stated is not None:
        raise RcertError(f"{type(model).__name__}.traits must be an rcert ModelTraits, got "
                         f"{type(stated).__name__}")
    box = getattr(model, "data_range", None)
    likelihood = getattr(model, "likelihood", None)
    return ModelTraits(
        data_range=box,
        likelihood=likelihood if isinstance(likelihood, str) else None,
    )


def noise_dim(model: nn.Module, latent_dim: int) -> int:
    """Standard normals in one draw of the encoder noise: ``d_1`` plus the upper layers'."""
    extra = getattr(model, "upper_noise_dim", 0)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise RcertError(f"{type(model).__name__}.upper_noise_dim must be an integer >= 0, "
                         f"got {extra!r}")
    return latent_dim + extra


def latent_codes(mu: torch.Tensor, sigma: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """``(mu + eta_1 * sigma, eta_2, ..., eta_L)`` for ``eta`` ``(..., noise_dim)`` and
    ``mu``, ``sigma`` broadcastable to ``(..., d_1)``: the codes ``decode`` takes."""
    d = mu.shape[-1]
    z1 = mu + eta[..., :d] * sigma
    if eta.shape[-1] == d:
        return z1
    return torch.cat((z1, eta[..., d:]), dim=-1)


def posteriors(model: nn.Module, x: torch.Tensor,
               noise: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, ...]]:
    """``(mu, sigma)`` of each stochastic layer at ``x`` (``model.posteriors`` where the
    model has it, else its one layer ``encode(x)``)."""
    method = getattr(model, "posteriors", None)
    return method(x, noise) if callable(method) else [model.encode(x)]


def context(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``model.context(x)`` where the model has one, else None."""
    method = getattr(model, "context", None)
    return method(x) if callable(method) else None


def decode(model: nn.Module, z: torch.Tensor, context: torch.Tensor | None = None
           ) -> torch.Tensor:
    """``model.decode(z)``, with ``context`` for a model whose upper layers need ``x``."""
    return model.decode(z) if context is None else model.decode(z, context=context)


def layer_dims(model: nn.Module, x: torch.Tensor) -> list[int]:
    """The size of each stochastic layer, first to top, read from :func:`posteriors` of one
    input of ``x``."""
    with torch.no_grad():
        return [mu.shape[1] for mu, _ in posteriors(model, x[:1])]


def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``g(mu(x))``, the reconstruction from the chain of means, shaped like ``x``."""
    return decode(model, model.encode(x)[0], context(model, x)).reshape(x.shape)


def require_sigma(model: nn.Module, needs: str, instead: str, *, name: object = "this model"
                  ) -> None:
    """Refuse a deterministic encoder for what needs its sigma (SPEC section 9: such a model
    gets attacks and Jacobian norms, never a statistical quantity computed with
    ``sigma = 0``), in one line: ``needs`` says what needs sigma, ``instead`` what applies,
    ``name`` which model (e.g. its path)."""
    if not traits(model).stochastic:
        raise RcertError(f"{name} is a deterministic autoencoder (its deterministic encoder "
                         f"has no sigma, SPEC section 9) and {needs} needs sigma; {instead}")
