"""The Python API's certify: certificates, and optionally the attacks that try to break them.

:func:`certify` is :func:`rcert.engine.certify.certify` plus, when asked, the empirical
margin and the verdicts of :mod:`rcert.evaluation.verdicts`. It records the reliability
warnings raised on the way (:mod:`rcert.checks`) in ``df.attrs["warnings"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from rcert import checks, validate
from rcert.engine import certify as engine
from rcert.settings import EMPIRICAL_ATTACK, AttackConfig, CertifyConfig, RunConfig, merge


@validate.borrows_model
def certify(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    config: CertifyConfig | None = None,
    *,
    r: float | None = None,
    m: float | None = None,
    n_samples: int | None = None,
    alpha: float | None = None,
    seed: int | None = None,
    index: np.ndarray | torch.Tensor | None = None,
    empirical: bool = False,
    attack: AttackConfig | None = None,
    run: RunConfig | None = None,
    device: str | torch.device | None = None,
    memory_mb: float | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Certify each input (:func:`rcert.engine.certify.certify`, whose parameters these are)
    and, with ``empirical=True`` or an ``attack`` config, attack every certificate.

    Parameters
    ----------
    empirical
        Also run the empirical margin with the default attack
        (:data:`rcert.settings.EMPIRICAL_ATTACK`) and add the columns of
        :data:`rcert.evaluation.verdicts.EMPIRICAL_COLUMNS`: ``margin_empirical``,
        ``violation`` (the attack beat ``bound_certified``, confirmed on fresh draws,
        family-wise over the inputs by default), ``tightness`` and the evidence.
    attack
        The attack (:class:`rcert.settings.AttackConfig`); implies ``empirical``.

    Returns
    -------
    pandas.DataFrame
        As :func:`rcert.engine.certify.certify`, with the attack's columns when asked;
        ``df.attrs["warnings"]`` lists the reliability warnings (``code``, ``message``).
    """
    config = merge(CertifyConfig, config, r=r, m=m, n_samples=n_samples, alpha=alpha,
                   seed=seed)
    run = merge(RunConfig, run, device=device, memory_mb=memory_mb, progress=progress)
    with checks.collect() as warned:
        df = engine.certify(model, x, config, index=index, run=run)
        if empirical or attack is not None:
            # The attack stack costs half a second to import; plain certificates skip it.
            from rcert.evaluation.verdicts import attack_certificates

            df = attack_certificates(df, model, torch.as_tensor(x), config,
                                     attack or EMPIRICAL_ATTACK,
                                     index=df["index"].to_numpy(), run=run)
    df.attrs["warnings"] = warned
    return df
