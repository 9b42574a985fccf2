"""``rcert check``'s settings tables ([attack], [run], [[model]]), the resume key that hashes
them, and the run-wide Holm verdict of a chunked (and resumed) run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REAL_CERTIFY, CertifyCalls, assert_one_error_line, resumed_run_fixtures

import rcert
import rcert.runs.resume
from rcert.errors import RcertError
from rcert.evaluation.verdicts import EMPIRICAL_COLUMNS, judge
from rcert.runs.thresholds import load_config
from rcert.settings import EMPIRICAL_ATTACK, AttackConfig, CertifyConfig, RunConfig

MODEL = '[[model]]\npath = "m.rcert"\n'


def _load(tmp_path: Path, text: str):
    path = tmp_path / "rcert.toml"
    path.write_text(text)
    return load_config(path)


def test_attack_and_run_tables_become_settings(tmp_path):
    parsed = _load(tmp_path, MODEL + '[attack]\npreset = "standard"\nthreat = "both"\n'
                   'n_check = 300\ncorrection = "none"\n[run]\nmemory_mb = 128\n')
    assert parsed.attack == AttackConfig(preset="standard", threat="both", n_check=300,
                                         correction="none")
    assert parsed.run.memory_mb == 128.0
    assert type(parsed.run.memory_mb) is float
    assert parsed.run.device == "cpu"


def test_missing_tables_give_the_defaults(tmp_path):
    parsed = _load(tmp_path, MODEL)
    assert parsed.attack == EMPIRICAL_ATTACK
    assert parsed.run == dataclasses.replace(RunConfig(), device="cpu")


def test_explicit_attack_fields_override_the_preset(tmp_path):
    parsed = _load(tmp_path, MODEL + '[attack]\npreset = "thorough"\nrestarts = 3\n'
                   'resolution = 0.5\noptimizer = "lbfgs"\n[run]\ndevice = "cpu"\n')
    assert parsed.attack == AttackConfig(preset="thorough", restarts=3, resolution=0.5,
                                         optimizer="lbfgs")
    assert parsed.attack.restarts == 3
    assert parsed.attack.steps == rcert.settings.ATTACK_PRESETS["thorough"]["steps"]


def test_model_certificate_fields_are_read(tmp_path):
    parsed = _load(tmp_path, '[[model]]\npath = "m.rcert"\nr = 0.5\nm = 0.6\n'
                   'n_samples = 40\nalpha = 0.01\nseed = 9\nempirical = true\n')
    [entry] = parsed.models
    assert entry.certify == {"r": 0.5, "m": 0.6, "n_samples": 40, "alpha": 0.01, "seed": 9}
    assert entry.empirical is True
    assert Path(entry.source.path) == tmp_path / "m.rcert"


UNKNOWN = [
    (MODEL + "[attack]\nbogus_knob = 1\n", "bogus_knob", "[attack]"),
    (MODEL + "[attack]\nthreshold = 0.5\n", "threshold", "[attack]"),
    (MODEL + "[run]\nworkers = 4\n", "workers", "[run]"),
    (MODEL + "[run]\nmemory = 4\n", "memory", "[run]"),
    ('[[model]]\npath = "m.rcert"\nn_sample = 10\n', "n_sample", "[[model]]"),
    ('[[model]]\npath = "m.rcert"\nthreat = "mean"\n', "threat", "[[model]]"),
]


@pytest.mark.parametrize(("text", "key", "table"), UNKNOWN, ids=[k for _, k, _ in UNKNOWN])
def test_unknown_keys_are_refused_naming_the_key(tmp_path, text, key, table):
    with pytest.raises(RcertError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(key) in message
    assert table in message


BAD_VALUES = [
    (MODEL + "[attack]\nn_check = 0\n", "[attack]", "n_check"),
    (MODEL + '[attack]\nthreat = "full"\n', "[attack]", "threat"),
    (MODEL + '[attack]\npreset = "medium"\n', "[attack]", "preset"),
    (MODEL + "[attack]\nrestarts = -2\n", "[attack]", "restarts"),
    (MODEL + '[attack]\nn_check = "300"\n', "[attack]", "n_check"),
    (MODEL + "[attack]\nn_check = true\n", "[attack]", "n_check"),
    (MODEL + "[attack]\nresolution = nan\n", "[attack]", "resolution"),
    (MODEL + '[attack]\ncorrection = "bonferroni"\n', "[attack]", "correction"),
    (MODEL + "[run]\nmemory_mb = -1\n", "[run]", "memory_mb"),
    (MODEL + "[run]\nmemory_mb = inf\n", "[run]", "memory_mb"),
    ('[[model]]\npath = "m.rcert"\nseed = -1\n', "[[model]]", "seed"),
    ('[[model]]\npath = "m.rcert"\nseed = 9223372036854775807\nalpha = 1.5\n', "[[model]]",
     "alpha"),
    ('[[model]]\npath = "m.rcert"\nn_samples = 0\n', "[[model]]", "n_samples"),
]


@pytest.mark.parametrize(("text", "table", "field"), BAD_VALUES,
                         ids=[t.splitlines()[-1] for t, _, _ in BAD_VALUES])
def test_bad_values_are_refused_at_load_time_naming_the_table(tmp_path, text, table, field):
    with pytest.raises(RcertError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert table in message
    assert field in message
    assert "rcert.toml" in message


@pytest.mark.parametrize("text", [UNKNOWN[0][0], BAD_VALUES[1][0], BAD_VALUES[8][0]])
def test_rcert_check_refuses_them_in_one_line(tmp_path, run, text):
    (tmp_path / "rcert.toml").write_text(text)
    line = assert_one_error_line(*run("check", tmp_path / "rcert.toml",
                                      "--out", tmp_path / "out"))
    assert "rcert.toml" in line
    assert not (tmp_path / "out").exists()


# --- the resume key ---------------------------------------------------------------------------

N = 6
CHUNK = 2
N_CHUNKS = 3


# A tiny untrained checkpoint, and N random 8x8 inputs with ids 10, 13, ...
model, inputs = resumed_run_fixtures(
    "check-settings", latent_dim=2, hidden=(8,), id_step=3, first_id=10,
    inputs=lambda: torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(1)))


class _FakeAttack:
    """A stand-in for ``attack_certificates``: the certify rows plus hand-made empirical
    columns, judged per chunk over the run's family as the real one does."""

    def __init__(self, p_values: dict[int, float]) -> None:
        self.p_values = p_values
        self.families: list[int | None] = []

    def __call__(self, df, model, x, certify, attack, *, index, run, family=None,
                 audited=None):
        self.families.append(family)
        out = df.copy()
        bound = out["bound_certified"].to_numpy()
        out["margin_empirical"] = bound / 2
        out["margin_bracket_lo"] = bound / 4
        out["margin_bracket_hi"] = bound / 2
        out["p_check"] = 0.1
        out["p_check_upper"] = 0.2
        out["k_verify"] = np.zeros(len(out), dtype=np.int64)
        out["p_verify"] = 0.0
        out["p_verify_upper"] = 0.1
        out["p_value"] = [self.p_values[int(i)] for i in np.asarray(index)]
        return judge(out, alpha=certify.alpha, correction=attack.correction, family=family)


