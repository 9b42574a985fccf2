"""The settings of Lu & Chen's latent-space attacks (spec section 2), of the fidelity scores
that judge them (section 4), and of latent adversarial training (section 5, Algorithm 1).

A latent attack perturbs the code ``z`` between an encoder and a decoder used apart; it is
not the input-space "latent attack" of Willetts et al. (:class:`TargetedConfig`), which
moves ``x`` so that ``q(z|x + d)`` matches a target's posterior.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from rcert.errors import RcertError
from rcert.settings.fields import field_help, set_field
from rcert.values import check_seed, choice, positive_float, positive_int

LATENT_GOALS = ("untargeted", "targeted")
#: The targeted attack's target factory (spec section 2.2): the data range's low (black) or
#: high (white) value everywhere, pixels uniform in the data range (prior), the clean
#: reconstruction with its values reversed in the data range (inverted), another input
#: of the data (other).
LATENT_TARGETS = ("black", "white", "prior", "inverted", "other")
LATENT_NORMS = ("l2", "linf")
#: A step along the gradient's sign (the paper's Eq 6) or along the gradient over its L2
#: norm (the standard PGD-L2).
STEP_RULES = ("sign", "l2")
ITERATES = ("last", "best")
#: The attack distance D: mean squared error, or 1 - SSIM.
LATENT_DISTANCES = ("mse", "ssim")
#: What the fidelity scores compare an adversarial reconstruction with.
REFERENCES = ("clean", "input")
#: The clean code ``z0`` of a Gaussian encoder: its mean, or one reparameterised sample.
CODES = ("mean", "sample")
#: The unit of epsilon: raw latent units; the per-dimension standard deviation of the
#: attacked data's codes (spread); the encoder's sigma at each input (sigma, the latent
#: certificate's geometry ``||d_z / sigma||``).
EPSILON_SCALES = ("raw", "spread", "sigma")
#: Scores of an adversarial reconstruction (:mod:`rcert.statistics.fidelity`); ``l2`` is
#: ``||g(z*) - reference||_2``, the distance r-robustness thresholds.
METRICS = ("mse", "l2", "ssim", "psnr", "lpips")
#: The paper's epsilon grid for MNIST and Fashion-MNIST: 0 to 1 in steps of 0.1.
PAPER_EPSILONS = tuple(round(0.1 * i, 1) for i in range(11))
#: SSIM's Gaussian window (Wang et al. 2004): 11 pixels, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _epsilons(values: object, name: str) -> tuple[float, ...]:
    values = (values,) if isinstance(values, numbers.Real) else tuple(values)  # type: ignore
    if not values:
        raise RcertError(f"{name} needs at least one value")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value < 0:
            raise RcertError(f"{name} must be finite numbers >= 0 (a budget), got {value!r}")
    return tuple(float(v) for v in values)


def _flag(obj: object, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        raise RcertError(f"{name} must be True or False, got {getattr(obj, name)!r}")


def _ssim(obj: object) -> None:
    """Check and normalise ``obj``'s ``ssim_window`` (odd, > 0) and ``ssim_sigma`` (> 0)."""
    set_field(obj, "ssim_window", _window(obj.ssim_window))  # type: ignore[attr-defined]
    set_field(obj, "ssim_sigma", positive_float(obj.ssim_sigma,  # type: ignore[attr-defined]
                                                "ssim_sigma"))


def _window(value: object) -> int:
    window = positive_int(value, "ssim_window")
    if window % 2 == 0:
        raise RcertError(f"ssim_window must be odd (a centred window), got {window}")
    return window


