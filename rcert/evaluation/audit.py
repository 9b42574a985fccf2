"""The attack-strength audit: a few inputs attacked again, harder (``AttackConfig.audit``).

An empirical margin is only an upper bound on the true margin if the attack finds the
perturbation that breaks the input. Where a stronger attack finds a smaller margin, the
weaker one overstated it. So each attacked run re-attacks a seeded random subset of its
inputs with :func:`rcert.settings.stronger` (the next preset) and reports, in the
``margin_empirical_audit`` column and the summary's ``audit`` block, how often that lowered
the margin by more than the search resolution; it warns ``weak-attack`` when it did.

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

from rcert import checks
from rcert.engine import noise
from rcert.evaluation.empirical import empirical_margin
from rcert.settings import AttackConfig, CertifyConfig, RunConfig, stronger, stronger_name
from rcert.statistics.summary import AUDIT_COLUMN, audit_summary


def audit_subset(index: np.ndarray, seed: int, size: int) -> np.ndarray:
    """The ids a run audits: the ``size`` ids of ``index`` with the smallest
    ``hash(seed, id)``, sorted (all of them when there are fewer)."""
    ids = np.unique(np.asarray(index, dtype=np.int64))
    keys = noise.input_keys(seed, noise.STREAM_AUDIT, torch.as_tensor(ids)).numpy()
    order = np.lexsort((ids, keys))  # a tie of two 32-bit keys goes to the smaller id
    return np.sort(ids[order[:size]])


def audit_margins(model: nn.Module, x: torch.Tensor, certify: CertifyConfig,
                  attack: AttackConfig, *, index: np.ndarray, start: np.ndarray,
                  run: RunConfig, audited: np.ndarray) -> np.ndarray:
    """``margin_empirical`` of the stronger attack on the rows whose id is in ``audited``,
    from the same ``start`` radii; NaN on the other rows."""
    out = np.full(len(index), np.nan)
    rows = np.flatnonzero(np.isin(index, audited))
    if rows.size:
        emp = empirical_margin(model, x[torch.as_tensor(rows, device=x.device)], certify,
                               stronger(attack), index=index[rows], start=start[rows],
                               run=run)
        out[rows] = emp["margin_empirical"].to_numpy()
    return out


def check_strength(df: pd.DataFrame, attack: AttackConfig) -> None:
    """Warn ``weak-attack`` when the audit of a whole run's rows found a smaller margin."""
    if AUDIT_COLUMN not in df.columns:
        return
    name = stronger_name(attack.preset)
    found = audit_summary(df, resolution=attack.resolution, attack=name)
    if found["n_lowered"]:
        checks.warn("weak-attack",
                    f"the {name} attack lowered {found['n_lowered']} of "
                    f"{found['n_audited']} audited empirical margins by more than the "
                    f"resolution (max drop {found['max_drop']:.0%}), so the {attack.preset} "
                    f"attack overstates margins here; rerun with a stronger --preset")