CONFIG = CertifyConfig(r=5.0, n_samples=30, alpha=0.05, seed=0)
IDENTITY = {"model": "tiny", "data": "random", "n": N}


def _run(model, inputs, path, *, config=CONFIG, attack: AttackConfig | None = EMPIRICAL_ATTACK):
    x, index = inputs
    return rcert.runs.resume.certify_resumable(model, x, index, path=path, config=config,
                                               attack=attack, identity=IDENTITY, chunk=CHUNK)


@pytest.fixture
def fake_attack(inputs, monkeypatch):
    _, index = inputs
    fake = _FakeAttack({int(i): 0.5 for i in index})
    monkeypatch.setattr(rcert.runs.resume, "attack_certificates", fake)
    return fake


ATTACK_CHANGES = [{"threat": "both"}, {"threat": "sigma"}, {"preset": "standard"},
                  {"optimizer": "lbfgs"}, {"restarts": 2}, {"steps": 11}, {"n_noise": 31},
                  {"n_check": 201}, {"resolution": 0.05}, {"correction": "none"},
                  {"audit": 0}]


def _recomputes(model, inputs, path, monkeypatch, **kwargs) -> int:
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    _run(model, inputs, path, **kwargs)
    monkeypatch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
    return calls.calls


def test_the_same_settings_resume_without_recomputing(model, inputs, tmp_path, monkeypatch,
                                                      fake_attack):
    path = tmp_path / "run.jsonl"
    assert _recomputes(model, inputs, path, monkeypatch) == N_CHUNKS
    assert _recomputes(model, inputs, path, monkeypatch) == 0
    # An equal config built another way is the same key.
    same = AttackConfig(preset="careful", threat="mean", restarts=1)
    assert same == EMPIRICAL_ATTACK
    assert _recomputes(model, inputs, path, monkeypatch, attack=same) == 0


@pytest.mark.parametrize("change", ATTACK_CHANGES, ids=lambda c: next(iter(c)))
def test_any_attack_field_changes_the_key(model, inputs, tmp_path, monkeypatch, fake_attack,
                                          change):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    changed = dataclasses.replace(EMPIRICAL_ATTACK, **change) if "preset" not in change \
        else AttackConfig(**change)
    assert changed != EMPIRICAL_ATTACK
    assert _recomputes(model, inputs, path, monkeypatch, attack=changed) == N_CHUNKS
    assert _recomputes(model, inputs, path, monkeypatch, attack=changed) == 0


