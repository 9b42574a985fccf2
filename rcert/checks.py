"""Reliability warnings: things about a model or a run that make its numbers less trustworthy.

In the spirit of AutoAttack's ``checks.py``. A warning never stops a run; it is a
:class:`ReliabilityWarning` with a short ``code`` and a one-line message that says what is
wrong and what to do. :func:`collect` records the warnings issued inside it, once per code,
so that runners print each once to stderr and store them in the result
(``warnings`` in the JSON document). Python users see ordinary :mod:`warnings`.

Codes:

* ``zero-gradient``: an attack's objective had a zero gradient for some inputs, so those
  attacks did not move from their start;
* ``nondeterministic``: ``encode``/``decode`` give different outputs for the same input in
  eval mode (dropout left on, sampling inside ``encode``);
* ``batch-coupling``: an input's encoding depends on the other inputs of its batch
  (BatchNorm in train mode), so per-input Jacobians and rows are wrong;
* ``decoder-range``: reconstructions fall outside the model's data range (a decoder that
  returns logits instead of probabilities, say);
* ``undetectable-violation``: ``n_check`` is too small for any violation to be detected at
  the chosen level, so ``violation`` cannot be True;
* ``weak-attack``: the attack-strength audit (``AttackConfig.audit``) re-attacked some inputs
  with the next stronger preset, and it lowered at least one empirical margin by more than
  the search resolution, so the run's empirical margins may overstate the true ones;
* ``limit-crossing``: a DD-curve crosses its AADDC limit line (Lu & Chen), so part of
  its area counts against it; move the limit, or read the AADDC with that in mind.

The model checks (:data:`MODEL_CHECKS`, run by :mod:`rcert.engine.model_checks` on a few
inputs before any certificate, attack or curve) are stricter: a failed one stops the run
with an :class:`~rcert.errors.RcertError` unless the user allows its code
(``RunConfig.allow``, ``--allow CODE``); an allowed failure becomes a reliability warning
of that code, recorded with the result. Besides
``nondeterministic``, ``batch-coupling`` and ``decoder-range`` they are:

* ``sigma``: the encoder's sigma is not positive, not finite, or implausibly wide for the
  stated convention (more than 5% of entries above 3, or a median above 1.5: a mean read
  as a log-sigma, e.g. interleaved parameters split the wrong way); a log-variance read as
  a standard deviation shows as a negative sigma;
* ``no-data-range``: the model states no data range, so attacks would run unboxed;
* ``zero-input-gradient``: the encoder mean's gradient with respect to the input is zero
  or missing (a detached input, a numpy step, or an encoder that ignores it).

Deterministic encoders pass ``sigma`` (their sigma plays no part); without a data range,
``decoder-range`` has nothing to compare with and passes, ``no-data-range`` fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: The checks a model must pass before it is certified; ``--allow`` takes these codes.
MODEL_CHECKS = ("nondeterministic", "batch-coupling", "decoder-range", "sigma", "no-data-range",
                "zero-input-gradient")
CODES = ("zero-gradient", *MODEL_CHECKS, "undetectable-violation", "weak-attack",
         "limit-crossing")


class ReliabilityWarning(UserWarning):
    """A warning about the reliability of a result; ``code`` names the check (see CODES)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def warn(code: str, message: str) -> None:
    """Issue one reliability warning (``code`` from :data:`CODES`)."""
    if code not in CODES:
        raise ValueError(f"unknown check code {code!r}")
    warnings.warn(ReliabilityWarning(code, message), stacklevel=3)


@contextmanager
def collect(*, reissue: bool = True) -> Iterator[list[dict[str, str]]]:
    """Record the reliability warnings issued inside the block, each code once (its first
    message: chunks of one run may word the same problem with different figures).

    Yields a list that is filled, when the block ends, with ``{"code", "message"}`` dicts;
    other warnings pass through untouched. With ``reissue`` (the default) the recorded
    warnings are issued again then, so an enclosing :func:`collect` (or Python's default
    filter) sees them too; the CLI passes False and prints them itself.
    """
    found: list[dict[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReliabilityWarning)
        yield found
    for item in caught:
        if isinstance(item.message, ReliabilityWarning):
            entry = {"code": item.message.code, "message": item.message.message}
            if all(seen["code"] != entry["code"] for seen in found):
                found.append(entry)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    for entry in found if reissue else ():
        warnings.warn(ReliabilityWarning(entry["code"], entry["message"]), stacklevel=3)
