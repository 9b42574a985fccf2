"""The attack-strength audit (``AttackConfig.audit``, rcert.evaluation.audit).

A seeded subset of a run's inputs is attacked again with the next stronger preset; the
``margin_empirical_audit`` and ``p_value_audit`` columns, the summary's ``audit`` block and
the ``weak-attack`` warning report how often that lowered a margin by more than the search
resolution, and how often fresh draws confirmed it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import CertifyCalls, LinearVAE

import rcert
import rcert.runs.resume
from rcert.evaluation.audit import audit_subset
from rcert.evaluation.verdicts import start_radii
from rcert.settings import AttackConfig, attack_label, stronger
from rcert.statistics.summary import summarize

# One PGD step from a random start: on an anisotropic linear VAE it stops short of the top
# singular direction, which the stronger preset's 50 steps reach.
WEAK = AttackConfig(preset="careful", restarts=1, steps=1, n_check=100, audit=5)
R = 2.0


class BoxedLinearVAE(LinearVAE):
    """The linear VAE of conftest with a data range wide enough never to bind here."""

    data_range = (-10.0, 10.0)


@pytest.fixture(scope="module")
def model():
    return BoxedLinearVAE(input_size=12, latent_dim=3)


@pytest.fixture(scope="module")
def inputs():
    x = torch.rand(7, 12, generator=torch.Generator().manual_seed(0))
    return x, np.arange(7, dtype=np.int64) * 5 + 3


def _certify(model, inputs, attack=WEAK, r=R):
    """The rows and the reliability warnings (code and message) of one attacked run."""
    x, index = inputs
    with rcert.checks.collect(reissue=False) as warned:
        df = rcert.certify(model, x, r=r, n_samples=200, index=index, attack=attack)
    return df, warned


def _codes(warned):
    return [w["code"] for w in warned]


@pytest.fixture(scope="module")
def audited(model, inputs):
    return _certify(model, inputs)


def _recount(df, alpha=0.001):
    """The audit's counts from the rows, written out independently of rcert.statistics."""
    n_audited = n_lowered = 0
    largest = 0.0
    n_confirmed = int((df["p_value_audit"] <= alpha).sum())
    for weak, strong in zip(df["margin_empirical"], df["margin_empirical_audit"],
                            strict=True):
        if np.isnan(strong):
            continue
        n_audited += 1
        if np.isinf(weak):
            n_lowered += int(np.isfinite(strong))
            largest = max(largest, 1.0 if np.isfinite(strong) else 0.0)
            continue
        n_lowered += int(strong < weak - 0.02 * weak)
        if weak > 0:
            largest = max(largest, 1 - strong / weak)
    return n_audited, n_lowered, n_confirmed, largest


def test_the_subset_depends_only_on_the_seed_and_the_ids():
    ids = np.arange(100, 160)
    chosen = audit_subset(ids, seed=3, size=8)
    assert len(chosen) == 8 and set(chosen) <= set(ids)
    assert np.array_equal(chosen, np.sort(chosen))
    shuffled = np.random.default_rng(0).permutation(ids)
    assert np.array_equal(audit_subset(shuffled, seed=3, size=8), chosen)
    assert not np.array_equal(audit_subset(ids, seed=4, size=8), chosen)
    assert np.array_equal(audit_subset(ids[:5], seed=3, size=8), ids[:5])  # all, when few


def test_the_stronger_attack_is_the_next_preset_never_weaker_in_any_knob():
    assert stronger(AttackConfig(preset="fast")) == AttackConfig(preset="careful", audit=0)
    # careful has more common draws than standard, and the audit keeps at least those.
    assert stronger(AttackConfig()) == AttackConfig(preset="standard", n_noise=128, audit=0)
    assert stronger(AttackConfig(preset="standard")) == AttackConfig(preset="thorough",
                                                                     n_noise=128, audit=0)
    last = stronger(AttackConfig(preset="thorough", threat="both"))
    assert last == AttackConfig(preset="thorough", threat="both", restarts=20, n_noise=128,
                                audit=0)
    assert stronger(AttackConfig(steps=500)).steps == 500
    assert attack_label(last) == "thorough (restarts 20, steps 200, n_noise 128)"


