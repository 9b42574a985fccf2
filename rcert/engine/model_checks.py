"""Checks of a model's behaviour on a few inputs before any work on it (see :mod:`rcert.checks`).

They catch glue mistakes that would otherwise certify silently: an encoder that samples or
keeps dropout on in eval mode, rows coupled across the batch, a decoder that returns logits
where the data range says probabilities, a sigma read in the wrong convention, a model with
no data range, an encoder whose mean is cut off from its input's gradient.
:func:`run_checks` reports on all of :data:`~rcert.checks.MODEL_CHECKS`; :func:`check_model`
stops a run on a failure the user did not allow, and turns an allowed one into a reliability
warning of its code.

Every check runs on the first :data:`PROBE` inputs in the model's current mode (the entry
points put it in ``eval()`` mode first), so BatchNorm running statistics are not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rcert import checks, validate
from rcert.errors import RcertError, first_line
from rcert.models import contract
from rcert.models.adapters import SIGMA_CONVERSIONS
from rcert.models.contract import ModelTraits, traits
from rcert.settings import RunConfig

#: Inputs the checks run on: enough to see batch coupling and a spread of sigma, cheap next
#: to any certificate.
PROBE = 8
# Relative differences below this are float rounding of different batch shapes (float32);
# half-precision models get a multiple of their own epsilon instead.
_RTOL = 1e-4
_EPS_MULTIPLE = 16
# Reconstructions this share of the data range outside it still count as inside.
_RANGE_SLACK = 1e-3
# A posterior three times wider than the N(0, I) prior is implausible for any trained VAE;
# a mean read as a log-sigma gives exp(mu) > 3 for mu > 1.1, 14% of N(0, 1).
_WIDE_SIGMA = 3.0
_WIDE_SHARE = 0.05
_MEDIAN_SIGMA = 1.5


@dataclass(frozen=True)
class CheckResult:
    """One model check's verdict.

    Parameters
    ----------
    code
        The check, one of :data:`rcert.checks.MODEL_CHECKS`.
    passed
        Whether the model passed it.
    message
        One line: for a failure what was seen and the fix, for a pass a short factual note.
    """

    code: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Probe:
    """The first :data:`PROBE` inputs and the model's first answers on them (made by
    :func:`probe`): what every check looks at, and the latent size the entry points need."""

    x: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    g: torch.Tensor

    @property
    def latent_dim(self) -> int:
        """``d_z``, the encoder mean's width."""
        return int(self.mu.shape[1])


def _rtol(t: torch.Tensor) -> float:
    return max(_RTOL, _EPS_MULTIPLE * torch.finfo(t.dtype).eps)


