"""``rcert latent-attack`` and ``rcert latent-margin`` on the shipped digits model, and
``rcert plot dd|latent-statistics|tsne`` of their results."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_error_line, cli_output, strict_json

from rcert.settings import PAPER_EPSILONS

M = "models/vae-digits.safetensors"
#: Small and fast: 4 inputs, three budgets.
SMALL = ("--model", M, "--limit", "4", "--epsilons", "0,0.5,1", "--ssim-window", "7")
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def with_sections(tmp_path_factory):
    """A JSON result with two seeds, the Eq 7 statistics at 0.5 and a t-SNE at 1."""
    path = tmp_path_factory.mktemp("latent") / "latent.json"
    code, out, err = cli_output("latent-attack", *SMALL, "--seeds", "0,1", "--statistics-at",
                                "0.5", "--tsne-at", "1", "--format", "json", "--quiet",
                                "--output", path)
    assert code == 0 and out == "" and err == "", err
    return path


def test_latent_attack_json_on_the_paper_grid(run):
    code, out, err = run("latent-attack", "--model", M, "--limit", "8", "--ssim-window", "7",
                         "--format", "json", "--quiet")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["kind"] == "latent" and doc["schema_version"] == 1
    summary = doc["summary"]
    assert set(summary) == {"n_inputs", "n_seeds", "n_batches", "epsilons", "curves", "aaddc"}
    assert (summary["n_inputs"], summary["n_seeds"], summary["n_batches"]) == (8, 1, 1)
    assert summary["epsilons"] == list(PAPER_EPSILONS)
    assert set(summary["curves"]) == {"mse", "l2", "ssim", "psnr", "output_mean"}
    assert set(summary["aaddc"]) == {"ssim"}  # lpips has a limit but is not scored
    assert doc["config"]["fidelity"]["ssim_window"] == 7 and doc["config"]["seeds"] == [0]
    rows = pd.DataFrame(doc["inputs"])
    assert len(rows) == 8 * len(PAPER_EPSILONS)
    np.testing.assert_allclose(summary["curves"]["ssim"]["mean"],
                               rows.groupby("epsilon")["ssim"].mean(), rtol=1e-9)
    assert rows.loc[rows["epsilon"] == 0, "mse"].eq(0).all()


@pytest.mark.parametrize("quiet", [True, False])
def test_csv_goes_alone_to_stdout(run, quiet):
    code, out, err = run("latent-attack", *SMALL, "--format", "csv",
                         *(("--quiet",) if quiet else ()))
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    assert len(df) == 4 * 3 and {"seed", "index", "batch", "epsilon", "ssim"} <= set(df)
    assert (err == "") if quiet else ("latent attack" in err and "seed,index" not in err)


def test_text_output_shows_the_curves_and_aaddc(run):
    code, out, err = run("latent-attack", *SMALL, "--quiet")
    assert code == 0, err
    assert "mean score per epsilon" in out and "AADDC ssim (limit 0.4)" in out


def test_seeds_and_sections_are_recorded(with_sections):
    doc = strict_json(with_sections.read_text())
    assert doc["config"]["seeds"] == [0, 1] and doc["config"]["seed"] == 0
    rows = pd.DataFrame(doc["inputs"])
    assert sorted(rows["seed"].unique()) == [0, 1] and len(rows) == 2 * 4 * 3
    stats = pd.DataFrame(doc["sections"]["statistics"])
    assert (stats["epsilon"] == 0.5).all() and stats["dim"].tolist() == list(range(8))
    emb = pd.DataFrame(doc["sections"]["embedding"])
    assert len(emb) == 2 * 4 and (emb["epsilon"] == 1.0).all()
    assert doc["summary"]["curves"]["ssim"]["n_curves"] == 2


def test_one_seed_other_than_zero_is_the_seed_recorded(run):
    code, out, err = run("latent-attack", *SMALL, "--seeds", "5", "--format", "json",
                         "--quiet")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["config"]["seed"] == 5 and doc["config"]["seeds"] == [5]
    assert {row["seed"] for row in doc["inputs"]} == {5}


def test_targeted_attack_towards_images_of_other_data(run):
    code, out, err = run("latent-attack", *SMALL, "--goal", "targeted", "--target", "other",
                         "--targets", "digits:train", "--format", "json", "--quiet")
    assert code == 0, err
    rows = pd.DataFrame(strict_json(out)["inputs"])
    means = rows.groupby("epsilon")["target_mse"].mean()
    assert (means > 0).all() and (np.diff(means) < 0).all()


@pytest.mark.parametrize(("extra", "match"), [
    (("--seeds", "1.5"), r"--seeds takes comma-separated integers"),
    (("--seeds", ","), r"seeds needs at least one seed"),
    (("--r", "-1"), r"\br must be a finite number > 0"),
])
def test_bad_seeds_and_r_are_one_line_errors(run, extra, match):
    line = assert_one_error_line(*run("latent-attack", *SMALL, "--quiet", *extra))
    assert re.search(match, line), line


def test_latent_margin_finds_no_violation(run):
    code, out, err = run("latent-margin", "--model", M, "--limit", "4", "--n-samples", "500",
                         "--steps", "5", "--restarts", "1", "--n-noise", "8", "--format",
                         "json", "--quiet")
    assert code == 0, err
    doc = strict_json(out)
    assert doc["kind"] == "latent-margin"
    summary = doc["summary"]
    assert summary["n_inputs"] == 4
    assert summary["l2"]["violations"] == 0 and summary["whitened"]["violations"] == 0
    assert not any(row["l2_violation"] or row["whitened_violation"] for row in doc["inputs"])


@pytest.mark.parametrize(("kind", "flag"), [("dd", None), ("latent-statistics", "statistics"),
                                            ("tsne", "embedding")])
def test_plots_of_a_latent_result(run, with_sections, tmp_path, kind, flag):
    out = tmp_path / f"{kind}.png"
    code, stdout, err = run("plot", kind, with_sections, "--out", out)
    assert code == 0, err
    assert stdout == "" and out.read_bytes().startswith(PNG)
    if flag is None:
        return
    # The same result without its sections cannot draw them: one line, exit 2.
    bare = json.loads(with_sections.read_text())
    del bare["sections"]
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare))
    line = assert_one_error_line(*run("plot", kind, path, "--out", tmp_path / "no.png"))
    assert f"has no {flag}" in line and ("--statistics-at" in line or "--tsne-at" in line)
    assert not (tmp_path / "no.png").exists()


def _idx(path, array: np.ndarray) -> None:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ("mnist", "fashion-mnist"))
def test_the_papers_architecture_on_idx_files(tmp_path, name):
    """MNIST-format files (the user's MNIST or Fashion-MNIST): train the paper's
    convolutional DAE on them and attack it in latent space, end to end."""
    rng = np.random.default_rng(5)
    for prefix, n in (("train", 40), ("t10k", 8)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    out_path = tmp_path / "dae.safetensors"
    code, out, err = cli_output("train", "--data", f"{name}:{tmp_path}:train", "--arch", "conv",
                                "--channels", "32,64,128,64", "--activation", "leaky_relu",
                                "--latent-dim", "10", "--likelihood", "gaussian", "--family",
                                "mmd-dae", "--epochs", "1", "--batch-size", "16", "--quiet",
                                "--out", out_path)
    assert code == 0, err
    assert json.loads(out)["training"]["family"] == "mmd-dae"
    code, out, err = cli_output("latent-attack", "--model", out_path, "--data",
                                f"{name}:{tmp_path}:test", "--epsilons", "0,1", "--goal",
                                "targeted", "--format", "csv", "--quiet")
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    assert len(df) == 8 * 2 and df["ssim"].between(-1, 1).all()
    assert (df.loc[df.epsilon == 1, "target_mse"].to_numpy()
            <= df.loc[df.epsilon == 0, "target_mse"].to_numpy() + 1e-6).all()
