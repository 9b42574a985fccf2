"""Hierarchical VAEs with L stochastic layers: the Seatbelt-VAE and the DLGM (Willetts et al.).

Inference (spec section 2.6; SPEC section 8)::

    z^1 = mu_1(x) + s_1(x) * eta_1
    z^{i+1} = mu_{i+1}(z^i[, h(x)]) + s_{i+1}(z^i[, h(x)]) * eta_{i+1}

``inference="input"`` is ``q(z^{i+1} | z^i, x)`` (the ICLR version; ``h(x)`` is the encoder
trunk's feature vector, concatenated with ``z^i``), ``inference="chain"`` is
``q(z^{i+1} | z^i)`` (the earlier version). The generative model is
``p(x | z) prod_i p(z^i | z^{i+1}) p(z^L)`` with ``p(z^L) = N(0, I)``; the likelihood sees
every layer (``likelihood_on="all"``, the Seatbelt-VAE: the layers are concatenated as the
decoder's input) or ``z^1`` only (``"first"``, the DLGM baseline). The conditionals are MLPs
with Leaky-ReLU; the paper adds batch norm, left out here because it couples the inputs of a
batch and per-input Jacobians need them independent.

The engine's view (the model contract): :meth:`encode` gives the first layer's
``(mu_1, s_1)``, the only layer a perturbation of ``x`` reaches directly. The upper layers'
standard-normal noise ``eta_2 .. eta_L`` is appended to the latent code: :meth:`decode` takes
``z^1`` alone (the upper layers at their chain of means, the reference reconstruction) or
``(z^1, eta_2, ..., eta_L)``, so Monte Carlo over all layers' noise is a draw of
``upper_noise_dim`` more standard normals. With ``inference="input"`` the upper layers also
need ``h(x)``: :meth:`context` gives it and :meth:`decode` takes it as ``context``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.models.blocks import conv_decoder, conv_encoder, mlp_parts, mlp_stack
from rcert.models.contract import ModelTraits
from rcert.models.nets import LEARNED_SIGMA_MIN, VAE, ElboTerms, standard_normal_kl
from rcert.settings import choice, positive_int
from rcert.validate import int_tuple

INFERENCES = ("input", "chain")
LIKELIHOOD_ON = ("all", "first")
BASES = ("mlp", "conv")
#: Most stochastic layers a model may have (the paper uses up to 5).
MAX_LAYERS = 8
_LOG_2PI = math.log(2 * math.pi)


def log_normal(z: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """``log N(z | mu, diag sigma^2)`` per row."""
    return (-0.5 * ((z - mu) / sigma) ** 2 - sigma.log() - 0.5 * _LOG_2PI).sum(1)


class HierarchicalVAE(VAE):
    """A VAE with ``1 + len(upper_dims)`` stochastic layers (module docstring).

    Parameters
    ----------
    latent_dim
        ``d_1``, the first (bottom) layer's size: what :meth:`encode` returns.
    upper_dims
        Sizes ``d_2 .. d_L`` of the layers above it, bottom to top; ``()`` is a one-layer
        VAE (then a Seatbelt-VAE is a beta-TCVAE, spec section 2.6).
    base
        The encoder trunk and decoder: ``"mlp"`` (widths ``hidden``) or ``"conv"``
        (``channels`` and an optional ``dense`` layer), as :class:`rcert.models.nets.MLPVAE`
        and ``ConvVAE`` build them.
    conditional_hidden
        Hidden widths of the conditional MLPs ``q(z^{i+1}|...)`` and ``p(z^i|z^{i+1})``.
    inference
        ``"input"``: ``q(z^{i+1} | z^i, x)``; ``"chain"``: ``q(z^{i+1} | z^i)``.
    likelihood_on
        ``"all"``: ``p(x | z^1, ..., z^L)`` (Seatbelt-VAE); ``"first"``: ``p(x | z^1)`` (DLGM).
    **options
        The options every rcert VAE takes (:class:`rcert.models.nets.VAE`); ``sigma_mode``
        applies to the first layer, the upper ones learn theirs (``"none"`` is refused: the
        layers are Gaussian).
    """

    arch = "hierarchical"

    def __init__(self, input_shape: Sequence[int], latent_dim: int, *,
                 upper_dims: Sequence[int] = (4,), base: str = "mlp",
                 hidden: Sequence[int] | None = None, channels: Sequence[int] | None = None,
                 dense: int | None = None, conditional_hidden: Sequence[int] = (64, 64),
                 inference: str = "input", likelihood_on: str = "all", **options: Any) -> None:
        if options.get("sigma_mode") == "none":
            raise RcertError("a hierarchical VAE needs Gaussian layers: sigma_mode 'none' (a "
                             "deterministic encoder) does not apply; use learned, floor or fixed")
        super().__init__(input_shape, latent_dim, **options)
        self.upper_dims = int_tuple(upper_dims, "upper_dims", allow_empty=True)
        if len(self.upper_dims) + 1 > MAX_LAYERS:
            raise RcertError(f"a hierarchical VAE has at most {MAX_LAYERS} stochastic layers, "
                             f"got {len(self.upper_dims) + 1}; pass fewer upper_dims")
        self.base = choice(base, "base", BASES)
        self.inference = choice(inference, "inference", INFERENCES)
        self.likelihood_on = choice(likelihood_on, "likelihood_on", LIKELIHOOD_ON)
        self.conditional_hidden = int_tuple(conditional_hidden, "conditional_hidden",
                                            allow_empty=True)
        width = self._build_base(hidden, channels, dense)
        dims = self.dims
        context = width if self.inference == "input" else 0
        leaky = nn.LeakyReLU
        self.q_nets = nn.ModuleList(
            mlp_stack([d + context, *self.conditional_hidden, 2 * d_up], leaky,
                      last_activation=False) for d, d_up in itertools.pairwise(dims))
        self.p_nets = nn.ModuleList(
            mlp_stack([d_up, *self.conditional_hidden, 2 * d], leaky, last_activation=False)
            for d, d_up in itertools.pairwise(dims))

    def _build_base(self, hidden: Sequence[int] | None, channels: Sequence[int] | None,
                    dense: int | None) -> int:
        """The trunk, first-layer heads and decoder; the trunk's feature width."""
        wrong = {"channels": channels, "dense": dense} if self.base == "mlp" else \
            {"hidden": hidden}
        for name, value in wrong.items():
            if value is not None:
                raise RcertError(f"{name} does not apply to base {self.base!r}; drop it or "
                                 f"change the base")
        self.dense = None if dense is None else positive_int(dense, "dense")
        n_heads = 2 if self.has_sigma_head else 1
        decoder_in = sum(self.dims) if self.likelihood_on == "all" else self.latent_dim
        if self.base == "mlp":
            self.hidden = int_tuple((256, 256) if hidden is None else hidden, "hidden",
                                    allow_empty=True)
            parts, width = mlp_parts(self.input_shape, self.hidden, self.activation,
                                     self.latent_dim, decoder_in, self.has_sigma_head)
            for name, module in parts.items():
                setattr(self, name, module)
            return width
        self.channels = int_tuple((32, 64) if channels is None else channels, "channels",
                                  allow_empty=False)
        self.encoder_convs, width, sides = conv_encoder(self.input_shape, self.channels,
                                                        self.activation, self.dense)
        self.encoder_head = nn.Linear(width, n_heads * self.latent_dim)
        self.decoder = conv_decoder(decoder_in, self.input_shape[0], self.channels, sides,
                                    self.activation, self.dense)
        return width

    @property
    def dims(self) -> tuple[int, ...]:
        """``(d_1, ..., d_L)``."""
        return (self.latent_dim, *self.upper_dims)

    @property
    def traits(self) -> ModelTraits:
        # The DLGM's reconstruction sees z^1 only, so x reaches it through the first layer
        # alone, whatever the inference network (SPEC section 8).
        return ModelTraits(
            stochastic_layers=len(self.dims), data_range=self.data_range,
            likelihood=self.likelihood,
            input_feeds_upper_layers=self._sees_upper and self.inference == "input")

    @property
    def _sees_upper(self) -> bool:
        return self.likelihood_on == "all" and bool(self.upper_dims)

    @property
    def upper_noise_dim(self) -> int:
        """How many standard normals the upper layers add to a latent code (0: none reach
        the reconstruction)."""
        return sum(self.upper_dims) if self._sees_upper else 0

    def features(self, x: Tensor) -> Tensor:
        """``h(x)``, the encoder trunk's output, ``(B, width)``."""
        self._check_input(x)
        return self.trunk(x.flatten(1)) if self.base == "mlp" else self.encoder_convs(x)

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.base == "mlp":
            return self.mu_head(h), self.sigma_head(h) if self.has_sigma_head else None
        out = self.encoder_head(h)
        if not self.has_sigma_head:
            return out, None
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._heads(self.features(x))

    def context(self, x: Tensor) -> Tensor | None:
        """What the upper layers need of ``x`` beyond ``z^1``: ``h(x)`` with
        ``inference="input"`` when they reach the reconstruction, else None."""
        return self.features(x) if self.traits.input_feeds_upper_layers else None

    def conditional(self, i: int, z: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(mu, sigma)`` of ``q(z^{i+2} | z^{i+1}[, x])`` (``i`` counts from 0)."""
        inp = torch.cat((z, h), dim=1) if self.inference == "input" else z
        return self._gaussian(self.q_nets[i](inp))

    @staticmethod
    def _gaussian(out: Tensor) -> tuple[Tensor, Tensor]:
        mu, s = out.chunk(2, dim=1)
        return mu, F.softplus(s) + LEARNED_SIGMA_MIN

    def layers(self, z1: Tensor, eta: Tensor | None, h: Tensor | None) -> list[Tensor]:
        """``[z^1, ..., z^L]`` from ``z^1`` and the upper noise ``eta`` ``(B, sum d_2..)``
        (None: the chain of means)."""
        if self.inference == "input" and self.upper_dims and h is None:
            raise RcertError("this hierarchical VAE feeds x to its upper layers: pass "
                             "context=model.context(x) with the latent codes")
        noise = eta.split(self.upper_dims, dim=1) if eta is not None else ()

        def draw(i: int, mu: Tensor) -> Tensor | None:
            # z^1 is given (its "mean", nothing drawn); above it, the given noise or none.
            return noise[i - 1] if i and noise else None
        return self._chain((z1, None), h, draw)[0]

    def _check_latent(self, z: Tensor) -> None:
        widths = {self.latent_dim, self.latent_dim + self.upper_noise_dim}
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] not in widths:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise RcertError(f"latent codes have shape {shape} but the model expects (batch, "
                             f"{' or '.join(map(str, sorted(widths)))})")

    def decode_logits(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Raw decoder output for codes ``z^1`` or ``(z^1, eta_2, ..., eta_L)`` (module
        docstring); ``context`` is :meth:`context` of the inputs the codes came from."""
        self._check_latent(z)
        if not self._sees_upper:
            return self._decode_layers([z])
        z1, eta = z[:, :self.latent_dim], z[:, self.latent_dim:]
        return self._decode_layers(self.layers(z1, eta if eta.shape[1] else None, context))

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """The reconstruction ``g`` (:meth:`decode_logits`; probabilities for Bernoulli)."""
        logits = self.decode_logits(z, context)
        return torch.sigmoid(logits) if self.likelihood == "bernoulli" else logits

    def _decode_layers(self, zs: list[Tensor]) -> Tensor:
        inp = torch.cat(zs, dim=1) if self.likelihood_on == "all" else zs[0]
        out = self.decoder(inp)
        return out.unflatten(1, self.input_shape) if self.base == "mlp" else out

    def _ancestral(self, x: Tensor, draw: Callable[[int, Tensor], Tensor | None]
                   ) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
        """Layers ``z^1 .. z^L`` and their Gaussians along the chain; ``draw(i, mu)`` gives
        layer ``i``'s standard noise, or None for its mean."""
        h = self.features(x)
        mu, s = self._heads(h)
        return self._chain((mu, self._sigma(s, mu)), h, draw)

    def _chain(self, first: tuple[Tensor, Tensor | None], h: Tensor | None,
               draw: Callable[[int, Tensor], Tensor | None]
               ) -> tuple[list[Tensor], list[tuple[Tensor, Tensor | None]]]:
        """The chain from the first layer's Gaussian ``first``: each layer's sample
        (``draw(i, mu)`` its standard noise, None for the mean) and Gaussian."""
        mu, sigma = first
        posteriors, zs = [], []
        for i in range(len(self.dims)):
            if i:
                mu, sigma = self.conditional(i - 1, zs[-1], h)
            eps = draw(i, mu)
            zs.append(mu if eps is None else mu + sigma * eps)
            posteriors.append((mu, sigma))
        return zs, posteriors

    def posteriors(self, x: Tensor, noise: Sequence[Tensor] | None = None
                   ) -> list[tuple[Tensor, Tensor]]:
        """``(mu_i, sigma_i)`` of each layer's Gaussian ``q(z^i | z^{i-1}[, x])`` at ``x``,
        the parents at their chain of means, or at ``mu + sigma * noise[i]`` (fixed-noise
        samples; spec section 3.4, the per-layer divergence choice)."""
        return self._ancestral(x, lambda i, mu: None if noise is None else noise[i])[1]

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None, *,
                   noise: Sequence[Tensor] | None = None, target: Tensor | None = None
                   ) -> ElboTerms:
        """One ancestral sample's ELBO terms (spec section 2.6, "training loss")::

            KL_i = log q(z^i | .) - log p(z^i | z^{i+1})   for i < L  (one-sample estimate)
            KL_L = KL(q(z^L | .) || N(0, I))               (closed form)

        ``log p(target | z)`` (``target`` defaults to ``x``) sees every layer (Seatbelt) or
        ``z^1`` (DLGM). The noise is ``noise`` (one tensor per layer) or comes from
        ``generator``, layer by layer. With ``L = 1`` this is exactly
        :meth:`rcert.models.nets.VAE.elbo_terms`.
        """
        def draw(i: int, mu: Tensor) -> Tensor:
            return noise[i] if noise is not None else torch.randn(
                mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        zs, posteriors = self._ancestral(x, draw)
        kl = [log_normal(zs[i], *posteriors[i])
              - log_normal(zs[i], *self._gaussian(self.p_nets[i](zs[i + 1])))
              for i in range(len(self.upper_dims))]
        kl.append(standard_normal_kl(*posteriors[-1]))
        ll = self.log_density(x if target is None else target, self._decode_layers(zs))
        return ElboTerms(ll, torch.stack(kl), (zs[-1], *posteriors[-1]))

    def _layer_config(self) -> dict[str, Any]:
        widths = {"hidden": list(self.hidden)} if self.base == "mlp" else \
            {"channels": list(self.channels),
             **({} if self.dense is None else {"dense": self.dense})}
        return {"upper_dims": list(self.upper_dims), "base": self.base, **widths,
                "conditional_hidden": list(self.conditional_hidden),
                "inference": self.inference, "likelihood_on": self.likelihood_on}
