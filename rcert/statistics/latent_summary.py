"""The dataset-wide summary of a latent attack (Lu & Chen, spec sections 4.2-4.3): each
score's DD-curve as the mean over inputs per epsilon, with its spread over the curves of
the batches and seeds, and the AADDC of every score that has a limit line.

The paper drew one batch of 8 inputs; here every batch (:attr:`FidelityConfig.batch`
consecutive input ids) and every seed gives its own curve, so the spread says how much a
one-batch figure can move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from rcert.statistics.ddcurve import ORIENTATION, aaddc_table, curve_band
from rcert.statistics.ddcurve import aaddc as area

#: Per-row score columns a summary describes, in order (those present).
SCORES = ("mse", "l2", "ssim", "psnr", "lpips", "output_mean", "target_mse")


def summarize_latent(df: pd.DataFrame, limits: Mapping[str, float], *,
                     clip: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The summary of a latent attack's per-row table, and the limit-line warnings.

    Parameters
    ----------
    df
        :func:`rcert.evaluation.latent.latent_attack`'s rows: ``seed, index, batch,
        epsilon`` and the score columns.
    limits
        ``{score: limit}`` (:func:`rcert.statistics.ddcurve.parse_limits`); a score
        without one gets its curve but no AADDC.
    clip
        Integrate only the part of a curve on the good side of its limit.

    Returns
    -------
    summary, warnings
        ``n_inputs``, ``n_seeds``, ``n_batches``, ``epsilons``; ``curves``: per score the
        mean per epsilon over all rows, the standard deviation of the per-batch-and-seed
        curves (ddof 1) and their count; ``aaddc``: per score with a limit, the mean and
        standard deviation of the curves' AADDC, their count, and the AADDC of the mean
        curve of ``curves`` (none on a grid of one epsilon). Warnings name each curve that
        crosses its limit line.
    """
    scores = [c for c in SCORES if c in df]
    epsilons = np.sort(df["epsilon"].unique())
    curves: dict[str, Any] = {}
    for score in scores:
        band = curve_band(df, score).reindex(epsilons)
        curves[score] = {"mean": band["mean"].tolist(), "std": band["std"].tolist(),
                         "n_curves": int(band["count"].min())}
    # An area needs two budgets: a one-epsilon run (the default limits on) has no AADDC.
    table, warnings = (aaddc_table(df, scores, dict(limits), clip=clip) if len(epsilons) > 1
                       else (pd.DataFrame(columns=["metric"]), []))
    # "The mean curve" is the curve of ``curves`` (every input weighs the same), not the
    # mean of the batch curves (aaddc_of_mean), which a partial last batch would tilt.
    aaddc = {row["metric"]: {"limit": row["limit"], "mean": row["aaddc_mean"],
                             "std": row["aaddc_std"], "n_curves": int(row["n_curves"]),
                             "of_mean_curve": area(
                                 epsilons, curves[row["metric"]]["mean"], row["limit"],
                                 higher_is_better=ORIENTATION[row["metric"]], clip=clip)}
             for row in table.to_dict(orient="records")}
    summary = {"n_inputs": int(df["index"].nunique()), "n_seeds": int(df["seed"].nunique()),
               "n_batches": int(df["batch"].nunique()), "epsilons": epsilons.tolist(),
               "curves": curves, "aaddc": aaddc}
    return summary, warnings


def summarize_latent_margin(df: pd.DataFrame) -> dict[str, Any]:
    """The summary of :func:`rcert.evaluation.latent_certificate.latent_tightness`: per
    geometry, the violations inside the certificate (each one a bug), how many inputs an
    attack broke beyond it, and the quantiles of the latent tightness among those."""
    attacked = df["p_lower"].notna() & df[[c for c in df if c.endswith("_p_inside")]].notna() \
        .all(axis=1)
    out: dict[str, Any] = {"n_inputs": len(df), "n_certified": int(attacked.sum())}
    for geometry in ("l2", "whitened"):
        if f"{geometry}_violation" not in df:
            continue
        rows = df[attacked]
        tight = rows[f"{geometry}_tightness"].to_numpy(dtype=np.float64)
        broken = tight[np.isfinite(tight)]
        out[geometry] = {
            "violations": int(rows[f"{geometry}_violation"].astype(bool).sum()),
            "n_broken": int(broken.size),
            "tightness_median": float(np.median(broken)) if broken.size else None,
            "tightness_min": float(broken.min()) if broken.size else None,
            "tightness_max": float(broken.max()) if broken.size else None,
        }
    return out
