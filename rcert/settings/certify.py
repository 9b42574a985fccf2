"""The settings of a certificate and of the work around it: the certificate's parameters,
the threat model, how hard attacks try (with named presets), and where the work runs."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rcert.checks import MODEL_CHECKS
from rcert.errors import RcertError
from rcert.settings.fields import as_dict, field_help, set_field
from rcert.values import (
    check_seed,
    choice,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_interval,
)


@dataclass(frozen=True)
class CertifyConfig:
    """The certificate's parameters (SPEC sections 2-3).

    ``r`` has no default: it is a property of the use (how far a reconstruction may move),
    so a checkpoint records a recommended one and the CLI falls back to it.
    """

    r: float = field(metadata=field_help("Output radius r of r-robustness: ||Delta|| <= r "
                                    "[default: the checkpoint's recommended r]."))
    m: float = field(default=0.5, metadata=field_help(
        "Level of r-robustness: P(||Delta|| <= r) > m."))
    n_samples: int = field(default=1000, metadata=field_help("Encoder-noise draws per input."))
    alpha: float = field(default=0.001, metadata=field_help(
        "Certified figures hold with probability >= 1 - alpha."))
    seed: int = field(default=0, metadata=field_help("Seeds all randomness; rows depend only on it "
                                                "and the input's index."))

    def __post_init__(self) -> None:
        set_field(self, "r", positive_float(self.r, "r", "; pass e.g. --r 4"))
        set_field(self, "m", unit_interval(self.m, "m"))
        set_field(self, "n_samples", positive_int(self.n_samples, "n_samples"))
        set_field(self, "alpha", unit_interval(self.alpha, "alpha"))
        set_field(self, "seed", check_seed(self.seed))


#: What a perturbation of the input can reach (SPEC section 2).
THREATS = ("mean", "sigma", "both")


@dataclass(frozen=True)
class ThreatModel:
    """What an input perturbation ``d`` reaches: the encoder's mean, its sigma, or both.

    * ``"mean"``: ``g(mu(x + d) + eta sigma(x))``, the theorem's threat model [C Sec 3.2.2];
      the certificates hold for it.
    * ``"sigma"``: ``g(mu(x) + eta sigma(x + d))``.
    * ``"both"``: ``g(mu(x + d) + eta sigma(x + d))``, the full model [C Eq 5].

    Perturbations are L2-bounded and keep ``x + d`` in the model's data range.
    """

    reaches: str = field(default="mean", metadata=field_help(
        "What the perturbation reaches: the encoder's mean (the certificates' threat model), "
        "its sigma, or both.", choices=THREATS))

    def __post_init__(self) -> None:
        set_field(self, "reaches", choice(self.reaches, "threat", THREATS))

    @property
    def moves_mean(self) -> bool:
        return self.reaches in ("mean", "both")

    @property
    def moves_sigma(self) -> bool:
        return self.reaches in ("sigma", "both")

    def __str__(self) -> str:
        return self.reaches

    @classmethod
    def of(cls, value: str | ThreatModel) -> ThreatModel:
        """A threat model from its word, or itself."""
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, cls):
            raise RcertError(f"threat must be one of {', '.join(THREATS)}, got {value!r}")
        return value


OPTIMIZERS = ("pgd", "lbfgs")
CORRECTIONS = ("holm", "none")

#: Named attack strengths, in the spirit of AutoAttack's versions, from the cheapest up; an
#: audit (``AttackConfig.audit``) uses the next one. ``careful`` is the empirical margin's
#: default, ``standard`` the maximum-damage attack's, ``thorough`` the strongest. The
#: empirical margin's objective is noisy, and its common draws matter most, not restarts or
#: steps: in benchmarks/bench_attack_strength.py (60 inputs, 3 models), ``careful`` lowered
#: 23 of ``fast``'s margins by more than the resolution and ``fast`` 3 of its; ``thorough``
#: lowered 11 of ``careful``'s and ``careful`` 16 of ``thorough``'s (docs/attacks.md).
ATTACK_PRESETS: dict[str, dict[str, int]] = {
    "fast": {"restarts": 1, "steps": 10, "n_noise": 32},
    "careful": {"restarts": 1, "steps": 10, "n_noise": 128},
    "standard": {"restarts": 5, "steps": 50, "n_noise": 16},
    "thorough": {"restarts": 10, "steps": 200, "n_noise": 64},
}


@dataclass(frozen=True)
class AttackConfig:
    """How hard an attack tries, and how its success is judged (SPEC section 6).

    ``preset`` sets ``restarts``, ``steps`` and ``n_noise`` (:data:`ATTACK_PRESETS`); a value
    given explicitly overrides the preset's. ``threat`` takes a :class:`ThreatModel` or its
    word.
    """

    threat: ThreatModel = field(default_factory=ThreatModel, metadata=field_help(
        "What the perturbation reaches: mean (the certificates' threat model), sigma or both.",
        choices=THREATS))
    preset: str = field(default="careful", metadata=field_help(
        "Attack strength that sets restarts, steps and n-noise: fast, careful, standard or "
        "thorough; options given explicitly override it.", choices=tuple(ATTACK_PRESETS)))
    optimizer: str = field(default="pgd", metadata=field_help(
        "Attack optimiser: projected gradient ascent, or scipy's L-BFGS-B (one problem per "
        "input).", choices=OPTIMIZERS))
    restarts: int | None = field(default=None, metadata=field_help(
        "Random starts per attack [default: the preset's]."))
    steps: int | None = field(default=None, metadata=field_help(
        "Optimiser steps per start [default: the preset's]."))
    n_noise: int | None = field(default=None, metadata=field_help(
        "Common encoder-noise draws in the attack objective [default: the preset's]."))
    n_check: int = field(default=200, metadata=field_help(
        "Fresh noise draws that judge an attack's success, and again its violation."))
    resolution: float | None = field(default=None, metadata=field_help(
        "Bisection width of the empirical margin [default: 2% of the bracket's upper end]."))
    correction: str = field(default="holm", metadata=field_help(
        "Control of violations over a run's inputs: holm (family-wise at level alpha, "
        "Holm's step-down) or none (each input at level alpha).", choices=CORRECTIONS))
    audit: int = field(default=8, metadata=field_help(
        "Inputs re-attacked with the next stronger preset to check the attack's strength "
        "(0: none)."))

    def __post_init__(self) -> None:
        set_field(self, "threat", ThreatModel.of(self.threat))
        set_field(self, "preset", choice(self.preset, "attack preset", tuple(ATTACK_PRESETS)))
        set_field(self, "optimizer", choice(self.optimizer, "optimizer", OPTIMIZERS))
        set_field(self, "correction", choice(self.correction, "correction", CORRECTIONS))
        for name, value in ATTACK_PRESETS[self.preset].items():
            if getattr(self, name) is None:
                set_field(self, name, value)
        for name in ("restarts", "steps", "n_noise", "n_check"):
            set_field(self, name, positive_int(getattr(self, name), name))
        if self.resolution is not None:
            set_field(self, "resolution", positive_float(self.resolution, "resolution"))
        set_field(self, "audit", nonnegative_int(self.audit, "audit"))

    @classmethod
    def rebase(cls, base: AttackConfig, given: dict[str, Any]) -> AttackConfig:
        """``base`` with ``given`` on top (:func:`rcert.settings.merge`): a new preset
        replaces the old preset's values, not explicitly given ones."""
        if "preset" not in given:
            return dataclasses.replace(base, **given)
        kept = {k: v for k, v in as_dict(base).items()
                if k not in ATTACK_PRESETS[base.preset]}
        return cls(**{**kept, **given})


