"""rcert's own VAE architectures: a fully connected and a convolutional Gaussian-encoder VAE,
and their deterministic autoencoders (``sigma_mode="none"``, Lu & Chen's DAEs).

The encoder is ``q(z|x) = N(mu(x), diag(sigma(x)^2))`` with ``sigma`` the standard deviation
[C Sec 2.1], or the code ``z = mu(x)`` itself for a deterministic one (SPEC section 9); the
decoder mean ``g(z)`` is the reconstruction. Every architecture is described
completely by the JSON-serialisable dict of :meth:`VAE.config`, so ``build_model(**config)``
rebuilds it (:mod:`rcert.models.architectures`). No BatchNorm or other cross-input coupling
anywhere: per-input Jacobians are taken with ``torch.func.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.models.blocks import ACTIVATIONS, conv_decoder, conv_encoder, mlp_parts
from rcert.models.contract import ModelTraits
from rcert.settings import choice, positive_float, positive_int
from rcert.source import parse_range
from rcert.validate import int_tuple

SIGMA_MODES = ("learned", "floor", "fixed", "none")
LIKELIHOODS = ("bernoulli", "gaussian")

# Keeps sigma strictly positive (the bounds divide by it) even when softplus underflows.
LEARNED_SIGMA_MIN = 1e-4


def standard_normal_kl(mu: Tensor, sigma: Tensor) -> Tensor:
    """``KL(N(mu, diag sigma^2) || N(0, I))`` per row, in closed form."""
    return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(1)


@dataclass(frozen=True)
class ElboTerms:
    """One sample's ELBO terms per input: ``log_likelihood`` ``(B,)``; ``kl`` ``(L, B)``, the
    KL term of each stochastic layer (their sum is the ELBO's KL); ``top``: ``(z, mu, sigma)``
    of the top layer's sample and its Gaussian (what the total correlation is taken of)."""

    log_likelihood: Tensor
    kl: Tensor
    top: tuple[Tensor, Tensor, Tensor]

    @property
    def elbo(self) -> Tensor:
        return self.log_likelihood - self.kl.sum(0)


class VAE(nn.Module):
    """Base class of rcert's architectures: sigma parameterisation, likelihood and config.

    Subclasses build the layers and implement :meth:`_encoder_outputs`,
    :meth:`_decoder_outputs` and :meth:`_layer_config`.

    Parameters
    ----------
    input_shape
        Shape of one input, e.g. ``(1, 28, 28)``.
    latent_dim
        ``d_z``.
    activation
        Hidden non-linearity: one of :data:`ACTIVATIONS`.
    sigma_mode
        ``"learned"``: ``sigma = softplus(s) + 1e-4`` with ``s`` an encoder head;
        ``"floor"``: ``sigma = tau + softplus(s)`` (the minimum-variance ablation, [C Fig 7]);
        ``"fixed"``: ``sigma = fixed_sigma`` for every input and dimension (no sigma head);
        ``"none"``: a deterministic autoencoder, ``z = mu(x)`` (no sigma head; :meth:`encode`
        returns zeros as sigma, which the engine ignores, SPEC section 9).
    tau
        The floor; required (> 0) with ``sigma_mode="floor"`` and only then.
    fixed_sigma
        The constant; required (> 0) with ``sigma_mode="fixed"`` and only then.
    likelihood
        ``"bernoulli"`` (``g(z) = sigmoid(logits)``) or ``"gaussian"``
        (``g(z)`` = decoder output, ``p(x|z) = N(g(z), gaussian_scale^2 I)``).
    gaussian_scale
        Standard deviation of the Gaussian likelihood; unused for Bernoulli.
    data_range
        ``(low, high)`` of valid inputs: ``(0, 1)``, or e.g. ``(-1, 1)`` (Willetts et al.
        rescale all data to it) with a Gaussian likelihood; Bernoulli needs a range in
        ``[0, 1]``.
    """

    arch: ClassVar[str]

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        activation: str = "relu",
        sigma_mode: str = "learned",
        tau: float | None = None,
        fixed_sigma: float | None = None,
        likelihood: str = "bernoulli",
        gaussian_scale: float = 0.1,
        data_range: Sequence[float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.data_range = parse_range(data_range)
        if self.data_range is None:
            raise RcertError("data_range must be low,high, e.g. 0,1 or -1,1; got None")
        self.input_shape = int_tuple(input_shape, "input_shape", allow_empty=False)
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.activation = choice(activation, "activation", tuple(ACTIVATIONS))
        self.sigma_mode = choice(sigma_mode, "sigma_mode", SIGMA_MODES)
        self.likelihood = choice(likelihood, "likelihood", LIKELIHOODS)
        self.gaussian_scale = positive_float(gaussian_scale, "gaussian_scale")
        if self.likelihood == "bernoulli" and not 0.0 <= self.data_range[0] < \
                self.data_range[1] <= 1.0:
            raise RcertError(f"a bernoulli likelihood needs data in [0, 1], got data_range "
                             f"{list(self.data_range)}; use likelihood 'gaussian'")
        # A tau or fixed_sigma that the chosen mode would silently ignore is a user mistake.
        if sigma_mode == "floor":
            self.tau = positive_float(tau, "tau", " (sigma_mode='floor' needs tau > 0)")
        elif tau is not None:
            raise RcertError("tau only applies to sigma_mode='floor'; drop tau or set the mode")
        else:
            self.tau = None
        if sigma_mode == "fixed":
            self.fixed_sigma = positive_float(
                fixed_sigma, "fixed_sigma", " (sigma_mode='fixed' needs fixed_sigma > 0)"
            )
        elif fixed_sigma is not None:
            raise RcertError("fixed_sigma only applies to sigma_mode='fixed'; drop fixed_sigma "
                             "or set the mode")
        else:
            self.fixed_sigma = None

    @property
    def has_sigma_head(self) -> bool:
        """Whether the encoder outputs a pre-activation ``s`` for sigma (learned and floor)."""
        return self.sigma_mode in ("learned", "floor")

    @property
    def deterministic(self) -> bool:
        """Whether the encoder is deterministic (``sigma_mode="none"``): no noise, no KL."""
        return self.sigma_mode == "none"

    @property
    def traits(self) -> ModelTraits:
        """What the engine may assume (:mod:`rcert.models.contract`): one Gaussian layer, or
        none for a deterministic encoder; the data range and likelihood."""
        return ModelTraits(stochastic_layers=0 if self.deterministic else 1,
                           encoder="deterministic" if self.deterministic else "gaussian",
                           data_range=self.data_range, likelihood=self.likelihood)

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``mu`` and the sigma pre-activation ``s`` (``None`` without a sigma head)."""
        raise NotImplementedError

    def _layer_config(self) -> dict[str, Any]:
        """The architecture-specific hyper-parameters, as JSON values."""
        raise NotImplementedError

    def _decoder_outputs(self, z: Tensor) -> Tensor:
        """Raw decoder output ``(B, *input_shape)`` for a checked ``z``."""
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise RcertError(f"inputs must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != len(self.input_shape) + 1:
            raise RcertError(
                f"inputs have shape {tuple(x.shape)} but the model expects "
                f"(batch, {', '.join(map(str, self.input_shape))}); reshape the data"
            )
        dtype = next(self.parameters()).dtype
        if x.dtype != dtype:
            raise RcertError(
                f"inputs are {x.dtype} but the model is {dtype}; convert with x.to({dtype})"
            )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder mean and standard deviation, each ``(B, d_z)`` [C Sec 2.1].

        ``sigma`` is ``softplus(s) + 1e-4`` (learned), ``tau + softplus(s)`` (floor) or the
        constant ``fixed_sigma`` (fixed), so it is > 0 for every input. A deterministic
        encoder (none) returns its code ``z`` as ``mu`` and zeros as ``sigma``: the contract's
        pair, with a sigma that :attr:`traits` tells the engine to ignore (SPEC section 9).
        """
        self._check_input(x)
        mu, s = self._encoder_outputs(x)
        return mu, self._sigma(s, mu)

    def _sigma(self, s: Tensor | None, mu: Tensor) -> Tensor:
        if self.deterministic:
            return torch.zeros_like(mu)
        if s is None:
            return torch.full_like(mu, self.fixed_sigma)
        if self.sigma_mode == "floor":
            return self.tau + F.softplus(s)
        return F.softplus(s) + LEARNED_SIGMA_MIN

    def _check_latent(self, z: Tensor) -> None:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise RcertError(
                f"latent codes have shape {shape} but the model expects (batch, {self.latent_dim})"
            )

    def decode_logits(self, z: Tensor) -> Tensor:
        """Raw decoder output ``(B, *input_shape)`` for ``z`` of shape ``(B, d_z)``."""
        self._check_latent(z)
        return self._decoder_outputs(z)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder mean ``g(z)``, the reconstruction: pixel probabilities for Bernoulli."""
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.likelihood == "bernoulli" else logits

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z)`` per input, summed over pixels, shape ``(B,)``.

        Bernoulli: ``sum x log g + (1 - x) log(1 - g)`` computed from the logits as minus the
        binary cross-entropy, stable for any logit and valid for grey values ``x`` in [0, 1]
        (the continuous relaxation used for MNIST-like data). Gaussian:
        ``sum log N(x; g(z), gaussian_scale^2)`` including the ``-log(2 pi)/2`` constant.
        """
        self._check_input(x)
        return self.log_density(x, self.decode_logits(z))

    def log_density(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p(x|z)`` per input from the decoder's raw output (:meth:`log_likelihood`)."""
        if self.likelihood == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            ll = (
                -0.5 * ((x - logits) / self.gaussian_scale) ** 2
                - math.log(self.gaussian_scale)
                - 0.5 * math.log(2 * math.pi)
            )
        return ll.flatten(1).sum(1)

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None, *,
                   noise: Sequence[Tensor] | None = None, target: Tensor | None = None
                   ) -> ElboTerms:
        """One reparameterised sample's ELBO terms [C Sec 2.1]: ``log p(target|z)`` with
        ``z = mu(x) + sigma(x) * eps``, and the closed-form ``KL(q(z|x) || N(0, I))``::

            KL = 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

        (Kingma & Welling 2014, Eq. 10 and Appendix B). ``eps`` is ``noise[0]`` (one tensor
        per layer: common random numbers for attacks) or comes from ``generator``;
        ``target`` defaults to ``x`` (another target is the output attack's ELBO).

        A deterministic encoder has no noise and no KL: ``z = mu(x)``, nothing is drawn
        (``generator`` and ``noise`` go unused) and ``kl`` is zeros; the KL objective
        (:func:`rcert.models.objectives.elbo`) refuses such a model."""
        mu, sigma = self.encode(x)
        target = x if target is None else target
        if self.deterministic:
            return ElboTerms(self.log_likelihood(target, mu), mu.new_zeros((1, mu.shape[0])),
                             (mu, mu, sigma))
        eps = noise[0] if noise is not None else \
            torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + sigma * eps
        kl = standard_normal_kl(mu, sigma)
        return ElboTerms(self.log_likelihood(target, z), kl[None], (z, mu, sigma))

    def posteriors(self, x: Tensor, noise: Sequence[Tensor] | None = None
                   ) -> list[tuple[Tensor, Tensor]]:
        """``[(mu, sigma)]`` of each stochastic layer's Gaussian at ``x``: one layer here."""
        return [self.encode(x)]

    def config(self) -> dict[str, Any]:
        """Every hyper-parameter as JSON values, including ``"arch"``.

        ``build_model(**model.config())`` rebuilds the same architecture (fresh weights).
        """
        return {
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "latent_dim": self.latent_dim,
            **self._layer_config(),
            "activation": self.activation,
            "sigma_mode": self.sigma_mode,
            "tau": self.tau,
            "fixed_sigma": self.fixed_sigma,
            "likelihood": self.likelihood,
            "gaussian_scale": self.gaussian_scale,
            "data_range": list(self.data_range),
        }


class MLPVAE(VAE):
    """Fully connected VAE: flattened input, shared trunk, then a mu head and a sigma head.

    The decoder mirrors the trunk: ``d_z -> reversed(hidden) -> prod(input_shape)``. With
    ``hidden=()`` encoder mean and decoder are affine maps.
    """

    arch = "mlp"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        hidden: Sequence[int] = (256, 256),
        **options: Any,
    ) -> None:
        super().__init__(input_shape, latent_dim, **options)
        self.hidden = int_tuple(hidden, "hidden", allow_empty=True)
        parts, _ = mlp_parts(self.input_shape, self.hidden, self.activation, self.latent_dim,
                             self.latent_dim, self.has_sigma_head)
        for name, module in parts.items():
            setattr(self, name, module)

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.trunk(x.flatten(1))
        return self.mu_head(h), self.sigma_head(h) if self.has_sigma_head else None

    def _decoder_outputs(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(1, self.input_shape)

    def _layer_config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden)}