def test_attacking_or_not_changes_the_key(model, inputs, tmp_path, monkeypatch, fake_attack):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path, attack=None)
    assert _recomputes(model, inputs, path, monkeypatch) == N_CHUNKS


@pytest.mark.parametrize("change", [{"r": 4.0}, {"m": 0.6}, {"n_samples": 31},
                                    {"alpha": 0.04}, {"seed": 1}], ids=lambda c: next(iter(c)))
def test_any_certificate_field_changes_the_key(model, inputs, tmp_path, monkeypatch,
                                               fake_attack, change):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    changed = dataclasses.replace(CONFIG, **change)
    assert _recomputes(model, inputs, path, monkeypatch, config=changed) == N_CHUNKS
    assert _recomputes(model, inputs, path, monkeypatch, config=changed) == 0


def test_the_rcert_version_changes_the_key(model, inputs, tmp_path, monkeypatch, fake_attack):
    path = tmp_path / "run.jsonl"
    _run(model, inputs, path)
    assert _recomputes(model, inputs, path, monkeypatch) == 0
    monkeypatch.setattr(rcert.runs.resume, "_version", lambda: "99.0.0-not-this-one")
    assert _recomputes(model, inputs, path, monkeypatch) == N_CHUNKS
    assert _recomputes(model, inputs, path, monkeypatch) == 0


# --- the Holm verdict covers the whole run ------------------------------------------------------


def _holm(p, alpha, family):
    """Holm's step-down from its definition (see tests/evaluation/test_verdicts.py)."""
    order = sorted((v, j) for j, v in enumerate(p) if not math.isnan(v))
    out = [False] * len(p)
    for i, (value, j) in enumerate(order, start=1):
        if value > alpha / (family - i + 1):
            break
        out[j] = True
    return out


# By position: whole-run Holm over 6 rejects all six (sorted: 0.001 <= a/6, 0.002 <= a/5,
# 0.0105 <= a/4, 0.013 <= a/3, 0.02 <= a/2, 0.04 <= a); per chunk of two over family 6 only
# the two smallest pass (the thresholds stop at a/6, a/5).
P_BY_POSITION = [0.013, 0.001, 0.04, 0.0105, 0.002, 0.02]


def test_per_chunk_and_whole_run_holm_differ_here():
    alpha = CONFIG.alpha
    whole = _holm(P_BY_POSITION, alpha, N)
    per_chunk = [v for s in range(0, N, CHUNK)
                 for v in _holm(P_BY_POSITION[s:s + CHUNK], alpha, N)]
    assert whole == [True] * N
    assert per_chunk == [False, True, False, False, True, False]


@pytest.mark.parametrize("interrupted_on", [None, 2, 3])
def test_the_holm_verdict_covers_the_whole_run(model, inputs, tmp_path, monkeypatch,
                                               interrupted_on):
    _, index = inputs
    fake = _FakeAttack({int(i): p for i, p in zip(index, P_BY_POSITION, strict=True)})
    monkeypatch.setattr(rcert.runs.resume, "attack_certificates", fake)
    attack = AttackConfig(correction="holm")
    path = tmp_path / "run.jsonl"
    if interrupted_on is not None:
        monkeypatch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=interrupted_on))
        with pytest.raises(KeyboardInterrupt):
            _run(model, inputs, path, attack=attack)
        monkeypatch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
    out = _run(model, inputs, path, attack=attack)

    assert fake.families and set(fake.families) == {N}  # each chunk judged over the run
    assert out["index"].tolist() == index.tolist()
    assert (out["bound_certified"] > 0).all()
    assert (out["margin_empirical"] < out["bound_certified"]).all()
    np.testing.assert_array_equal(out["p_value"].to_numpy(), P_BY_POSITION)
    want = _holm(P_BY_POSITION, CONFIG.alpha, N)
    assert out["violation"].tolist() == want
    rejudged = judge(out.drop(columns=["violation", "tightness"]), alpha=CONFIG.alpha,
                     correction="holm")
    pd.testing.assert_series_equal(out["violation"], rejudged["violation"])
    assert set(EMPIRICAL_COLUMNS) <= set(out.columns)


def test_without_correction_the_verdict_is_per_input(model, inputs, tmp_path, monkeypatch):
    _, index = inputs
    p = [0.2, 0.049, 0.051, 0.001, 0.06, 0.05]
    fake = _FakeAttack({int(i): v for i, v in zip(index, p, strict=True)})
    monkeypatch.setattr(rcert.runs.resume, "attack_certificates", fake)
    out = _run(model, inputs, tmp_path / "run.jsonl", attack=AttackConfig(correction="none"))
    assert out["violation"].tolist() == [v <= CONFIG.alpha for v in p]