@dataclass(frozen=True)
class LatentAttackConfig:
    """A PGD attack on the latent code (Lu & Chen Eqs 4-6): from ``z0`` inside the ball
    ``||z - z0|| <= epsilon`` (per input), ``steps`` projected steps that increase
    ``D(g(z), g(z0))`` (untargeted) or decrease ``D(g(z), x_t)`` (targeted), for every
    epsilon of the grid."""

    goal: str = field(default="untargeted", metadata=field_help(
        "untargeted (push g(z) away from g(z0)) or targeted (pull it to a target).",
        choices=LATENT_GOALS))
    target: str = field(default="black", metadata=field_help(
        "Target of a targeted attack: black, white, prior (uniform pixels), inverted (the "
        "clean reconstruction reversed) or other (another input).", choices=LATENT_TARGETS))
    norm: str = field(default="l2", metadata=field_help(
        "The ball: l2 (per the paper's text) or linf (its Clip notation); an epsilon in one "
        "is up to sqrt(d_z) times the other's L2 budget.", choices=LATENT_NORMS))
    step: str = field(default="sign", metadata=field_help(
        "Step direction: sign of the gradient (the paper) or the gradient over its L2 norm.",
        choices=STEP_RULES))
    step_size: float = field(default=1.0, metadata=field_help(
        "Step length alpha, in epsilon's units (the paper's alpha = 1 reaches the ball's "
        "boundary in one step)."))
    steps: int = field(default=10, metadata=field_help("PGD steps K."))
    restarts: int = field(default=1, metadata=field_help(
        "Random starts per input and epsilon; the best is kept."))
    random_start: bool = field(default=True, metadata=field_help(
        "Start uniformly in the ball (needed untargeted: from z0 the gradient is 0)."))
    iterate: str = field(default="last", metadata=field_help(
        "Return the last iterate (the paper) or the best one seen.", choices=ITERATES))
    distance: str = field(default="mse", metadata=field_help(
        "Attack distance D: mse (the paper's attacks) or ssim (1 - SSIM, its training "
        "attack).", choices=LATENT_DISTANCES))
    reference: str = field(default="clean", metadata=field_help(
        "What the scores compare g(z*) with: the clean reconstruction g(z0) or the input.",
        choices=REFERENCES))
    code: str = field(default="mean", metadata=field_help(
        "Clean code z0 of a Gaussian encoder: its mean, or one reparameterised sample.",
        choices=CODES))
    epsilons: tuple[float, ...] = field(default=PAPER_EPSILONS, metadata=field_help(
        "Attack budgets (repeatable) [default: 0 to 1 in steps of 0.1]."))
    scale: str = field(default="raw", metadata=field_help(
        "Unit of epsilon: raw latent units, spread (each dimension's standard deviation "
        "over the data's codes) or sigma (the encoder's, per input).", choices=EPSILON_SCALES))
    seed: int = field(default=0, metadata=field_help(
        "Seeds the random starts, the sampled codes and the prior and other targets."))

    def __post_init__(self) -> None:
        for name, options in (("goal", LATENT_GOALS), ("target", LATENT_TARGETS),
                              ("norm", LATENT_NORMS), ("step", STEP_RULES),
                              ("iterate", ITERATES), ("distance", LATENT_DISTANCES),
                              ("reference", REFERENCES), ("code", CODES),
                              ("scale", EPSILON_SCALES)):
            choice(getattr(self, name), f"latent attack {name}", options)
        set_field(self, "step_size", positive_float(self.step_size, "step_size"))
        set_field(self, "steps", positive_int(self.steps, "steps"))
        set_field(self, "restarts", positive_int(self.restarts, "restarts"))
        _flag(self, "random_start")
        set_field(self, "epsilons", _epsilons(self.epsilons, "epsilons"))
        set_field(self, "seed", check_seed(self.seed))
        if self.goal == "untargeted" and not self.random_start:
            raise RcertError("an untargeted latent attack needs random_start: from z0 the "
                             "distance to g(z0) is at its minimum, its gradient is 0 and PGD "
                             "never moves")


