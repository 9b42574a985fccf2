"""Every command on the hierarchical families: margin, report and check certify them with the
columns their derivation supports (docs/hierarchical.md), train makes them, attack --kind
runs the targeted attacks on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import strict_json

import rcert

VARIANTS = {  # name: (inference, likelihood_on, has the first-order certificates)
    "seatbelt-chain": ("chain", "all", True),
    "seatbelt-input": ("input", "all", False),
    "dlgm": ("input", "first", True),
}
BOUNDS = ("bound", "bound_certified", "bound_spectral", "bound_whitened", "latent_margin")


@pytest.fixture(scope="module")
def hier(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hier")
    out = {}
    for name, (inference, likelihood_on, _) in VARIANTS.items():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = rcert.build_model("hierarchical", input_shape=(1, 8, 8), latent_dim=4,
                                      upper_dims=(3, 2), hidden=(32,),
                                      conditional_hidden=(8,), inference=inference,
                                      likelihood_on=likelihood_on)
        out[name] = folder / f"{name}.safetensors"
        rcert.save(model, out[name], data="digits:train", recommended_r=0.8)
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_margin_reports_the_columns_the_derivation_supports(run, hier, name):
    code, out, _ = run("margin", "--model", hier[name], "--limit", "4", "--n-samples", "100",
                       "--format", "json", "--quiet", "--allow", "decoder-range")
    assert code == 0
    doc = strict_json(out)
    row = doc["inputs"][0]
    first_order = VARIANTS[name][2]
    assert all((col in row) == first_order for col in BOUNDS)
    assert {"p_lower", "r_min", "sigma_min", "jacobian_fro"} <= row.keys()


def test_the_empirical_margin_covers_an_input_fed_seatbelt(run, hier):
    code, out, _ = run("margin", "--model", hier["seatbelt-input"], "--limit", "2",
                       "--n-samples", "100", "--empirical", "--preset", "fast", "--n-check",
                       "50", "--format", "json", "--quiet", "--allow", "decoder-range")
    assert code == 0
    rows = strict_json(out)["inputs"]
    assert all("margin_empirical" in row and "bound_whitened" not in row for row in rows)


def test_report_and_check_run_on_every_family(run, hier, tmp_path):
    args = ["report", *[a for name in VARIANTS for a in ("--model", hier[name])],
            "--out", tmp_path / "rep", "--limit", "3", "--n-samples", "60", "--quiet",
            "--allow", "decoder-range"]
    code, _, err = run(*args)
    assert code == 0, err
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert set(results["models"]) == set(VARIANTS)
    assert "bound_whitened" not in results["models"]["seatbelt-input"]["inputs"][0]
    config = tmp_path / "rcert.toml"
    config.write_text(
        '[thresholds]\nmin_mean_margin = 0.0\n[run]\nallow = ["decoder-range"]\n'
        + "".join(f'[[model]]\npath = "{hier[name]}"\nlimit = 3\nn_samples = 60\n'
                  for name in ("seatbelt-chain", "seatbelt-input")))
    code, out, err = run("check", config, "--out", tmp_path / "chk", "--quiet")
    # A gate on bound_certified cannot pass for the family without it: a failed verdict.
    assert code == 1, err
    assert "seatbelt-input has no bound_certified" in out + err


def test_train_makes_a_seatbelt_checkpoint_with_its_card(run, tmp_path):
    out = tmp_path / "sb.safetensors"
    code, stdout, err = run("train", "--data", "digits:train", "--out", out, "--epochs", "1",
                            "--hidden", "16", "--latent-dim", "3", "--family", "seatbelt",
                            "--upper-dims", "2", "--inference", "chain", "--free-bits",
                            "0.1", "--beta", "4", "--quiet")
    assert code == 0, err
    card = json.loads(stdout)
    assert card["architecture"]["arch"] == "hierarchical"
    assert card["architecture"]["likelihood_on"] == "all"
    assert card["architecture"]["upper_dims"] == [2]
    assert card["training"]["family"] == "seatbelt" and card["training"]["free_bits"] == 0.1
    model = rcert.load(out)
    assert model.traits.stochastic_layers == 2


def test_attack_kind_writes_a_targeted_result(run, hier):
    code, out, err = run("attack", "--model", hier["seatbelt-input"], "--kind", "w2",
                         "--layers", "top", "--chain", "samples", "--pairs", "2",
                         "--lambdas", "3", "--max-iter", "5", "--format", "json", "--quiet",
                         "--allow", "decoder-range")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["kind"] == "targeted"
    assert doc["config"]["layers"] == "top" and doc["config"]["chain"] == "samples"
    assert len(doc["inputs"]) == 6
    summary = doc["summary"]
    assert summary["n_pairs"] == 2 and summary["n_lambdas"] == 3
    low, mean, high = (summary["all"]["loss"][k] for k in ("low", "mean", "high"))
    assert low <= mean <= high


def test_measure_writes_the_posterior_measures(run, hier):
    code, out, err = run("measure", "--model", hier["seatbelt-input"], "--limit", "5",
                         "--levels", "0,0.5", "--draws", "3", "--format", "json", "--quiet",
                         "--allow", "decoder-range")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["kind"] == "posteriors" and len(doc["inputs"]) == 5
    assert set(doc["inputs"][0]) == {"index", "sigma_norm", "elbo", "denoise_0", "denoise_0.5"}
    m = doc["summary"]["measures"]["elbo"]
    assert m["low"] <= m["mean"] <= m["high"]


@pytest.mark.parametrize(("extra", "needle"), [
    (("--levels=-1",), "noise level must be a finite number >= 0"),
    (("--draws", "0"), "draws must be an integer >= 1"),
])
def test_measure_bad_input_is_one_line(run, hier, extra, needle):
    code, out, err = run("measure", "--model", hier["seatbelt-input"], "--limit", "2",
                         "--quiet", *extra)
    assert code == 2 and out == "" and needle in err


def test_attack_kind_downstream_writes_table_1(run, hier, tmp_path):
    code, out, err = run("attack", "--model", hier["seatbelt-chain"], "--kind", "downstream",
                         "--pairs", "6", "--max-iter", "5", "--train-limit", "120",
                         "--format", "json", "--quiet", "--allow", "decoder-range")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["kind"] == "downstream"
    assert [row["classifier"] for row in doc["inputs"]] == ["mlp_recon", "conv_recon",
                                                           "mlp_latent"]
    assert doc["config"]["lambda_values"] == [1.0] and doc["config"]["different_label"]
    for row in doc["inputs"]:
        assert row["accuracy_drop"] == pytest.approx(row["accuracy_attacked"]
                                                     - row["accuracy_clean"])
    unlabelled = tmp_path / "x.npy"
    import numpy as np
    np.save(unlabelled, np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32))
    code, out, err = run("attack", "--model", hier["seatbelt-chain"], "--kind", "downstream",
                         "--data", unlabelled, "--pairs", "2", "--quiet")
    assert code == 2 and out == "" and "needs labelled data" in err
