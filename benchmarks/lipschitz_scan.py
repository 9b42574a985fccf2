"""The Lipschitz-VAE radius scan, rebuilt on ``rcert.attacks``, and the fresh-draw recheck.

``estimate_R_margin`` of FabianBarrett/Lipschitz_VAEs: candidates
``np.arange(0.05, max_R + 1e-9, 0.05)``; the smallest is tested first and returned if broken;
otherwise candidates are scanned from the largest down and the first robust one is
returned. A test at radius ``c`` runs 5 attacks from random starts, each followed by a check
on 40 fresh draws; broken if any start gives ``p_hat <= 0.5``. Decoder rows are counted by
:class:`DecodeCounter`. :func:`recheck` checks successes again on 4000 fresh draws (not
counted). Used by ``bench_empirical.py``, whose docstring says more.
"""

from __future__ import annotations

import common
import numpy as np
import torch

from rcert.attacks import objectives, optimizers
from rcert.attacks.objectives import Encoded
from rcert.attacks.projection import data_box
from rcert.engine import montecarlo, noise
from rcert.evaluation import empirical
from rcert.settings import AttackConfig, ThreatModel

RESOLUTION = 0.05
M = 0.5
# The public code's scan: 5 random starts, 40 samples per check, max_R 10 (its CLI default).
BASE_STARTS = 5
BASE_SAMPLES = 40
BASE_MAX_R = 10.0
BASE_MAX_R_KIND = 2.0
# The baseline's attack per start: (name, optimizer, steps). L-BFGS-B on one draw's distortion
# is the original's attack; 10 iterations are as strong as 30 here (see README) and cheaper.
BASE_ATTACKS = (("lbfgs10", "lbfgs", 10), ("pgd10", "pgd", 10))
MAIN_BASE = ("lbfgs10", BASE_MAX_R)
# Rechecking the baseline's successes (not counted): fresh draws on a stream of its own.
VERIFY_SAMPLES = 4000
VERIFY_STREAM = 1000
#: The threat of the scan and of every check: the encoder mean.
MEAN = ThreatModel("mean")
#: The memory budget of the checks' decoder batches, in MB.
BUDGET_MB = 256.0


class DecodeCounter:
    """Counts the latent codes passed through ``model.decode`` (patched on the instance)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.rows = 0
        decode = model.decode

        def counted(z: torch.Tensor) -> torch.Tensor:
            self.rows += int(z.shape[0])
            return decode(z)

        model.decode = counted


class _Tests:
    """The scan's tests, each at one candidate radius for the inputs still scanning: what
    they cost per input (``rows``, ``tests``) and, per input, ``(radius, x_adv)`` of every
    broken test's strongest start (``broken``), to verify later."""

    def __init__(self, model, counter: DecodeCounter, x: torch.Tensor, index: torch.Tensor, *,
                 r: float, config: AttackConfig, seed: int) -> None:
        self.model, self.counter, self.x, self.index = model, counter, x, index
        self.r, self.config, self.seed = r, config, seed
        self.box = data_box(model)
        self.max_rows = montecarlo.rows_for_budget(BUDGET_MB, x[0].numel(), x.device)
        n_inputs = x.shape[0]
        self.rows = np.zeros(n_inputs)
        self.tests = np.zeros(n_inputs, dtype=np.int64)
        self.n_test = 0
        self.broken: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(n_inputs)]
        before = counter.rows
        self.clean = Encoded.of(model, x)  # g(mu(x)) once per input: the check's reference
        self.rows += (counter.rows - before) / n_inputs

    def robust(self, candidate: float, act: np.ndarray) -> np.ndarray:
        """One test at radius ``candidate`` of the inputs ``act``: robust where every start
        gives ``p_hat > M``. Every test uses a new seed: fresh draws for attack and check."""
        x, sel = self.x, torch.as_tensor(act)
        xs = x[sel].repeat_interleave(BASE_STARTS, dim=0)
        ids = (self.index[sel][:, None] * BASE_STARTS + torch.arange(BASE_STARTS)).reshape(-1)
        radius = torch.full((ids.shape[0],), candidate, dtype=x.dtype)
        test_seed = self.seed + 1 + self.n_test
        self.n_test += 1
        start_rows = self.counter.rows
        delta = optimizers.maximise(self.model, xs, radius, objectives.expected_damage,
                                    self.config, seed=test_seed, index=ids, box=self.box).delta
        k = empirical.within_counts(self.model, xs + delta,
                                    self.clean.select(sel).repeat(BASE_STARTS), r=self.r,
                                    n_samples=BASE_SAMPLES, seed=test_seed, index=ids,
                                    stream=noise.STREAM_CHECK, threat=MEAN,
                                    max_rows=self.max_rows)
        self.rows[act] += (self.counter.rows - start_rows) / len(act)
        self.tests[act] += 1
        p_hat = k.view(len(act), BASE_STARTS).cpu().numpy() / BASE_SAMPLES
        robust = (p_hat > M).all(axis=1)
        strongest = delta.view(len(act), BASE_STARTS, -1)[
            torch.arange(len(act)), torch.as_tensor(p_hat.argmin(axis=1))]
        for row in np.flatnonzero(~robust):
            self.broken[act[row]].append((candidate,
                                          x[act[row]] + strongest[row].view_as(x[0])))
        return robust