def _differ(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` over the larger of both scales; NaNs in the same places agree."""
    if torch.equal(a, b):  # the usual answer, at a fraction of the cost
        return 0.0
    scale = max(float(a.nan_to_num(0.0, 0.0, 0.0).abs().max()),
                float(b.nan_to_num(0.0, 0.0, 0.0).abs().max()), 1e-12)
    same = torch.isclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    return float(torch.where(same, 0.0, (a - b).abs()).nan_to_num(float("inf")).max()) / scale


def _nondeterministic(model: nn.Module, p: Probe, stochastic: bool) -> CheckResult:
    code = "nondeterministic"
    with torch.no_grad():
        mu, sigma = model.encode(p.x)
        g = contract.decode(model, p.mu, contract.context(model, p.x))
    seen = {"mean": _differ(p.mu, mu), "reconstruction": _differ(p.g, g)}
    if stochastic:
        seen["sigma"] = _differ(p.sigma, sigma)
    worst = max(seen, key=seen.__getitem__)
    if seen[worst] > _rtol(p.mu):
        return CheckResult(code, False, (
            f"two calls on the same inputs in eval mode gave different outputs (the {worst} "
            f"moved by {seen[worst]:.2g} of its scale): sampling inside encode, or dropout "
            f"that eval() does not switch off; encode must return the mean and sigma, decode "
            f"the mean g(z)"))
    return CheckResult(code, True, "encode and decode repeat their outputs in eval mode")


def _batch_coupling(model: nn.Module, p: Probe, repeatable: bool) -> CheckResult:
    code = "batch-coupling"
    if not repeatable:
        return CheckResult(code, True, "not judged: encode does not repeat its outputs "
                                       "(see nondeterministic)")
    n = p.x.shape[0]
    if n < 2 or bool((p.x == p.x[:1]).all()):
        return CheckResult(code, True, "one distinct input: nothing to couple it to")
    # Reversed and with the first input repeated: a new order and new batch statistics,
    # still at least two rows (BatchNorm refuses one).
    batch = torch.cat([p.x.flip(0), p.x[:1]])
    with torch.no_grad():
        mu = model.encode(batch)[0][:n].flip(0)
    moved = _differ(p.mu, mu)
    if moved > _rtol(p.mu):
        return CheckResult(code, False, (
            f"an input's mean moved by {moved:.2g} of its scale when the other inputs of its "
            f"batch changed (BatchNorm in train mode, or batch statistics in encode); "
            f"per-input Jacobians and rows are then wrong: encode each input on its own "
            f"statistics"))
    return CheckResult(code, True, f"{n} inputs encode the same in another batch")


def _decoder_range(p: Probe, data_range: tuple[float, float] | None,
                   likelihood: str | None) -> CheckResult:
    code = "decoder-range"
    if data_range is None:
        return CheckResult(code, True, "no data range to compare the reconstructions with")
    lo, hi = data_range
    if not bool(torch.isfinite(p.g).all()):
        return CheckResult(code, False, (
            f"{int((~torch.isfinite(p.g)).sum())} reconstruction values are NaN or Inf; "
            f"decode must return the decoder mean g(z)"))
    g_min, g_max = float(p.g.min()), float(p.g.max())
    if likelihood == "gaussian":
        # The check catches logits returned for probabilities; a model that declares a
        # Gaussian likelihood has none, and its mean is unbounded (it overshoots sharp edges).
        return CheckResult(code, True, f"reconstructions span [{g_min:.3g}, {g_max:.3g}]; a "
                                       f"Gaussian likelihood's mean is not held to the data "
                                       f"range")
    slack = _RANGE_SLACK * (hi - lo)
    if g_min < lo - slack or g_max > hi + slack:
        return CheckResult(code, False, (
            f"reconstructions span [{g_min:.3g}, {g_max:.3g}] outside the data range "
            f"[{lo:g}, {hi:g}]; decode must return the decoder mean (for a Bernoulli decoder "
            f"the probabilities, not the logits)"))
    return CheckResult(code, True, f"reconstructions span [{g_min:.3g}, {g_max:.3g}] inside "
                                   f"the data range [{lo:g}, {hi:g}]")


def _conventions(kind: str) -> tuple[str, str]:
    """How the model's sigma was read, and the fix that names the other conventions."""
    others = [k for k in SIGMA_CONVERSIONS if k != kind]
    read = (f"read with the stated convention {kind!r}" if kind != "sigma"
            else "read as a standard deviation")
    fix = (f"if the encoder's second output is another quantity, pass --sigma "
           f"{'|'.join(others)} (rcert.wrap(model, sigma=...))")
    return read, fix


def _sigma(p: Probe, kind: str, stochastic: bool) -> CheckResult:
    code = "sigma"
    if not stochastic:
        return CheckResult(code, True, "a deterministic encoder: its sigma plays no part")
    read, fix = _conventions(kind)
    s = p.sigma
    bad = ~(torch.isfinite(s) & (s > 0))
    if bad.any():
        return CheckResult(code, False, (
            f"sigma, {read}, is <= 0 or not finite in {int(bad.sum())} of {s.numel()} "
            f"entries (e.g. {float(s[bad][0]):.3g}); it must be a standard deviation: {fix}"))
    wide = float((s > _WIDE_SIGMA).double().mean())
    median = float(s.median())
    if wide > _WIDE_SHARE or median > _MEDIAN_SIGMA:
        return CheckResult(code, False, (
            f"sigma, {read}, is implausibly wide: {wide:.0%} of entries exceed "
            f"{_WIDE_SIGMA:g} (max {float(s.max()):.3g}), median {median:.3g}, against the "
            f"N(0, I) prior's 1 (a mean read as a log-sigma, e.g. interleaved (mu, log sigma) "
            f"pairs split the wrong way, or the wrong convention); {fix}"))
    return CheckResult(code, True, f"sigma in [{float(s.min()):.2g}, {float(s.max()):.2g}] "
                                   f"(median {median:.2g})")


def _data_range(data_range: tuple[float, float] | None) -> CheckResult:
    code = "no-data-range"
    if data_range is None:
        return CheckResult(code, False, (
            "the model states no data range, so attacks would run unboxed; pass "
            "--data-range low,high (or wrap(..., data_range=...))"))
    return CheckResult(code, True, f"data range [{data_range[0]:g}, {data_range[1]:g}]")


def _input_gradient(model: nn.Module, p: Probe) -> CheckResult:
    code = "zero-input-gradient"
    x = p.x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        mu = model.encode(x)[0]
        grad = None
        if mu.requires_grad:
            # Distinct positive weights on the entries of mu, not sum(mu): a mean and its
            # negative, say, would cancel out of the sum.
            weights = torch.linspace(0.5, 1.5, mu.numel(), dtype=mu.dtype, device=mu.device)
            (grad,) = torch.autograd.grad(mu, x, grad_outputs=weights.view_as(mu),
                                          allow_unused=True)
    if grad is None or not bool((grad != 0).any()):
        return CheckResult(code, False, (
            "encode's mean does not depend on its input through autograd (a detached or "
            "numpy step): the Jacobian and attacks need gradients; keep encode in torch "
            "operations on x"))
    share = float((grad.flatten(1) != 0).any(dim=1).double().mean())
    return CheckResult(code, True, f"the mean's input gradient is non-zero for {share:.0%} "
                                   f"of the probe inputs")


def probe(model: nn.Module, x: torch.Tensor, index: torch.Tensor | None = None) -> Probe:
    """Encode and decode the first :data:`PROBE` inputs of ``x`` without gradients, a
    model/data mismatch turned into an RcertError: the first call any entry point makes on
    a user's model. A batch of :data:`PROBE`, not one, so that BatchNorm in train mode
    reaches the batch-coupling check instead of failing here. A non-finite mean or
    reconstruction stops here, naming the input by its id in ``index`` (default: position)."""
    first = x[:PROBE]
    try:
        with torch.no_grad():
            mu, sigma = model.encode(first)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise RcertError(f"the model cannot encode data of input shape "
                         f"{tuple(first.shape[1:])}: {first_line(exc)}") from exc
    if not isinstance(mu, torch.Tensor) or not isinstance(sigma, torch.Tensor) \
            or mu.ndim != 2 or mu.shape != sigma.shape:
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                  for t in (mu, sigma)]
        raise RcertError(f"encode(x) must return (mu, sigma) of shape (batch, d_z); got "
                         f"{shapes[0]} and {shapes[1]}")
    index = torch.arange(first.shape[0]) if index is None else index[:PROBE]
    validate.check_finite(mu, index, "the encoder's mean")
    with torch.no_grad():
        g = contract.decode(model, mu, contract.context(model, first))
    validate.check_finite(g, index, "the decoder's output")
    return Probe(first, mu, sigma, g)


def run_checks(model: nn.Module, p: Probe, model_traits: ModelTraits) -> list[CheckResult]:
    """Run every model check on the probe ``p`` (:func:`probe`).

    Parameters
    ----------
    model
        The model, already in the mode and on the device it will be used in.
    p
        The model's answers on the first inputs, made by :func:`probe` from inputs checked
        and on the model's device and dtype.
    model_traits
        The model's traits (:func:`rcert.models.contract.traits`).

    Returns
    -------
    list of CheckResult
        One per code of :data:`rcert.checks.MODEL_CHECKS`, in that order. Errors raised by
        the model itself propagate.
    """
    box = model_traits.data_range
    repeats = _nondeterministic(model, p, model_traits.stochastic)
    return [repeats,
            _batch_coupling(model, p, repeats.passed),
            _decoder_range(p, box, model_traits.likelihood),
            _sigma(p, getattr(model, "sigma_kind", "sigma"), model_traits.stochastic),
            _data_range(box),
            _input_gradient(model, p)]


def check_model(model: nn.Module, p: Probe, model_traits: ModelTraits,
                allow: Sequence[str] = ()) -> list[CheckResult]:
    """Run the model checks; stop on a failure not in ``allow``, warn on one in it.

    Parameters
    ----------
    model, p, model_traits
        As in :func:`run_checks`.
    allow
        Codes of :data:`rcert.checks.MODEL_CHECKS` whose failure is accepted
        (``RunConfig.allow``, ``--allow CODE``); each such failure becomes a reliability
        warning of its code, recorded with the result.

    Returns
    -------
    list of CheckResult
        The results of :func:`run_checks`.

    Raises
    ------
    RcertError
        One line naming every failed check that is not allowed, and how to allow it.
    """
    results = run_checks(model, p, model_traits)
    refused = [r for r in results if not r.passed and r.code not in allow]
    if len(refused) == 1:
        (r,) = refused
        raise RcertError(f"model check failed: {r.code}: {r.message}; fix the model or pass "
                         f"--allow {r.code}")
    if refused:
        listed = "; ".join(f"{r.code} ({r.message})" for r in refused)
        flags = " ".join(f"--allow {r.code}" for r in refused)
        raise RcertError(f"model checks failed: {listed}; fix them or pass {flags}")
    for r in results:
        if not r.passed:
            checks.warn(r.code, f"{r.message} (allowed)")
    return results


def prepare_checked(model: nn.Module, x: torch.Tensor | np.ndarray, *,
                    index: np.ndarray | None, seed: int, run: RunConfig
                    ) -> tuple[nn.Module, torch.Tensor, torch.Tensor, Probe]:
    """:func:`rcert.validate.prepare`, then :func:`check_model` with ``run.allow``: what an
    entry point that takes a model does before any work on it. Returns what ``prepare``
    returns and the checks' :class:`Probe`."""
    model, x, index_t = validate.prepare(model, x, index=index, seed=seed, device=run.device)
    p = probe(model, x, index_t)
    check_model(model, p, traits(model), allow=run.allow)
    return model, x, index_t, p
