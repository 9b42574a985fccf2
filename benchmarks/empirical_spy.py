"""rcert's side of ``bench_empirical.py``: ``empirical_margin`` with every round recorded.

:class:`Spy` wraps ``rcert.attacks.optimizers.maximise`` and
``rcert.evaluation.empirical.within_counts`` for the duration of one call, so that each
successful round's perturbation can be rechecked on fresh draws like the baseline's
(:func:`lipschitz_scan.recheck`); :func:`run_rcert` runs and rechecks one setting.
"""

from __future__ import annotations

import common
import numpy as np
import torch
from lipschitz_scan import RESOLUTION, DecodeCounter, M, recheck

from rcert.attacks import optimizers
from rcert.attacks.objectives import Encoded
from rcert.evaluation import empirical


class Spy:
    """Records each attack round of ``empirical_margin`` (radius, perturbed input, check count).

    Wraps ``rcert.attacks.optimizers.maximise`` and
    ``rcert.evaluation.empirical.within_counts`` (module attributes,
    for the duration of one call; rcert's source is untouched) so that rcert's successes can
    be rechecked on fresh draws like the baseline's. Costs no decoder rows.
    """

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._saved = (optimizers.maximise, empirical.within_counts)

    def __enter__(self) -> Spy:
        maximise, within_counts = self._saved

        def spy_maximise(model, x, radius, *args, **kwargs):
            out = maximise(model, x, radius, *args, **kwargs)
            self.events.append(("attack", radius.detach().clone()))
            return out

        def spy_within_counts(model, x_adv, clean, **kwargs):
            k = within_counts(model, x_adv, clean, **kwargs)
            self.events.append(("check", kwargs["index"].clone(), x_adv.detach().clone(),
                                k.clone(), kwargs["n_samples"]))
            return k

        optimizers.maximise = spy_maximise
        empirical.within_counts = spy_within_counts
        return self

    def __exit__(self, *exc) -> None:
        optimizers.maximise, empirical.within_counts = self._saved

    def successes(self, m: float) -> dict[int, list[tuple[float, torch.Tensor]]]:
        """Per input id: (radius, perturbed input) of every round whose check succeeded."""
        out: dict[int, list] = {}
        for prev, ev in zip(self.events, self.events[1:], strict=False):
            if prev[0] != "attack" or ev[0] != "check":
                continue
            radius, (_, ids, x_adv, k, n) = prev[1], ev
            for row in np.flatnonzero(k.cpu().numpy() / n <= m):
                out.setdefault(int(ids[row]), []).append((float(radius[row]), x_adv[row]))
        return out


def verify_rcert(model, counter: DecodeCounter, x: torch.Tensor, index: np.ndarray,
                 spy: Spy, margin: np.ndarray, *, r: float) -> tuple[np.ndarray, np.ndarray]:
    """rcert's verified margin and the fresh ``P(||Delta|| <= r)`` at its margin.

    The successes recorded by ``spy`` are rechecked like the baseline's (:func:`recheck`);
    a margin of 0 (not r-robust unperturbed) is rechecked at ``x`` itself.
    """
    found = spy.successes(M)
    wins = [found.get(int(i), []) for i in index]
    for p in np.flatnonzero(margin == 0):
        wins[p].append((0.0, x[p]))
    smallest = np.array([min(w[0] for w in ws) if ws else np.inf for ws in wins])
    if not np.allclose(smallest, margin, rtol=1e-6, atol=1e-9):
        print(f"WARNING: recorded successes ({smallest}) do not match margin_empirical "
              f"({margin}); empirical_margin's internals changed, so its recheck is off")
    before = counter.rows
    clean = Encoded.of(model, x)
    counter.rows = before
    return recheck(model, counter, clean, torch.as_tensor(index), wins, r=r)


def run_rcert(model, counter: DecodeCounter, x: torch.Tensor, index: np.ndarray, *, r: float,
              start: np.ndarray | None, kwargs: dict) -> dict:
    before = counter.rows
    with Spy() as spy:
        df, wall = common.timed(empirical.empirical_margin, model, x, r=r,
                                resolution=RESOLUTION, start=start, seed=0, index=index,
                                **kwargs)
    counted = counter.rows - before
    verified, p_verify = verify_rcert(model, counter, x, index, spy,
                                      df["margin_empirical"].to_numpy(dtype=float), r=r)
    n_inputs = x.shape[0]
    reported = int(df["decoder_rows"].sum())
    rounds = df["rounds"].to_numpy()
    return {"margin": df["margin_empirical"].tolist(), "lo": df["margin_bracket_lo"].tolist(),
            "p_check": df["p_check"].tolist(), "rounds": rounds.tolist(),
            "margin_verified": verified.tolist(), "p_verify_at_margin": p_verify.tolist(),
            "decoder_rows": df["decoder_rows"].tolist(), "rows_mean": counted / n_inputs,
            "rows_counted_total": counted, "decoder_rows_total": reported,
            "uncounted_by_decoder_rows": counted - reported,
            "clean_decodes": n_inputs, "wall_s": wall,
            "config": df.attrs.get("config", {})}
