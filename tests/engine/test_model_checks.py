"""Reliability checks of a model before it is certified (``rcert.engine.model_checks``, run by
``rcert.certify``), and ``rcert.checks.collect``, which records the warnings once each."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from conftest import LinearVAE, TinyMLPVAE

import rcert
from rcert import checks
from rcert.checks import ReliabilityWarning
from rcert.engine import certify as engine


class SamplingEncoder(LinearVAE):
    """Adds fresh noise to ``mu`` on every call: ``encode`` samples instead of returning mu."""

    def __init__(self) -> None:
        super().__init__()
        self.noise = torch.Generator().manual_seed(123)

    def encode(self, x):
        mu, sigma = super().encode(x)
        return mu + torch.randn(mu.shape, generator=self.noise, dtype=mu.dtype), sigma


class BatchNormalisedEncoder(LinearVAE):
    """Centres each input on its batch's mean: an input's encoding depends on its batch."""

    def encode(self, x):
        return super().encode(x - x.mean(0, keepdim=True))


class LogitDecoder(TinyMLPVAE):
    """Returns the decoder's logits (no sigmoid) although its data range is [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.data_range = (0.0, 1.0)

    def decode(self, z):
        return 10.0 * self.dec[:-1](z)


class SamplingLogitModel(LogitDecoder):
    """Both defects at once."""

    def __init__(self) -> None:
        super().__init__()
        self.noise = torch.Generator().manual_seed(7)

    def encode(self, x):
        mu, sigma = super().encode(x)
        return mu + torch.randn(mu.shape, generator=self.noise, dtype=mu.dtype), sigma


class ClampedDecoder(LinearVAE):
    """A clean model whose reconstructions reach both ends of its data range [0, 1]."""

    data_range = (0.0, 1.0)

    def decode(self, z):
        return (super().decode(z) + 0.5).clamp(0.0, 1.0)


class SaturatedDecoder(LinearVAE):
    """A clean Bernoulli-style decoder with probabilities close to 0 and 1."""

    data_range = (0.0, 1.0)

    def decode(self, z):
        return torch.sigmoid(20.0 * super().decode(z))