class ConvVAE(VAE):
    """Convolutional VAE for ``(C, H, W)`` images.

    Encoder: :func:`conv_encoder`, then one linear layer to ``mu`` and ``s`` (``2 d_z``
    outputs, ``d_z`` with a fixed sigma). Decoder: :func:`conv_decoder`, so odd sides such as
    MNIST's 7 x 7 level round-trip and the output shape always equals the input shape.
    ``channels=(32, 32, 64, 64), dense=512`` on 64 x 64 inputs is the convolutional
    architecture of Chen et al. (2018) that Willetts et al. use, without its batch norm
    (which couples the inputs of a batch in training).
    """

    arch = "conv"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        channels: Sequence[int] = (32, 64),
        dense: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(input_shape, latent_dim, **options)
        self.channels = int_tuple(channels, "channels", allow_empty=False)
        self.dense = None if dense is None else positive_int(dense, "dense")
        self.encoder_convs, flat, sides = conv_encoder(self.input_shape, self.channels,
                                                       self.activation, self.dense)
        n_heads = 2 if self.has_sigma_head else 1
        self.encoder_head = nn.Linear(flat, n_heads * self.latent_dim)
        self.decoder = conv_decoder(self.latent_dim, self.input_shape[0], self.channels, sides,
                                    self.activation, self.dense)

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.encoder_head(self.encoder_convs(x))
        if not self.has_sigma_head:
            return out, None
        return out[:, : self.latent_dim], out[:, self.latent_dim :]

    def _decoder_outputs(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def _layer_config(self) -> dict[str, Any]:
        # An architecture without the dense layer keeps the config it always had.
        return {"channels": list(self.channels),
                **({} if self.dense is None else {"dense": self.dense})}
