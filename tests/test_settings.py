"""Settings (``rcert.settings``): validation, the seed and beta rules, presets, merge, as_dict."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rcert
from rcert import settings
from rcert.errors import RcertError
from rcert.models import objectives, training
from rcert.settings import (
    ATTACK_PRESETS,
    DAMAGE_ATTACK,
    EMPIRICAL_ATTACK,
    AttackConfig,
    CertifyConfig,
    RunConfig,
    ThreatModel,
    TrainConfig,
    check_beta,
    check_seed,
)

NAN, INF = math.nan, math.inf
# Bad values by kind of field; each must be refused with a one-line RcertError.
BAD_POSITIVE_INT = [0, -1, -5, True, False, 1.5, 2.0, NAN, INF, "3", None]
BAD_POSITIVE_FLOAT = [0, 0.0, -1, -1e-9, NAN, INF, -INF, True, "1.0", None]
BAD_UNIT = [0, 0.0, 1, 1.0, -0.1, 1.5, NAN, INF, True, False, "0.5", None]
BAD_SEED = [-1, 2**63, 2**64, 2**70, True, False, 1.0, 0.0, NAN, "0", None, np.float64(1.0)]

CASES = (
    [(CertifyConfig, {}, "r", v) for v in BAD_POSITIVE_FLOAT]
    + [(CertifyConfig, {"r": 1.0}, "m", v) for v in BAD_UNIT]
    + [(CertifyConfig, {"r": 1.0}, "n_samples", v) for v in BAD_POSITIVE_INT]
    + [(CertifyConfig, {"r": 1.0}, "alpha", v) for v in BAD_UNIT]
    + [(CertifyConfig, {"r": 1.0}, "seed", v) for v in BAD_SEED]
    + [(AttackConfig, {}, "threat", v) for v in ("full", "target", "targeted", "", None, 1)]
    + [(AttackConfig, {}, "preset", v) for v in ("medium", "FAST", "", None)]
    + [(AttackConfig, {}, "optimizer", v) for v in ("adam", "PGD", "", None)]
    + [(AttackConfig, {}, name, v) for name in ("restarts", "steps", "n_noise", "n_check")
       for v in BAD_POSITIVE_INT if v is not None]
    + [(AttackConfig, {}, "n_check", None)]
    + [(AttackConfig, {}, "resolution", v) for v in BAD_POSITIVE_FLOAT if v is not None]
    + [(AttackConfig, {}, "correction", v) for v in ("bonferroni", "Holm", "", None)]
    + [(AttackConfig, {}, "audit", v) for v in (-1, True, 1.5, 2.0, NAN, "3", None)]
    + [(RunConfig, {}, "memory_mb", v) for v in BAD_POSITIVE_FLOAT]
    + [(TrainConfig, {}, "beta", v) for v in BAD_POSITIVE_FLOAT]
    + [(TrainConfig, {}, name, v) for name in ("epochs", "batch_size", "patience")
       for v in BAD_POSITIVE_INT]
    + [(TrainConfig, {}, "lr", v) for v in BAD_POSITIVE_FLOAT]
    + [(TrainConfig, {}, "val_fraction", v)
       for v in (0, 0.0, -0.1, 0.51, 1.0, NAN, INF, True, "0.1", None)]
    + [(TrainConfig, {}, "seed", v) for v in BAD_SEED]
)


@pytest.mark.parametrize(("cls", "base", "name", "value"), CASES,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, _, n, v in CASES])
def test_every_field_refuses_bad_values(cls, base, name, value):
    with pytest.raises(RcertError) as info:
        cls(**{**base, name: value})
    message = str(info.value)
    assert "\n" not in message and message


def test_good_values_are_accepted_and_normalised():
    c = CertifyConfig(r=1, m=0.25, n_samples=np.int64(10), alpha=0.05, seed=np.int64(3))
    assert (c.r, c.m, c.n_samples, c.alpha, c.seed) == (1.0, 0.25, 10, 0.05, 3)
    assert type(c.r) is float and type(c.n_samples) is int and type(c.seed) is int
    assert RunConfig(memory_mb=128).memory_mb == 128.0
    t = TrainConfig(beta=np.float64(0.5), val_fraction=0.5, seed=2**63 - 1)
    assert (t.beta, t.val_fraction, t.seed) == (0.5, 0.5, 2**63 - 1)
    a = AttackConfig(threat=ThreatModel("sigma"), resolution=1, audit=np.int64(0))
    assert a.threat == ThreatModel("sigma") and a.resolution == 1.0
    assert a.audit == 0 and type(a.audit) is int


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, np.int64(7), np.int32(0), np.uint64(2**63 - 1),
                                   np.int64(2**63 - 1)])
def test_check_seed_accepts_integers_in_range(value):
    assert check_seed(value) == int(value)
    assert type(check_seed(value)) is int


@pytest.mark.parametrize("value", [*BAD_SEED, np.uint64(2**63), np.int64(-1), np.bool_(True)])
def test_check_seed_refuses(value):
    with pytest.raises(RcertError):
        check_seed(value)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, NAN, INF, -INF, True, "1", None])
def test_check_beta_refuses(value):
    with pytest.raises(RcertError):
        check_beta(value)


@pytest.mark.parametrize("value", [1, 0.1, 1e-6, 250.0, np.float64(2.0)])
def test_check_beta_accepts(value):
    assert check_beta(value) == float(value)


# --- the seed and beta rules through the public functions -----------------------------------


def _tiny_vae():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return rcert.build_model("mlp", input_shape=(4,), latent_dim=2, hidden=(8,))


def _data(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("seed", [2**63, 2**64, -1, True])
def test_fit_refuses_bad_seeds(seed):
    model = _tiny_vae()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RcertError, match="seed"):
        training.fit(model, _data(), _data(4), seed=seed, epochs=1, progress=False)
    # Refused before any training step.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("seed", [2**64, 2**63, -1, 1.0])
def test_certify_refuses_bad_seeds(seed):
    with pytest.raises(RcertError, match="seed"):
        rcert.certify(_tiny_vae(), _data(2), r=1.0, n_samples=10, seed=seed)


def test_certify_accepts_the_largest_seed():
    df = rcert.certify(_tiny_vae(), _data(2), r=1.0, n_samples=10, seed=2**63 - 1)
    assert len(df) == 2


@pytest.mark.parametrize("beta", [0, 0.0, -1.0, NAN, INF])
def test_fit_and_elbo_refuse_bad_beta(beta):
    model = _tiny_vae()
    with pytest.raises(RcertError, match="beta"):
        training.fit(model, _data(), _data(4), beta=beta, epochs=1, progress=False)
    with pytest.raises(RcertError, match="beta"):
        objectives.elbo(model, _data(), beta=beta)


def test_elbo_accepts_a_small_positive_beta():
    out = objectives.elbo(_tiny_vae(), _data(), beta=1e-3,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (8,) and torch.isfinite(out).all()


# --- attack presets --------------------------------------------------------------------------

PRESET_FIELDS = ("restarts", "steps", "n_noise")


@given(preset=st.sampled_from(sorted(ATTACK_PRESETS)),
       explicit=st.fixed_dictionaries({}, optional={
           name: st.integers(1, 10_000) for name in PRESET_FIELDS}))
def test_preset_values_unless_given_explicitly(preset, explicit):
    config = AttackConfig(preset=preset, **explicit)
    for name in PRESET_FIELDS:
        want = explicit.get(name, ATTACK_PRESETS[preset][name])
        assert getattr(config, name) == want, name
    # The same through merge, from the defaults and from another preset's config.
    for base in (None, AttackConfig(), AttackConfig(preset="thorough")):
        merged = settings.merge(AttackConfig, base, preset=preset, **explicit)
        for name in PRESET_FIELDS:
            assert getattr(merged, name) == explicit.get(name, ATTACK_PRESETS[preset][name])


def test_presets_cover_exactly_the_preset_fields():
    assert {frozenset(v) for v in ATTACK_PRESETS.values()} == {frozenset(PRESET_FIELDS)}
    assert list(ATTACK_PRESETS) == ["fast", "careful", "standard", "thorough"]


def test_default_attacks_are_the_documented_presets():
    assert EMPIRICAL_ATTACK.preset == "careful"
    assert EMPIRICAL_ATTACK.threat == ThreatModel("mean")
    assert DAMAGE_ATTACK.preset == "standard"
    assert DAMAGE_ATTACK.threat == ThreatModel("both")
    for config, preset in ((EMPIRICAL_ATTACK, "careful"), (DAMAGE_ATTACK, "standard")):
        for name, value in ATTACK_PRESETS[preset].items():
            assert getattr(config, name) == value
    assert EMPIRICAL_ATTACK == AttackConfig(preset="careful", threat="mean")
    assert EMPIRICAL_ATTACK.audit == 8
    assert DAMAGE_ATTACK == AttackConfig(preset="standard", threat="both")


@pytest.mark.parametrize("word", ["full", "target", "targeted", "latent", "Mean", "all"])
def test_threat_model_refuses_other_words_and_lists_the_choices(word):
    for make in (lambda: ThreatModel(word), lambda: AttackConfig(threat=word)):
        with pytest.raises(RcertError) as info:
            make()
        message = str(info.value)
        assert "\n" not in message
        for choice in ("mean", "sigma", "both"):
            assert choice in message
        assert repr(word) in message


@pytest.mark.parametrize("word", ["mean", "sigma", "both"])
def test_threat_words_and_their_moves(word):
    threat = ThreatModel(word)
    assert str(threat) == word
    assert threat.moves_mean == (word != "sigma")
    assert threat.moves_sigma == (word != "mean")
    assert AttackConfig(threat=word).threat == threat


# --- merge, as_dict, frozen -----------------------------------------------------------------

BASES = [CertifyConfig(r=0.3, m=0.4, n_samples=17, alpha=0.01, seed=5),
         AttackConfig(preset="standard", threat="sigma", restarts=3, n_check=33,
                      resolution=0.01, correction="none", optimizer="lbfgs"),
         RunConfig(device="cpu", memory_mb=64.0, progress=True),
         TrainConfig(beta=0.5, epochs=3, batch_size=7, lr=0.01, patience=2,
                     val_fraction=0.2, seed=9)]


@pytest.mark.parametrize("base", BASES, ids=lambda b: type(b).__name__)
def test_merge_with_none_shortcuts_returns_the_base(base):
    cls = type(base)
    shortcuts = {f.name: None for f in dataclasses.fields(cls)}
    assert settings.merge(cls, base, **shortcuts) == base
    assert settings.merge(cls, base) == base


@pytest.mark.parametrize("base", BASES, ids=lambda b: type(b).__name__)
def test_merge_puts_given_shortcuts_on_top(base):
    cls = type(base)
    field = {CertifyConfig: ("seed", 11), AttackConfig: ("n_check", 77),
             RunConfig: ("memory_mb", 12.0), TrainConfig: ("epochs", 99)}[cls]
    merged = settings.merge(cls, base, **{field[0]: field[1]})
    assert getattr(merged, field[0]) == field[1]
    assert merged == dataclasses.replace(base, **{field[0]: field[1]})
    assert base != merged  # the base itself is untouched (frozen)


@pytest.mark.parametrize("base", [None, *BASES], ids=lambda b: type(b).__name__)
def test_merge_refuses_unknown_names(base):
    cls = CertifyConfig if base is None else type(base)
    with pytest.raises(RcertError, match="nonsense"):
        settings.merge(cls, base, nonsense=1)


def test_merge_without_base_uses_the_defaults_and_validates():
    assert settings.merge(CertifyConfig, None, r=2.0) == CertifyConfig(r=2.0)
    with pytest.raises(RcertError):
        settings.merge(CertifyConfig, None, r=2.0, alpha=1.5)
    with pytest.raises(RcertError):
        settings.merge(CertifyConfig, CertifyConfig(r=1.0), seed=-1)
    with pytest.raises(RcertError):
        settings.merge(CertifyConfig, RunConfig(), r=1.0)  # a base of the wrong class


@pytest.mark.parametrize("config", [*BASES, CertifyConfig(r=1.0), AttackConfig(), RunConfig(),
                                    TrainConfig(), EMPIRICAL_ATTACK, DAMAGE_ATTACK],
                         ids=lambda b: type(b).__name__)
def test_as_dict_is_plain_json_in_field_order(config):
    out = settings.as_dict(config)
    assert list(out) == [f.name for f in dataclasses.fields(config)]
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    for value in out.values():
        assert value is None or type(value) in (str, int, float, bool) or (
            type(value) is list and all(type(v) is str for v in value))
    if isinstance(config, AttackConfig):
        assert out["threat"] == config.threat.reaches
        # A config rebuilt from its dict is the same config.
        assert AttackConfig(**out) == config
    else:
        assert type(config)(**out) == config


@pytest.mark.parametrize("config", [*BASES, ThreatModel("both")], ids=lambda b: type(b).__name__)
def test_configs_are_frozen(config):
    name = dataclasses.fields(config)[0].name
    before = getattr(config, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, name, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.extra = 1
    assert getattr(config, name) == before