def test_the_audit_column_is_a_direct_run_of_the_stronger_preset(model, inputs, audited):
    df, _ = audited
    x, index = inputs
    rows = np.flatnonzero(df["margin_empirical_audit"].notna().to_numpy())
    assert np.array_equal(index[rows], audit_subset(index, seed=0, size=WEAK.audit))
    direct = rcert.empirical_margin(
        model, x[rows], r=R, attack=AttackConfig(preset="standard", n_noise=128, n_check=100),
        start=start_radii(df)[rows], index=index[rows], seed=0)
    np.testing.assert_array_equal(df["margin_empirical_audit"].to_numpy()[rows],
                                  direct["margin_empirical"].to_numpy())


def test_the_summary_counts_are_the_rows_counts_and_the_warning_follows_them(audited):
    df, warned = audited
    codes = _codes(warned)
    audit = summarize(df)["empirical"]["audit"]
    n_audited, n_lowered, n_confirmed, largest = _recount(df)
    assert (audit["n_audited"], audit["n_lowered"], audit["n_confirmed"]) == (
        n_audited, n_lowered, n_confirmed)
    assert audit["max_drop"] == pytest.approx(largest, rel=1e-12)
    assert audit["attack"] == "standard (restarts 5, steps 50, n_noise 128)"
    lowered_ids = df.loc[df["margin_empirical_audit"]
                         < 0.98 * df["margin_empirical"], "index"].tolist()
    assert audit["lowered"] == lowered_ids
    # Only a margin lowered by more than the resolution is put to the confirming test.
    assert df.loc[df["p_value_audit"].notna(), "index"].tolist() == lowered_ids
    # The one-step attack is too weak here, and the run says so.
    assert n_confirmed > 0
    assert "weak-attack" in codes


def test_the_warning_prints_the_rows_counts(audited):
    df, warned = audited
    n_audited, _, n_confirmed, largest = _recount(df)
    (message,) = [w["message"] for w in warned if w["code"] == "weak-attack"]
    broke = re.search(r"attack broke (\d+) of (\d+) audited inputs", message)
    assert (int(broke.group(1)), int(broke.group(2))) == (n_confirmed, n_audited)
    drop = int(re.search(r"\(max drop (\d+)%\)", message).group(1))
    assert abs(drop - 100 * largest) <= 0.5
    assert message.startswith("the standard (restarts 5, steps 50, n_noise 128) attack")
    assert "empirical margin of the careful attack" in message


def test_no_drop_gives_no_warning(model, inputs):
    # At r below every input's unperturbed quantile, every margin is 0 under any attack.
    df, warned = _certify(model, inputs, r=0.3)
    codes = _codes(warned)
    audit = summarize(df)["empirical"]["audit"]
    assert audit["n_audited"] == WEAK.audit
    assert (df["margin_empirical"] == 0).all()
    assert audit["n_lowered"] == audit["n_confirmed"] == _recount(df)[2] == 0
    assert "weak-attack" not in codes


def test_audit_zero_turns_it_off(model, inputs):
    df, warned = _certify(model, inputs, attack=AttackConfig(restarts=1, steps=1, n_check=100,
                                                             audit=0))
    codes = _codes(warned)
    assert not {"margin_empirical_audit", "p_value_audit"} & set(df.columns)
    assert "audit" not in summarize(df)["empirical"]
    assert "weak-attack" not in codes


def test_a_chunked_and_resumed_run_audits_what_a_one_shot_run_does(model, inputs, tmp_path,
                                                                   monkeypatch, audited):
    # Chunks of 3 split the audited ids {3, 13, 23, 28, 33} over all three chunks, and the
    # run is killed after the first; the resumed run must still audit exactly those ids.
    x, index = inputs
    config = rcert.CertifyConfig(r=R, n_samples=200)

    def run(path):
        with rcert.checks.collect(reissue=False) as warned:
            df = rcert.runs.resume.certify_resumable(model, x, index, path=path, config=config,
                                                     attack=WEAK, chunk=3)
        return df, [w["code"] for w in warned]

    with monkeypatch.context() as patch:
        patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=2))
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "run.jsonl")
    resumed, codes = run(tmp_path / "run.jsonl")
    one_shot, one_shot_warned = audited
    one_shot_codes = _codes(one_shot_warned)
    for column in ("margin_empirical_audit", "p_value_audit"):
        assert np.array_equal(resumed[column].notna(), one_shot[column].notna())
        np.testing.assert_allclose(resumed[column], one_shot[column], rtol=1e-6)
    assert resumed.loc[resumed["margin_empirical_audit"].notna(), "index"].tolist() == [
        3, 13, 23, 28, 33]
    assert ("weak-attack" in codes) == ("weak-attack" in one_shot_codes)