def _scan(test: _Tests, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The returned candidate and the breaking radius per input, and the inputs that found
    no robust candidate. All inputs scan in lockstep, each leaving at its robust candidate."""
    n_inputs = test.x.shape[0]
    returned = np.full(n_inputs, np.nan)
    breaking = np.full(n_inputs, np.nan)
    everyone = np.arange(n_inputs)
    robust = test.robust(float(candidates[0]), everyone)
    returned[everyone[~robust]] = breaking[everyone[~robust]] = candidates[0]
    left = everyone[robust]
    above = np.full(n_inputs, np.inf)  # the smallest candidate broken so far in the scan
    for j in range(len(candidates) - 1, -1, -1):
        if left.size == 0:
            break
        robust = test.robust(float(candidates[j]), left)
        won = left[robust]
        returned[won], breaking[won] = candidates[j], above[won]
        above[left[~robust]] = candidates[j]
        left = left[~robust]
    breaking[left] = above[left]  # no robust candidate: the original raises RuntimeError
    return returned, breaking, left


def baseline_scan(model, counter: DecodeCounter, x: torch.Tensor, index: torch.Tensor, *,
                  r: float, max_r: float, optimizer: str, steps: int, seed: int = 0) -> dict:
    """``estimate_R_margin``: a linear grid tested at the bottom, then scanned from the top.

    All inputs scan in lockstep (each leaves when it finds its robust candidate); the 5 starts
    of an input are 5 rows with ids ``5 * index + s``, so each has its own random start and its
    own noise. Every test uses a new seed: fresh draws for the attack and for the check.
    Decoder rows of each test are shared evenly by the inputs in it (exact: every row costs
    the same decoder calls).
    """
    candidates = np.arange(RESOLUTION, max_r + 1e-9, RESOLUTION)
    config = AttackConfig(threat=MEAN, restarts=1, steps=steps, optimizer=optimizer,
                          n_noise=1)
    before = counter.rows
    test = _Tests(model, counter, x, index, r=r, config=config, seed=seed)
    (returned, breaking, left), wall = common.timed(_scan, test, candidates)
    verified, p_verify = recheck(model, counter, test.clean, index, test.broken, r=r)
    return {"max_R": max_r, "optimizer": optimizer, "steps": steps,
            "n_candidates": len(candidates), "returned": returned.tolist(),
            "breaking": breaking.tolist(), "no_robust_candidate": int(left.size),
            "breaking_verified": verified.tolist(), "p_verify_at_breaking": p_verify.tolist(),
            "rows": test.rows.tolist(), "rows_mean": float(test.rows.mean()),
            "rows_counted_total": counter.rows - before, "tests": test.tests.tolist(),
            "wall_s": wall}


def recheck(model, counter: DecodeCounter, clean: Encoded, index: torch.Tensor,
            wins: list[list[tuple[float, torch.Tensor]]], *, r: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Recheck successes on ``VERIFY_SAMPLES`` fresh draws (not counted as cost).

    ``wins[i]`` holds ``(radius, x_adv)`` for each success on input ``i``. Returns the
    *verified* radius (the smallest whose ``x_adv`` still gives ``P(||Delta|| <= r) <= 1/2``
    on the fresh draws; NaN when none does) and the fresh estimate of ``P(||Delta|| <= r)``
    at the smallest success (the method's own margin).
    """
    before = counter.rows
    n_inputs = len(wins)
    ordered = [sorted(w, key=lambda t: t[0]) for w in wins]
    verified = np.full(n_inputs, np.nan)
    p_first = np.full(n_inputs, np.nan)
    max_rows = montecarlo.rows_for_budget(BUDGET_MB, clean.reference.shape[1],
                                          clean.reference.device)
    pending = np.array([i for i in range(n_inputs) if ordered[i]], dtype=np.int64)
    level = 0
    while pending.size:
        sel = torch.as_tensor(pending)
        x_adv = torch.stack([ordered[i][level][1] for i in pending])
        k = empirical.within_counts(model, x_adv, clean.select(sel), r=r,
                                    n_samples=VERIFY_SAMPLES, seed=0, index=index[sel],
                                    stream=VERIFY_STREAM, threat=MEAN,
                                    max_rows=max_rows).cpu().numpy()
        p = k / VERIFY_SAMPLES
        if level == 0:
            p_first[pending] = p
        ok = p <= M
        verified[pending[ok]] = [ordered[i][level][0] for i in pending[ok]]
        level += 1
        pending = np.array([i for i in pending[~ok] if len(ordered[i]) > level], dtype=np.int64)
    counter.rows = before
    return verified, p_first
