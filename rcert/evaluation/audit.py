"""The attack-strength audit: a few inputs attacked again, harder (``AttackConfig.audit``).

An empirical margin is only an upper bound on the true margin if the attack finds the
perturbation that breaks the input. Where a stronger attack finds a smaller margin, the
weaker one overstated it. So each attacked run re-attacks a seeded random subset of its
inputs with :func:`rcert.settings.stronger` (the next preset), from the same starts and on
the same seed, and records its margin in ``margin_empirical_audit``.

The margin itself carries Monte Carlo error: attacks of about equal strength, on the same
seed, lowered each other's margins by more than the 2% resolution on 4 to 16 of 60 inputs
(benchmarks/bench_attack_strength.py). So a margin lowered by more than the resolution is
then *confirmed* or not: the stronger attack runs once more at the radius where the weaker
one last failed (its ``margin_bracket_lo``), and ``p_value_audit = P(Binomial(n_check, m)
<= k)``, with ``k`` its robust draws among ``n_check`` fresh ones (``STREAM_AUDIT_VERIFY``),
tests "the input is r-robust there". A confirmed drop (``p_value_audit <= alpha``) means
the stronger attack broke the input with confidence where the weaker one failed; the run
then warns ``weak-attack``.

The subset is chosen once per run, from all of the run's input ids: the ``audit`` ids with
the smallest keys ``hash(seed, id)``. It depends on nothing else, so a run certified chunk by
chunk, or resumed, audits the same inputs as one that runs in one go; and each audited row,
like every row, depends only on its input's index and the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import checks, validate
from rcert.attacks import chunking, projection
from rcert.attacks.objectives import Encoded
from rcert.engine import noise
from rcert.evaluation.empirical import attempt, chunk_sizes, p_value, perturbations
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, attack_label, stronger
from rcert.statistics.summary import AUDIT_COLUMN, AUDIT_P_COLUMN, audit_summary, lowered


def audit_subset(index: np.ndarray, seed: int, size: int) -> np.ndarray:
    """The ids a run audits: the ``size`` ids of ``index`` with the smallest
    ``hash(seed, id)``, sorted (all of them when there are fewer)."""
    ids = np.unique(np.asarray(index, dtype=np.int64))
    keys = noise.input_keys(seed, noise.STREAM_AUDIT, torch.as_tensor(ids)).numpy()
    order = np.lexsort((ids, keys))  # a tie of two 32-bit keys goes to the smaller id
    return np.sort(ids[order[:size]])


def audit_columns(model: nn.Module, x: torch.Tensor, certify: CertifyConfig,
                  attack: AttackConfig, *, index: np.ndarray, start: np.ndarray,
                  run: RunConfig, audited: np.ndarray,
                  weak: pd.DataFrame) -> dict[str, np.ndarray]:
    """``margin_empirical_audit`` and ``p_value_audit`` for the rows of ``x``.

    ``weak`` holds the audited attack's rows (``margin_empirical``, ``margin_bracket_lo``)
    in the order of ``x``. Rows whose id is not in ``audited`` get NaN in both columns, rows
    not lowered by more than the resolution NaN in the second.
    """
    margin = np.full(len(index), np.nan)
    confirming = np.full(len(index), np.nan)
    rows = np.flatnonzero(np.isin(index, audited))
    if rows.size:
        strong = stronger(attack)
        found, deltas = perturbations(model, x[torch.as_tensor(rows, device=x.device)],
                                      certify, strong, start=start[rows], index=index[rows],
                                      run=run)
        margin[rows] = found["margin_empirical"].to_numpy()
        low = lowered(weak["margin_empirical"].to_numpy()[rows], margin[rows],
                      attack.resolution)
        if low.any():
            part = rows[low]
            confirming[part] = _confirm(
                model, x[torch.as_tensor(part, device=x.device)], certify, strong,
                index=index[part], radius=weak["margin_bracket_lo"].to_numpy()[part],
                starts=deltas[torch.as_tensor(np.flatnonzero(low), device=deltas.device)],
                run=run)
    return {AUDIT_COLUMN: margin, AUDIT_P_COLUMN: confirming}


def _confirm(model: nn.Module, x: torch.Tensor, certify: CertifyConfig, attack: AttackConfig,
             *, index: np.ndarray, radius: np.ndarray, starts: torch.Tensor,
             run: RunConfig) -> np.ndarray:
    """``P(Binomial(n_check, m) <= k)``: ``k`` robust draws of ``n_check`` fresh ones at the
    perturbation ``attack`` finds within ``radius``, started from ``starts`` (one round of
    the empirical margin's search, :func:`~rcert.evaluation.empirical.attempt`)."""
    model, x, index_t = validate.prepare(model, x, index=index, seed=certify.seed,
                                         device=run.device)
    max_rows, per = chunk_sizes(run, x, attack)
    k = np.zeros(len(index), dtype=np.int64)
    for part in chunking.chunks(len(index), per):
        _, k[part] = attempt(model, x[part], Encoded.of(model, x[part]), index_t[part],
                             radius[part], cert=certify, atk=attack, starts=starts[part].to(x),
                             stream=noise.STREAM_AUDIT_VERIFY, max_rows=max_rows,
                             box=projection.data_box(model))
    return p_value(k, attack.n_check, certify.m)


def check_strength(df: pd.DataFrame, certify: CertifyConfig, attack: AttackConfig) -> None:
    """Warn ``weak-attack`` when the audit of a whole run's rows confirmed a lower margin."""
    if AUDIT_COLUMN not in df.columns:
        return
    name = attack_label(stronger(attack))
    found = audit_summary(df, resolution=attack.resolution, alpha=certify.alpha, attack=name)
    if found["n_confirmed"]:
        checks.warn("weak-attack",
                    f"the {name} attack broke {found['n_confirmed']} of {found['n_audited']} "
                    f"audited inputs, with confidence, below the empirical margin of the "
                    f"{attack.preset} attack (max drop {found['max_drop']:.0%}), so this "
                    f"run's empirical margins may overstate; rerun with a stronger --preset")