@dataclass(frozen=True)
class FidelityConfig:
    """How adversarial reconstructions are scored (spec section 4): which scores, SSIM's
    window, LPIPS's weights, the AADDC limit lines, and the batches the spread is over."""

    metrics: tuple[str, ...] = field(default=("mse", "l2", "ssim", "psnr"), metadata=field_help(
        "Scores (repeatable): mse, l2, ssim, psnr, lpips (needs --lpips-weights).",
        choices=METRICS))
    ssim_window: int = field(default=SSIM_WINDOW, metadata=field_help(
        "SSIM's Gaussian window in pixels (odd, at most the image's side; 7 or less for "
        "8x8 digits)."))
    ssim_sigma: float = field(default=SSIM_SIGMA, metadata=field_help(
        "SSIM window's standard deviation in pixels."))
    lpips_weights: str | None = field(default=None, metadata=field_help(
        "LPIPS weights file (safetensors or a torch state dict): the backbone and the "
        "linear layers; none can be downloaded, so LPIPS needs them."))
    limits: tuple[str, ...] = field(default=("ssim=0.4", "lpips=0.15"), metadata=field_help(
        "AADDC limit lines, metric=value (repeatable) [default: ssim=0.4, lpips=0.15, the "
        "paper's Tables 1-2]."))
    batch: int = field(default=8, metadata=field_help(
        "Inputs per batch (consecutive indices): the DD-curve and AADDC spread is over "
        "batches and seeds (the paper's one batch of 8)."))

    def __post_init__(self) -> None:
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        if not metrics:
            raise RcertError("metrics needs at least one score")
        for metric in metrics:
            choice(metric, "fidelity metric", METRICS)
        set_field(self, "metrics", tuple(dict.fromkeys(metrics)))
        _ssim(self)
        if "lpips" in self.metrics and self.lpips_weights is None:
            raise RcertError("lpips needs its weights (none can be downloaded): pass "
                             "--lpips-weights FILE, or drop lpips from --metrics")
        limits = (self.limits,) if isinstance(self.limits, str) else tuple(self.limits)
        set_field(self, "limits", limits)
        set_field(self, "batch", positive_int(self.batch, "batch"))


@dataclass(frozen=True)
class AdversarialTrainingConfig:
    """Latent adversarial training (Lu & Chen Algorithm 1): after each training step,
    ``repeats`` times, an untargeted PGD attack on a fresh reparameterised code and a
    decoder-only step on the reconstruction loss of the attacked code. Every setting the
    paper leaves unstated is a field here, recorded in the checkpoint's card."""

    epsilon: float = field(default=0.05, metadata=field_help(
        "Latent attack budget (the paper's 0.05)."))
    steps: int = field(default=10, metadata=field_help("PGD steps K of each attack."))
    step_size: float = field(default=1.0, metadata=field_help(
        "PGD step length alpha (in epsilon's units)."))
    repeats: int = field(default=1, metadata=field_help(
        "Attack-and-decoder steps M after each training step."))
    norm: str = field(default="l2", metadata=field_help(
        "The attack's ball.", choices=LATENT_NORMS))
    step: str = field(default="sign", metadata=field_help(
        "The attack's step direction.", choices=STEP_RULES))
    distance: str = field(default="ssim", metadata=field_help(
        "The attack's distance D (the paper's SSIM).", choices=LATENT_DISTANCES))
    ssim_window: int = field(default=SSIM_WINDOW, metadata=field_help(
        "SSIM window of the attack distance (odd, at most the image's side)."))
    ssim_sigma: float = field(default=SSIM_SIGMA, metadata=field_help(
        "SSIM window's standard deviation."))
    loss: str = field(default="likelihood", metadata=field_help(
        "Decoder step's loss: likelihood (-log p(x|z*), the training one; the paper's MSE "
        "for a Gaussian likelihood) or mse.", choices=("likelihood", "mse")))
    decoder_lr: float = field(default=1e-3, metadata=field_help(
        "Adam learning rate of the decoder-only steps (their own optimiser state)."))

    def __post_init__(self) -> None:
        set_field(self, "epsilon", positive_float(
            self.epsilon, "epsilon", " (the budget of the training attack)"))
        for name in ("steps", "repeats"):
            set_field(self, name, positive_int(getattr(self, name), name))
        set_field(self, "step_size", positive_float(self.step_size, "step_size"))
        set_field(self, "decoder_lr", positive_float(self.decoder_lr, "decoder_lr"))
        choice(self.norm, "norm", LATENT_NORMS)
        choice(self.step, "step", STEP_RULES)
        choice(self.distance, "distance", LATENT_DISTANCES)
        choice(self.loss, "loss", ("likelihood", "mse"))
        _ssim(self)
