"""Settings: frozen dataclasses, the one source of every default rcert has.

The Python API takes them, the CLI derives its options from their fields
(:mod:`rcert.cli.options`), the ``rcert check`` TOML and the JSON result's ``config`` block
serialise them (:func:`as_dict`), and the resume key hashes them. A field's ``metadata``
holds its help text; validation happens in ``__post_init__``, so a bad value fails where it
is made, with a one-line :class:`~rcert.errors.RcertError`.

* :class:`CertifyConfig`: the certificate's parameters (SPEC sections 2-3);
* :class:`ThreatModel`: what a perturbation reaches, one vocabulary everywhere;
* :class:`AttackConfig`: how hard attacks try, with named presets (:data:`ATTACK_PRESETS`);
* :class:`RunConfig`: where and within which memory budget the work runs;
* :class:`TrainConfig`: how a VAE is trained;
* :class:`TargetedConfig`: the targeted attacks of Willetts et al. and their protocol;
* :class:`LatentAttackConfig`, :class:`FidelityConfig`, :class:`AdversarialTrainingConfig`:
  Lu & Chen's latent attacks, their fidelity scores, and latent adversarial training.

Nothing here imports anything heavy (no torch, numpy or scipy): the CLI builds its help
from it.
"""

from rcert.settings.certify import (
    ATTACK_PRESETS,
    CORRECTIONS,
    DAMAGE_ATTACK,
    EMPIRICAL_ATTACK,
    OPTIMIZERS,
    THREATS,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    ThreatModel,
    attack_label,
    run_record,
    stronger,
)
from rcert.settings.fields import (
    as_dict,
    default,
    field_help,
    field_type,
    item_type,
    merge,
    option_name,
    set_field,
)
from rcert.settings.latent import (
    CODES,
    EPSILON_SCALES,
    ITERATES,
    LATENT_DISTANCES,
    LATENT_GOALS,
    LATENT_NORMS,
    LATENT_TARGETS,
    METRICS,
    PAPER_EPSILONS,
    REFERENCES,
    SSIM_SIGMA,
    SSIM_WINDOW,
    STEP_RULES,
    AdversarialTrainingConfig,
    FidelityConfig,
    LatentAttackConfig,
)
from rcert.settings.targeted import (
    LAYER_CHAINS,
    PENALTIES,
    TARGET_LAYERS,
    TARGETED_KINDS,
    TargetedConfig,
)
from rcert.settings.training import (
    FAMILIES,
    MIN_BATCH,
    MMD_KERNELS,
    TC_ESTIMATORS,
    TC_FAMILIES,
    TrainConfig,
)
from rcert.values import (
    check_beta,
    check_seed,
    choice,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_interval,
)

__all__ = [
    "ATTACK_PRESETS",
    "CODES",
    "CORRECTIONS",
    "DAMAGE_ATTACK",
    "EMPIRICAL_ATTACK",
    "EPSILON_SCALES",
    "FAMILIES",
    "ITERATES",
    "LATENT_DISTANCES",
    "LATENT_GOALS",
    "LATENT_NORMS",
    "LATENT_TARGETS",
    "LAYER_CHAINS",
    "METRICS",
    "MIN_BATCH",
    "MMD_KERNELS",
    "OPTIMIZERS",
    "PAPER_EPSILONS",
    "PENALTIES",
    "REFERENCES",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "STEP_RULES",
    "TARGETED_KINDS",
    "TARGET_LAYERS",
    "TC_ESTIMATORS",
    "TC_FAMILIES",
    "THREATS",
    "AdversarialTrainingConfig",
    "AttackConfig",
    "CertifyConfig",
    "FidelityConfig",
    "LatentAttackConfig",
    "RunConfig",
    "TargetedConfig",
    "ThreatModel",
    "TrainConfig",
    "as_dict",
    "attack_label",
    "check_beta",
    "check_seed",
    "choice",
    "default",
    "field_help",
    "field_type",
    "item_type",
    "merge",
    "nonnegative_float",
    "nonnegative_int",
    "option_name",
    "positive_float",
    "positive_int",
    "run_record",
    "set_field",
    "stronger",
    "unit_interval",
]
