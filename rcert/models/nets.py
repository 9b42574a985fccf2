"""rcert's own VAE architectures: a fully connected and a convolutional Gaussian-encoder VAE.

The encoder is ``q(z|x) = N(mu(x), diag(sigma(x)^2))`` with ``sigma`` the standard deviation
[C Sec 2.1]; the decoder mean ``g(z)`` is the reconstruction. Every architecture is described
completely by the JSON-serialisable dict of :meth:`VAE.config`, so ``build_model(**config)``
rebuilds it (checkpoints store only that dict and the weights). There is no BatchNorm or other
cross-input coupling anywhere: per-input Jacobians are taken with ``torch.func.vmap``.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rcert.errors import RcertError
from rcert.reading import FileLimits
from rcert.settings import choice, positive_float, positive_int
from rcert.validate import int_tuple

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}
SIGMA_MODES = ("learned", "floor", "fixed")
LIKELIHOODS = ("bernoulli", "gaussian")

# Keeps sigma strictly positive (the bounds divide by it) even when softplus underflows.
LEARNED_SIGMA_MIN = 1e-4


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
        ``"fixed"``: ``sigma = fixed_sigma`` for every input and dimension (no sigma head).
    tau
        The floor; required (> 0) with ``sigma_mode="floor"`` and only then.
    fixed_sigma
        The constant; required (> 0) with ``sigma_mode="fixed"`` and only then.
    likelihood
        ``"bernoulli"`` (``g(z) = sigmoid(logits)``) or ``"gaussian"``
        (``g(z)`` = decoder output, ``p(x|z) = N(g(z), gaussian_scale^2 I)``).
    gaussian_scale
        Standard deviation of the Gaussian likelihood; unused for Bernoulli.
    """

    arch: ClassVar[str]
    data_range: tuple[float, float] = (0.0, 1.0)

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
    ) -> None:
        super().__init__()
        self.input_shape = int_tuple(input_shape, "input_shape", allow_empty=False)
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.activation = choice(activation, "activation", tuple(ACTIVATIONS))
        self.sigma_mode = choice(sigma_mode, "sigma_mode", SIGMA_MODES)
        self.likelihood = choice(likelihood, "likelihood", LIKELIHOODS)
        self.gaussian_scale = positive_float(gaussian_scale, "gaussian_scale")
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
            raise RcertError(
                "fixed_sigma only applies to sigma_mode='fixed'; drop fixed_sigma or set the mode"
            )
        else:
            self.fixed_sigma = None

    @property
    def has_sigma_head(self) -> bool:
        """Whether the encoder outputs a pre-activation ``s`` for sigma (all modes but fixed)."""
        return self.sigma_mode != "fixed"

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
        constant ``fixed_sigma`` (fixed), so it is > 0 for every input.
        """
        self._check_input(x)
        mu, s = self._encoder_outputs(x)
        if s is None:
            sigma = torch.full_like(mu, self.fixed_sigma)
        elif self.sigma_mode == "floor":
            sigma = self.tau + F.softplus(s)
        else:
            sigma = F.softplus(s) + LEARNED_SIGMA_MIN
        return mu, sigma

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
        logits = self.decode_logits(z)
        if self.likelihood == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            ll = (
                -0.5 * ((x - logits) / self.gaussian_scale) ** 2
                - math.log(self.gaussian_scale)
                - 0.5 * math.log(2 * math.pi)
            )
        return ll.flatten(1).sum(1)

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
        }


def _mlp(widths: Sequence[int], activation: type[nn.Module], *, last_activation: bool) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if last_activation or i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


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
        act = ACTIVATIONS[self.activation]
        n_in = math.prod(self.input_shape)
        width = self.hidden[-1] if self.hidden else n_in
        self.trunk = _mlp([n_in, *self.hidden], act, last_activation=True)
        self.mu_head = nn.Linear(width, self.latent_dim)
        if self.has_sigma_head:
            self.sigma_head = nn.Linear(width, self.latent_dim)
        self.decoder = _mlp(
            [self.latent_dim, *reversed(self.hidden), n_in], act, last_activation=False
        )

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.trunk(x.flatten(1))
        return self.mu_head(h), self.sigma_head(h) if self.has_sigma_head else None

    def _decoder_outputs(self, z: Tensor) -> Tensor:
        return self.decoder(z).unflatten(1, self.input_shape)

    def _layer_config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden)}


class ConvVAE(VAE):
    """Convolutional VAE for ``(C, H, W)`` images.

    Encoder: per entry of ``channels`` a kernel-4 stride-2 padding-1 convolution, which maps
    a side ``n`` to ``floor(n / 2)``, then one linear layer to ``mu`` and ``s`` (``2 d_z``
    outputs, ``d_z`` with a fixed sigma). Decoder: a linear layer back to the smallest map,
    then mirrored transposed convolutions; each restores the exact side it mirrors through
    ``output_padding`` (0 or 1), so odd sides such as MNIST's 7 x 7 level round-trip and the
    output shape always equals the input shape.
    """

    arch = "conv"

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int,
        *,
        channels: Sequence[int] = (32, 64),
        **options: Any,
    ) -> None:
        super().__init__(input_shape, latent_dim, **options)
        self.channels = int_tuple(channels, "channels", allow_empty=False)
        if len(self.input_shape) != 3:
            raise RcertError(
                f"the conv architecture needs input_shape (C, H, W), got {list(self.input_shape)}"
                "; use arch 'mlp' for other shapes"
            )
        c_in, height, width = self.input_shape
        sides = [(height, width)]
        for _ in self.channels:
            sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
        if min(sides[-1]) < 1:
            raise RcertError(
                f"input {height}x{width} is too small for {len(self.channels)} stride-2 "
                "convolutions; use fewer channels entries"
            )
        act = ACTIVATIONS[self.activation]
        encoder: list[nn.Module] = []
        for c_prev, c_next in zip((c_in, *self.channels[:-1]), self.channels, strict=True):
            encoder += [nn.Conv2d(c_prev, c_next, 4, stride=2, padding=1), act()]
        self.encoder_convs = nn.Sequential(*encoder, nn.Flatten(1))
        flat = self.channels[-1] * sides[-1][0] * sides[-1][1]
        n_heads = 2 if self.has_sigma_head else 1
        self.encoder_head = nn.Linear(flat, n_heads * self.latent_dim)
        decoder: list[nn.Module] = [
            nn.Linear(self.latent_dim, flat),
            act(),
            nn.Unflatten(1, (self.channels[-1], *sides[-1])),
        ]
        c_out = (c_in, *self.channels[:-1])
        for level in reversed(range(len(self.channels))):
            (h_big, w_big), (h_small, w_small) = sides[level], sides[level + 1]
            decoder.append(
                nn.ConvTranspose2d(
                    self.channels[level],
                    c_out[level],
                    4,
                    stride=2,
                    padding=1,
                    output_padding=(h_big - 2 * h_small, w_big - 2 * w_small),
                )
            )
            if level > 0:
                decoder.append(act())
        self.decoder = nn.Sequential(*decoder)

    def _encoder_outputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.encoder_head(self.encoder_convs(x))
        if not self.has_sigma_head:
            return out, None
        return out[:, : self.latent_dim], out[:, self.latent_dim :]

    def _decoder_outputs(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def _layer_config(self) -> dict[str, Any]:
        return {"channels": list(self.channels)}


ARCHITECTURES: dict[str, type[VAE]] = {"mlp": MLPVAE, "conv": ConvVAE}


def build_model(arch: str, **hparams: Any) -> VAE:
    """Build an rcert architecture by name; ``build_model(**model.config())`` rebuilds a model.

    Parameters
    ----------
    arch
        A key of :data:`ARCHITECTURES` (``"mlp"`` or ``"conv"``).
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
