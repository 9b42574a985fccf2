"""Every command on a deterministic autoencoder (families mmd-dae and swt-dae): train makes
one with its card, inspect, report and check show what applies (Jacobian norms, attacks),
and margin, a sigma threat and the KL attacks refuse it in one line (SPEC section 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import strict_json

from rcert.runs.training import NO_RECOMMENDED_R


@pytest.fixture(scope="module")
def dae(tmp_path_factory) -> Path:
    """An MMD-DAE trained for two epochs on the digits, through ``rcert train``."""
    from rcert import cli

    out = tmp_path_factory.mktemp("dae") / "dae.safetensors"
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--data", "digits:train", "--out", str(out), "--family", "mmd-dae",
                  "--epochs", "2", "--hidden", "16", "--latent-dim", "3", "--quiet"])
    assert info.value.code == 0
    return out


def test_train_writes_a_dae_and_a_card_that_records_the_family(dae):
    card = json.loads(dae.with_suffix(".json").read_text())
    assert card["training"]["family"] == "mmd-dae"
    assert card["architecture"]["sigma_mode"] == "none"
    assert card["recommended_r"] is None
    assert card["recommended_r_note"] == NO_RECOMMENDED_R
    metrics = card["metrics"]
    assert {"best_val_log_likelihood", "train_log_likelihood", "test_log_likelihood"} \
        <= metrics.keys()
    assert not any("elbo" in key for key in metrics)


def test_train_takes_sigma_none_with_a_dae_family(run, tmp_path):
    code, out, err = run("train", "--data", "digits:train", "--out", tmp_path / "s.safetensors",
                         "--family", "swt-dae", "--sigma", "none", "--epochs", "1",
                         "--hidden", "8", "--latent-dim", "2", "--quiet")
    assert code == 0, err
    card = strict_json(out)
    assert card["training"]["family"] == "swt-dae"
    assert card["architecture"]["sigma_mode"] == "none"


@pytest.mark.parametrize(("args", "message"), [
    (("--family", "mmd-dae", "--sigma", "learned"),
     "family mmd-dae is a deterministic autoencoder: sigma 'learned' does not apply"),
    (("--sigma", "none"), "family vae trains Gaussian encoders"),
    (("--family", "dlgm", "--sigma", "none"), "a hierarchical VAE needs Gaussian layers"),
])
def test_train_refuses_a_family_with_the_wrong_encoder(run, tmp_path, args, message):
    code, out, err = run("train", "--data", "digits:train", "--out",
                         tmp_path / "x.safetensors", "--epochs", "1", "--quiet", *args)
    assert code == 2 and not out
    assert message in err and len(err.strip().splitlines()) == 1


def test_inspect_reads_a_dae(run, dae):
    code, out, err = run("inspect", dae)
    assert code == 0, err
    assert "deterministic, 0 stochastic layer(s)" in out
    assert "PASS sigma: a deterministic encoder" in out


def test_margin_refuses_a_dae_and_names_what_applies(run, dae):
    for extra in ((), ("--r", "0.5", "--empirical")):
        code, out, err = run("margin", "--model", dae, "--limit", "2", "--quiet", *extra)
        assert code == 2 and not out
        line = err.strip()
        assert len(line.splitlines()) == 1
        assert "is a deterministic autoencoder" in line and "needs sigma" in line
        assert "rcert latent-attack" in line and "rcert attack" in line


def test_the_damage_attack_runs_on_a_dae_and_a_sigma_threat_is_refused(run, dae):
    code, out, err = run("attack", "--model", dae, "--L", "0.5", "--limit", "2",
                         "--preset", "fast", "--format", "json", "--quiet")
    assert code == 0, err
    rows = strict_json(out)["inputs"]
    assert all(row["damage"] > 0 for row in rows)
    code, out, err = run("attack", "--model", dae, "--L", "0.5", "--limit", "2",
                         "--threat", "sigma", "--quiet")
    assert code == 2 and "--threat sigma" in err and "needs sigma" in err


def test_the_kl_attack_is_refused_and_w2_runs(run, dae):
    base = ("attack", "--model", dae, "--limit", "4", "--pairs", "2", "--lambda-values", "1",
            "--max-iter", "3", "--quiet")
    code, _, err = run(*base, "--kind", "kl")
    assert code == 2 and "--kind w2" in err
    code, _, err = run(*base, "--kind", "w2", "--format", "json")
    assert code == 0, err


def test_report_shows_jacobian_norms_and_empirical_margins(run, dae, tmp_path):
    code, _, err = run("report", "--model", dae, "--out", tmp_path / "rep", "--limit", "4",
                       "--r", "0.5", "--empirical", "--preset", "fast", "--n-check", "20",
                       "--quiet")
    assert code == 0, err
    folder = tmp_path / "rep"
    doc = strict_json((folder / "results.json").read_text())
    res = doc["models"]["dae"]
    assert {"index", "jacobian_fro", "jacobian_spec", "margin_empirical"} <= \
        res["inputs"][0].keys()
    assert not {"abstain", "bound_certified", "sigma_min", "p_lower"} & res["inputs"][0].keys()
    summary = res["summary"]
    assert "n_certified" not in summary and "deterministic encoder" in summary["certificates"]
    assert set(summary["diagnostics"]) == {"jacobian_fro", "jacobian_spec"}
    assert "empirical" in summary
    markdown = (folder / "summary.md").read_text()
    assert "| certified | n/a (deterministic encoder) |" in markdown
    assert "| median jacobian_spec |" in markdown
    junit = (folder / "junit.xml").read_text()
    assert 'tests="4"' in junit and 'skipped="0"' in junit
    assert "no certificate, ||J||_2" in (folder / "report.html").read_text()


def test_report_without_r_asks_for_one(run, dae, tmp_path):
    code, _, err = run("report", "--model", dae, "--out", tmp_path / "rep", "--limit", "2",
                       "--quiet")
    assert code == 2
    assert "deterministic autoencoder, which records no recommended r" in err


def _config(folder: Path, dae: Path, thresholds: str = "") -> Path:
    config = folder / "rcert.toml"
    config.write_text(f'[[model]]\npath = "{dae}"\nlimit = 3\nr = 0.5\nempirical = true\n'
                      f'[attack]\npreset = "fast"\nn_check = 20\n{thresholds}')
    return config


def test_check_runs_a_dae_without_thresholds(run, dae, tmp_path):
    code, out, err = run("check", _config(tmp_path, dae), "--out", tmp_path / "chk",
                         "--quiet")
    assert code == 0, err
    assert "0 passed, 0 failed" in out


@pytest.mark.parametrize(("threshold", "column"), [
    ("min_mean_margin = 0.0", "bound_certified"),
    ("min_certified_fraction = 0.5", "certified fraction"),
    ("max_abstain_fraction = 0.5", "abstain"),
    ("max_violations = 0", "violation"),
])
def test_check_refuses_a_sigma_threshold_on_a_dae_before_any_work(run, dae, tmp_path,
                                                                 threshold, column):
    config = _config(tmp_path, dae, f"[thresholds]\n{threshold}\n")
    code, out, err = run("check", config, "--out", tmp_path / "chk", "--quiet")
    assert code == 2 and not out
    line = err.strip()
    assert len(line.splitlines()) == 1
    assert f"threshold {threshold.split(' ')[0]}" in line and column in line
    assert not (tmp_path / "chk" / ".partial").exists()  # refused before certifying