#: The attack the empirical margin runs by default: the careful preset on the certificates'
#: threat model (today's ``rcert margin --empirical``).
EMPIRICAL_ATTACK = AttackConfig()
#: The maximum-damage attack's default [C Eq 5]: the standard preset on the full threat model.
DAMAGE_ATTACK = AttackConfig(preset="standard", threat="both")


def stronger(attack: AttackConfig) -> AttackConfig:
    """The attack that audits ``attack`` (``AttackConfig.audit``): the next preset of
    :data:`ATTACK_PRESETS`, or after the last one ``attack`` with twice the restarts; each
    of restarts, steps and n_noise at least ``attack``'s, and n_noise at least ``careful``'s.
    It audits nothing itself."""
    names = list(ATTACK_PRESETS)
    following = names[names.index(attack.preset) + 1:]
    preset = following[0] if following else attack.preset
    values = dict(ATTACK_PRESETS[preset]) if following else {
        "restarts": 2 * attack.restarts}
    # An explicitly raised knob stays raised, so the audit is never the weaker attack; and
    # the margin falls with the common draws up to careful's (benchmarks/README.md), so
    # fewer would leave the weakness that matters most unaudited.
    values = {k: max(v, getattr(attack, k)) for k, v in values.items()}
    values["n_noise"] = max(values.get("n_noise", 0), attack.n_noise,
                            ATTACK_PRESETS["careful"]["n_noise"])
    return dataclasses.replace(attack, preset=preset, audit=0, **values)


def attack_label(attack: AttackConfig) -> str:
    """An attack's preset and strength in words, e.g. "standard (restarts 5, steps 50,
    n_noise 128)"."""
    return (f"{attack.preset} (restarts {attack.restarts}, steps {attack.steps}, "
            f"n_noise {attack.n_noise})")


@dataclass(frozen=True)
class RunConfig:
    """Where and how the work runs; none of it changes a number (up to float rounding)."""

    device: str | None = field(default=None, metadata=field_help(
        "Where to compute: cpu or cuda [default: the model's own device; cpu for a "
        "checkpoint].", choices=("cpu", "cuda")))
    memory_mb: float = field(default=256.0, metadata=field_help(
        "Memory budget in MB of one chunk of work, on every path."))
    progress: bool = field(default=False, metadata=field_help("Show progress on stderr."))
    allow: tuple[str, ...] = field(default=(), metadata=field_help(
        "Certify although this model check fails (repeatable; recorded in the result).",
        choices=MODEL_CHECKS))

    def __post_init__(self) -> None:
        set_field(self, "memory_mb", positive_float(self.memory_mb, "memory_mb"))
        allow = (self.allow,) if isinstance(self.allow, str) else self.allow
        if not isinstance(allow, Sequence):
            raise RcertError(f"allow must be a list of check codes, got {self.allow!r}")
        for code in allow:
            choice(code, "model check", MODEL_CHECKS)
        set_field(self, "allow", tuple(sorted(set(allow))))
        if self.device is not None:
            device = str(self.device)
            if not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", device):
                raise RcertError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
            set_field(self, "device", device)
        if not isinstance(self.progress, bool):
            raise RcertError(f"progress must be True or False, got {self.progress!r}")


def run_record(run: RunConfig) -> dict[str, Any]:
    """What a result's ``config`` block records of the run settings: the model checks the
    user allowed to fail, when there are any (the rest changes no number)."""
    return {"allow": list(run.allow)} if run.allow else {}
