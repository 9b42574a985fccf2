"""The report's adversarial pictures: the perturbations of the run, found again."""

from __future__ import annotations

import numpy as np
import torch
from conftest import TinyMLPVAE

import rcert
from rcert.evaluation.empirical import perturbations
from rcert.evaluation.verdicts import start_radii
from rcert.runs.gallery import attacked_deltas, weakest_inputs
from rcert.settings import AttackConfig, CertifyConfig, RunConfig

ATTACK = AttackConfig(steps=4, n_noise=8, n_check=60, audit=0)  # light, so no audit


def _setting():
    model = TinyMLPVAE()
    model.data_range = (0.0, 1.0)
    x = torch.rand(8, 10, generator=torch.Generator().manual_seed(3))
    config = CertifyConfig(r=0.17, n_samples=200)  # just above r_min: attacks can win
    rows = rcert.certify(model, x, config, attack=ATTACK)
    return model, x, config, rows


def test_the_pictured_perturbations_are_those_of_the_whole_run():
    model, x, config, rows = _setting()
    _, everything = perturbations(model, x, config, ATTACK, start=start_radii(rows),
                                  index=rows["index"].to_numpy())
    deltas = attacked_deltas(model, x, rows, config, ATTACK, k=4, run=RunConfig())
    pictured = [e["index"] for e in weakest_inputs(model, x, rows, k=4)]
    broken = rows.set_index("index")["margin_empirical"]
    # Every pictured input that an attack broke has its perturbation, and only those.
    assert set(deltas) == {i for i in pictured if 0 < broken[i] < np.inf}
    assert deltas, "the setting should break some pictured input"
    for i, d in deltas.items():
        np.testing.assert_allclose(d, everything[i].numpy(), atol=1e-5)
        # Within the threat model: the ball of the empirical margin and the data box.
        assert np.linalg.norm(d) <= broken[i] * (1 + 1e-5)
        assert (x[i].numpy() + d >= -1e-6).all() and (x[i].numpy() + d <= 1 + 1e-6).all()


def test_entries_show_the_adversarial_pictures_exactly_for_those_inputs():
    model, x, config, rows = _setting()
    deltas = attacked_deltas(model, x, rows, config, ATTACK, k=4, run=RunConfig())
    for entry in weakest_inputs(model, x, rows, k=4, deltas=deltas):
        shown = "adversarial input" in entry["images"]
        assert shown == (entry["index"] in deltas)
