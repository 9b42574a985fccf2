"""How :func:`rcert.fit` and ``rcert train`` train a VAE: the families and their objective."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from rcert.errors import RcertError
from rcert.settings.fields import field_help, set_field
from rcert.values import (
    check_beta,
    check_seed,
    choice,
    nonnegative_float,
    positive_float,
    positive_int,
)

#: The families :class:`TrainConfig` trains, and the total-correlation estimators
#: (:mod:`rcert.models.total_correlation`).
FAMILIES = ("vae", "beta-tcvae", "seatbelt", "dlgm", "mmd-vae", "swt-vae", "mmd-dae",
            "swt-dae")
#: The families whose objective has a total-correlation term (estimated across a batch).
TC_FAMILIES = ("beta-tcvae", "seatbelt", "dlgm")
#: The families of deterministic autoencoders (Lu & Chen's DAEs: ``sigma_mode="none"``),
#: each trained with the objective of the VAE family it maps to.
DAE_FAMILIES = {"mmd-dae": "mmd-vae", "swt-dae": "swt-vae"}
TC_ESTIMATORS = ("mws", "mss")
#: The kernels of the MMD-VAE's penalty (:mod:`rcert.models.regularisers`).
MMD_KERNELS = ("rbf", "imq")
#: The smallest batch each batch-level penalty is defined on: a total correlation or an MMD
#: needs two codes, Royston's Shapiro-Wilk weights six.
MIN_BATCH = {**dict.fromkeys(TC_FAMILIES, 2), "mmd-vae": 2, "swt-vae": 6, "mmd-dae": 2,
             "swt-dae": 6}


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`rcert.fit` and ``rcert train`` train a VAE: the family's objective (the
    beta-ELBO, or the beta-TCVAE's), early stopping."""

    family: str = field(default="vae", metadata=field_help(
        "What beta weighs: vae (the KL: the ELBO at 1, a beta-VAE otherwise), beta-tcvae (the "
        "total correlation of the aggregate posterior, Willetts et al.), or that of the top "
        "layer of a hierarchical VAE: seatbelt (likelihood on every layer) or dlgm (on the "
        "first); mmd-vae or swt-vae (the MMD to the prior or 1 - Shapiro-Wilk W of the "
        "codes instead of the KL, Lu & Chen); mmd-dae or swt-dae (the same objectives for a "
        "deterministic autoencoder, --sigma none: its codes are f_enc(x)).",
        choices=FAMILIES))
    beta: float = field(default=1.0, metadata=field_help(
        "Weight of the family's penalty: 1 is the ELBO for every family."))
    tc_estimator: str = field(default="mws", metadata=field_help(
        "Minibatch estimator of the total correlation (beta-tcvae): mws, the paper's, or "
        "mss.", choices=TC_ESTIMATORS))
    mmd_kernel: str = field(default="rbf", metadata=field_help(
        "Kernel of the mmd-vae's and mmd-dae's MMD: rbf (h^2 = d_z, InfoVAE) or imq "
        "(C = 2 d_z, WAE).",
        choices=MMD_KERNELS))
    free_bits: float = field(default=0.0, metadata=field_help(
        "Free bits: nats of each layer's batch-mean KL left unpenalised (Kingma et al. "
        "2016); 0 is off."))
    epochs: int = field(default=200, metadata=field_help("Most training epochs."))
    batch_size: int = field(default=128, metadata=field_help("Mini-batch size."))
    lr: float = field(default=1e-3, metadata=field_help("Adam learning rate."))
    patience: int = field(default=15, metadata=field_help(
        "Stop after this many epochs without a better held-out objective."))
    val_fraction: float = field(default=0.1, metadata=field_help(
        "Share of the training data held out for early stopping and the recommended r."))
    seed: int = field(default=0, metadata=field_help(
        "Seeds the initial weights, the held-out split, the shuffle and all noise."))

    def __post_init__(self) -> None:
        choice(self.family, "family", FAMILIES)
        choice(self.tc_estimator, "total-correlation estimator", TC_ESTIMATORS)
        choice(self.mmd_kernel, "MMD kernel", MMD_KERNELS)
        set_field(self, "beta", check_beta(self.beta))
        set_field(self, "lr", positive_float(self.lr, "lr"))
        for name in ("epochs", "batch_size", "patience"):
            set_field(self, name, positive_int(getattr(self, name), name))
        set_field(self, "free_bits", nonnegative_float(self.free_bits, "free_bits"))
        least = MIN_BATCH.get(self.family, 1)
        if self.batch_size < least:
            raise RcertError(f"batch_size must be at least {least} for family {self.family} "
                             f"(its penalty is estimated across a batch), got "
                             f"{self.batch_size}")
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
                or not 0 < fraction <= 0.5:
            raise RcertError(f"val_fraction must lie in (0, 0.5], got {fraction!r}")
        set_field(self, "val_fraction", float(fraction))
        set_field(self, "seed", check_seed(self.seed))
