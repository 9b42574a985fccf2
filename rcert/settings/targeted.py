"""The settings of the targeted attacks of Willetts et al. (spec section 3): which attack,
on which layers, and the lambda-sweep protocol it runs under."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from rcert.errors import RcertError
from rcert.settings.fields import field_help, set_field
from rcert.values import check_seed, choice, positive_int

#: The attacks: latent KL and 2-Wasserstein (E1), the output attack as the ELBO of the target
#: with the sign fixed (E2), and the L2-to-target output attack of the earlier version.
TARGETED_KINDS = ("kl", "w2", "output-elbo", "output-l2")
#: Which layers of a hierarchical VAE a latent attack matches (App D); one layer: all alike.
TARGET_LAYERS = ("all", "bottom", "top")
#: The parents of the layers above the first in the per-layer divergence (spec 3.4).
LAYER_CHAINS = ("means", "samples")
PENALTIES = ("l2", "l2_squared")


@dataclass(frozen=True)
class TargetedConfig:
    """A targeted attack and its protocol: L-BFGS-B on
    ``Delta(d) = r(x + d, x_t) + lambda * ||d||`` for each input-target pair and each
    ``lambda`` of a geometric grid (spec section 3.5), inside the data box."""

    kind: str = field(default="kl", metadata=field_help(
        "The attack: kl or w2 (latent), output-elbo or output-l2 (output).",
        choices=TARGETED_KINDS))
    w2_squared: bool = field(default=False, metadata=field_help(
        "Use W2 squared in the w2 attack (the paper does not say which)."))
    penalty: str = field(default="l2", metadata=field_help(
        "Penalty on the distortion: l2 (as the paper writes it) or l2_squared.",
        choices=PENALTIES))
    layers: str = field(default="all", metadata=field_help(
        "Layers of a hierarchical VAE a latent attack matches: all, bottom or top.",
        choices=TARGET_LAYERS))
    chain: str = field(default="means", metadata=field_help(
        "Parents of the upper layers' posteriors: their means, or fixed-noise samples.",
        choices=LAYER_CHAINS))
    pairs: int = field(default=10, metadata=field_help("Input-target pairs drawn."))
    lambdas: int = field(default=50, metadata=field_help(
        "Penalty weights, geometric from 2^lambda_low to 2^lambda_high."))
    lambda_low: float = field(default=-20.0, metadata=field_help(
        "log2 of the smallest penalty weight."))
    lambda_high: float = field(default=20.0, metadata=field_help(
        "log2 of the largest penalty weight."))
    lambda_values: tuple[float, ...] = field(default=(), metadata=field_help(
        "Explicit penalty weights (> 0) instead of the grid (repeatable)."))
    max_iter: int = field(default=100, metadata=field_help("L-BFGS-B iterations per attack."))
    n_noise: int = field(default=8, metadata=field_help(
        "Common random draws of a stochastic objective (output-elbo, chain samples)."))
    different_label: bool = field(default=False, metadata=field_help(
        "Draw each target from another label than its input (the downstream attack)."))
    seed: int = field(default=0, metadata=field_help(
        "Seeds the pairs and the common draws."))

    def __post_init__(self) -> None:
        set_field(self, "kind", choice(self.kind, "targeted attack", TARGETED_KINDS))
        set_field(self, "penalty", choice(self.penalty, "penalty", PENALTIES))
        set_field(self, "layers", choice(self.layers, "layers", TARGET_LAYERS))
        set_field(self, "chain", choice(self.chain, "chain", LAYER_CHAINS))
        for name in ("pairs", "lambdas", "max_iter", "n_noise"):
            set_field(self, name, positive_int(getattr(self, name), name))
        for name in ("w2_squared", "different_label"):
            if not isinstance(getattr(self, name), bool):
                raise RcertError(f"{name} must be True or False, got {getattr(self, name)!r}")
        low, high = self.lambda_low, self.lambda_high
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (low, high)) or low > high:
            raise RcertError(f"lambda_low and lambda_high must be finite with low <= high, "
                             f"got {low!r} and {high!r}")
        values = (self.lambda_values,) if isinstance(self.lambda_values, numbers.Real) \
            else tuple(self.lambda_values)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value) or value <= 0:
                raise RcertError(f"every lambda must be a finite number > 0, got {value!r}; "
                                 f"the penalty weight of a distortion is positive")
        set_field(self, "lambda_values", tuple(float(v) for v in values))
        set_field(self, "seed", check_seed(self.seed))