def _x(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def _reliability(caught) -> list[ReliabilityWarning]:
    return [w.message for w in caught if isinstance(w.message, ReliabilityWarning)]


def _certify_recording(model, x, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = rcert.certify(model, x, **kwargs)
    return df, _reliability(caught)


CASES = [(SamplingEncoder, 12, "nondeterministic"),
         (BatchNormalisedEncoder, 12, "batch-coupling"),
         (LogitDecoder, 10, "decoder-range")]


@pytest.mark.parametrize(("cls", "d", "code"), CASES, ids=[c for *_, c in CASES])
def test_each_defect_warns_with_its_code(cls, d, code):
    model = cls()
    with pytest.warns(ReliabilityWarning, match=code) as record:
        df = rcert.certify(model, _x(6, d), r=1.0, n_samples=20)
    codes = [w.message.code for w in record if isinstance(w.message, ReliabilityWarning)]
    assert codes == [code]
    # The numbers are still computed, and the warning travels with them.
    assert len(df) == 6
    assert [w["code"] for w in df.attrs["warnings"]] == [code]
    [entry] = df.attrs["warnings"]
    assert set(entry) == {"code", "message"}
    assert entry["message"] and "\n" not in entry["message"]


def test_the_defects_are_real():
    # Preconditions of the cases above, checked from the models themselves.
    x = _x(6, 12)
    sampler = SamplingEncoder()
    assert not torch.equal(sampler.encode(x)[0], sampler.encode(x)[0])
    coupled = BatchNormalisedEncoder()
    alone = torch.cat([coupled.encode(x[i:i + 1])[0] for i in range(6)])
    assert not torch.allclose(coupled.encode(x)[0], alone)
    logits = LogitDecoder()
    with torch.no_grad():
        g = logits.decode(logits.encode(_x(6, 10))[0])
    assert float(g.min()) < -0.1 or float(g.max()) > 1.1
    # The clean range models do span their whole range, up to its ends.
    for edge, d in ((ClampedDecoder(), 12), (SaturatedDecoder(), 12)):
        with torch.no_grad():
            g = edge.decode(edge.encode(_x(6, d))[0])
        assert float(g.min()) < 0.01 and float(g.max()) > 0.99


def test_the_engine_warns_too():
    # rcert.engine.certify.certify, without the API's collect around it.
    with pytest.warns(ReliabilityWarning, match="batch-coupling"):
        engine.certify(BatchNormalisedEncoder(), _x(5, 12), r=1.0, n_samples=10)


@pytest.mark.parametrize(("model", "d"), [(TinyMLPVAE(), 10), (LinearVAE(), 12),
                                          (LinearVAE(seed=3, s=0.1), 12),
                                          (ClampedDecoder(), 12), (SaturatedDecoder(), 12)],
                         ids=["tiny-mlp", "linear", "linear-small-sigma", "clamped",
                              "saturated"])
def test_clean_models_raise_no_reliability_warning(model, d):
    df, found = _certify_recording(model, _x(6, d), r=1.0, n_samples=20)
    assert found == []
    assert df.attrs["warnings"] == []


def test_a_single_input_cannot_show_batch_coupling_but_is_not_a_false_alarm():
    # One row: nothing to couple to; the check must not fire on a clean model either.
    _, found = _certify_recording(TinyMLPVAE(), _x(1, 10), r=1.0, n_samples=10)
    assert found == []


def test_certify_lists_each_code_once_in_attrs():
    model = SamplingLogitModel()
    # A small memory budget: several chunks, still one check and one entry per code.
    df, found = _certify_recording(model, _x(9, 10), r=1.0, n_samples=20, memory_mb=0.01)
    codes = [w["code"] for w in df.attrs["warnings"]]
    assert sorted(codes) == ["decoder-range", "nondeterministic"]
    assert all(set(w) == {"code", "message"} for w in df.attrs["warnings"])
    assert sorted(w.code for w in found) == sorted(codes)
    # The dicts are the warnings' own code and message.
    assert {(w.code, w.message) for w in found} == {(w["code"], w["message"])
                                                   for w in df.attrs["warnings"]}


# --- rcert.checks.collect ---------------------------------------------------------------------


def _emit() -> None:
    checks.warn("zero-gradient", "first")
    checks.warn("zero-gradient", "first")
    warnings.warn("an ordinary warning", UserWarning, stacklevel=1)
    checks.warn("zero-gradient", "second")
    checks.warn("nondeterministic", "first")
    warnings.warn("going away", DeprecationWarning, stacklevel=1)
    checks.warn("nondeterministic", "first")


# Each code once, with its first message: chunks of one run word one problem differently.
WANT = [{"code": "zero-gradient", "message": "first"},
        {"code": "nondeterministic", "message": "first"}]


@pytest.mark.parametrize("reissue", [True, False])
def test_collect_records_each_code_once(reissue):
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with checks.collect(reissue=reissue) as found:
            _emit()
    assert found == WANT
    again = [(w.code, w.message) for w in _reliability(outside)]
    assert again == ([(w["code"], w["message"]) for w in WANT] if reissue else [])
    # Other warnings pass through, once each, with their category and text.
    others = [(w.category, str(w.message)) for w in outside
              if not isinstance(w.message, ReliabilityWarning)]
    assert others == [(UserWarning, "an ordinary warning"),
                      (DeprecationWarning, "going away")]


def test_collect_is_the_default_reissue_and_nests():
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with checks.collect(reissue=False) as outer:
            with checks.collect() as inner:
                _emit()
            checks.warn("decoder-range", "after")
    assert _reliability(outside) == []
    assert inner == WANT
    assert outer == [*WANT, {"code": "decoder-range", "message": "after"}]


def test_warn_refuses_unknown_codes_and_carries_its_code():
    with pytest.raises(ValueError, match="no-such-code"):
        checks.warn("no-such-code", "text")
    for code in checks.CODES:
        with pytest.warns(ReliabilityWarning) as record:
            checks.warn(code, "why")
        [w] = record
        assert w.message.code == code and w.message.message == "why"
        assert code in str(w.message)


def test_the_decoder_range_warning_prints_the_reconstructions_span():
    # The check probes the first 4 inputs: their g(mu(x)), computed here directly.
    model, x = LogitDecoder(), _x(6, 10)
    with torch.no_grad():
        g = model.decode(model.encode(x[:4])[0])
    with pytest.warns(ReliabilityWarning, match="decoder-range"):
        df = rcert.certify(model, x, r=1.0, n_samples=20)
    (entry,) = df.attrs["warnings"]
    span = re.search(r"span \[(\S+), (\S+)\]", entry["message"])
    assert (float(span.group(1)), float(span.group(2))) == pytest.approx(
        (float(g.min()), float(g.max())), rel=1e-2)
