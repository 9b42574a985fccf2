"""The ``rcert`` command line, driven in-process through ``rcert.cli.main``.

Every user error must end as exactly one line ``rcert: error: ...`` on stderr, exit status 2,
nothing on stdout and no traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_one_error_line, strict_json

import rcert
from rcert.cli.main import main
from rcert.engine.certificates import COLUMNS

DIGITS_TEST_SIZE = 360  # ceil(1797 / 5)


def _save(model, path: Path, **meta) -> Path:
    rcert.save(model, path, **meta)
    return path


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """Untrained checkpoints, made in milliseconds: an 8x8 MLP (digits) and a 16x16 conv."""
    folder = tmp_path_factory.mktemp("ckpts")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mlp = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
        torch.manual_seed(0)
        conv = rcert.build_model("conv", input_shape=(1, 16, 16), latent_dim=3, channels=(4, 8))
    metrics = {"best_val_elbo": -40.0}
    return {
        "mlp": _save(mlp, folder / "mlp.rcert", data="digits:train", recommended_r=0.8,
                     metrics=metrics),
        "no_r": _save(mlp, folder / "no_r.rcert", data="digits:train", metrics=metrics),
        "no_data": _save(mlp, folder / "no_data.rcert", recommended_r=0.8),
        "conv": _save(conv, folder / "conv.rcert", data="dsprites:train:n=100:res=16",
                      recommended_r=0.5),
    }


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, Path]:
    """Data and foreign files for the bad-input tests."""
    folder = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)

    def npy(name: str, array: np.ndarray) -> Path:
        np.save(folder / name, array)
        return folder / name

    nan = rng.random((4, 1, 8, 8)).astype(np.float32)
    nan[1, 0, 3, 3] = np.nan
    inf = rng.random((4, 1, 8, 8)).astype(np.float32)
    inf[2, 0, 0, 0] = np.inf
    garbage = folder / "garbage.rcert"
    garbage.write_bytes(rng.bytes(300))
    pickled = folder / "weights.pt"
    torch.save({"w": torch.zeros(3)}, pickled)
    (folder / "a_folder").mkdir()
    return {
        "good": npy("good.npy", rng.random((3, 1, 8, 8)).astype(np.float32)),
        "train": npy("train.npy", rng.random((40, 1, 8, 8)).astype(np.float32)),
        "shape99": npy("shape99.npy", rng.random((4, 1, 9, 9)).astype(np.float32)),
        "rgb": npy("rgb.npy", rng.random((4, 3, 8, 8)).astype(np.float32)),
        "nan": npy("nan.npy", nan),
        "inf": npy("inf.npy", inf),
        "bytes_range": npy("bytes_range.npy", (255 * rng.random((4, 1, 8, 8))).astype(np.float32)),
        "garbage": garbage,
        "pickle": pickled,
        "folder": folder / "a_folder",
        "missing": folder / "missing.rcert",
        "missing_npy": folder / "missing.npy",
    }


def _margin(ckpt: Path, *extra) -> list[str]:
    return ["margin", "--model", str(ckpt), "--limit", "5", "--n-samples", "50", *extra]


def _as_float(value) -> float:
    # JSON spells non-finite numbers "inf" / "-inf" / "nan"; float() reads both spellings.
    return float(value)


# --- rcert margin: output ------------------------------------------------------------------


def test_margin_table(run, ckpts):
    code, out, err = run(*_margin(ckpts["mlp"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[0] == "index"
    assert [int(line.split()[0]) for line in lines[1:6]] == [0, 1, 2, 3, 4]
    assert lines[6] == ""
    assert lines[7] == f"model {ckpts['mlp']} on digits:test"
    assert lines[8] == "r=0.8, m=0.5, n_samples=50, alpha=0.001, seed=0"
    assert lines[9].startswith("certified ") and lines[9].split()[2:4] == ["of", "5"]
    # Progress goes to stderr, never stdout.
    assert "certify:" in err and "certify:" not in out


def test_margin_quiet_writes_nothing_to_stderr(run, ckpts):
    code, out, err = run(*_margin(ckpts["mlp"], "--quiet"))
    assert code == 0 and out and err == ""


@pytest.fixture(scope="module")
def margin_json(ckpts) -> dict:
    """``rcert margin --format json`` once for the module."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit) as info:
        main(_margin(ckpts["mlp"], "--format", "json", "--quiet"))
    assert info.value.code == 0
    return strict_json(buffer.getvalue())


def test_margin_json_structure_and_defaults(margin_json, ckpts):
    res = margin_json
    assert set(res) == {"schema_version", "kind", "config", "model", "summary", "inputs"}
    assert res["kind"] == "margin"
    assert res["schema_version"] == 1
    assert res["config"] == {"r": 0.8, "m": 0.5, "n_samples": 50, "alpha": 0.001, "seed": 0,
                             "data": "digits:test", "device": "cpu"}
    assert res["model"]["path"] == str(ckpts["mlp"])
    assert res["model"]["data"] == "digits:train"
    assert res["model"]["recommended_r"] == 0.8
    assert res["model"]["metrics"] == {"best_val_elbo": -40.0}
    assert len(res["inputs"]) == 5
    for row in res["inputs"]:
        assert list(row) == list(COLUMNS)
    assert res["summary"]["n_inputs"] == 5
    n_abstained = sum(row["abstain"] for row in res["inputs"])
    assert res["summary"]["n_abstained"] == n_abstained
    assert res["summary"]["n_certified"] == 5 - n_abstained


def test_margin_json_agrees_with_the_python_api(margin_json, ckpts):
    model = rcert.load(ckpts["mlp"])
    data = rcert.load_data("digits:test").subset(5)
    df = rcert.certify(model, data.x, r=0.8, m=0.5, n_samples=50, alpha=0.001, seed=0,
                       index=data.index)
    rows = margin_json["inputs"]
    for col in COLUMNS:
        got = [row[col] for row in rows]
        want = df[col].tolist()
        if col in ("index", "k", "n", "abstain"):
            assert got == want, col
        else:
            np.testing.assert_allclose([_as_float(v) for v in got], want, rtol=1e-12,
                                       err_msg=col)
    assert [row["n"] for row in rows] == [50] * 5
    assert [row["p_hat"] for row in rows] == pytest.approx([k / 50 for k in df["k"]])


def test_margin_csv_matches_json(run, ckpts, margin_json):
    code, out, err = run(*_margin(ckpts["mlp"], "--format", "csv", "--quiet"))
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 5
    for col in COLUMNS:
        want = [row[col] for row in margin_json["inputs"]]
        if col in ("index", "k", "n", "abstain"):
            assert df[col].tolist() == want, col
        else:
            assert df[col].tolist() == [_as_float(v) for v in want], col


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_margin_output_is_reproducible(run, ckpts, fmt):
    outs = [run(*_margin(ckpts["mlp"], "--format", fmt, "--quiet", "--seed", seed))
            for seed in (7, 7, 8)]
    assert all(code == 0 for code, _, _ in outs)
    assert outs[0][1] == outs[1][1]
    assert outs[0][1] != outs[2][1]


def _limit_frames(run, ckpt: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    for limit in ("3", "5"):
        code, out, err = run("margin", "--model", ckpt, "--n-samples", "50", "--quiet",
                             "--format", "csv", "--limit", limit)
        assert code == 0, err
        frames.append(pd.read_csv(io.StringIO(out)))
    return frames[0], frames[1].iloc[:3]


def test_limit_reproduces_the_first_rows(run, ckpts):
    # Counts exactly (same noise per input); other columns up to float rounding, since
    # batch shapes change how matrix products round.
    three, five = _limit_frames(run, ckpts["mlp"])
    exact = ["index", "k", "n", "p_hat", "p_lower", "abstain"]
    pd.testing.assert_frame_equal(three[exact], five[exact], check_exact=True)
    pd.testing.assert_frame_equal(three, five, check_exact=False, rtol=1e-5, atol=0)


def test_output_file(run, ckpts, tmp_path):
    target = tmp_path / "report.csv"
    code, out, err = run(*_margin(ckpts["mlp"], "--format", "csv", "--quiet",
                                  "--output", target))
    assert code == 0, err
    assert out == "" and err == ""
    code, plain, _ = run(*_margin(ckpts["mlp"], "--format", "csv", "--quiet"))
    assert code == 0
    assert target.read_text() == plain
    # Replacing an existing file works too.
    code, _, _ = run(*_margin(ckpts["mlp"], "--format", "json", "--quiet", "--output", target))
    assert code == 0
    assert strict_json(target.read_text())["config"]["r"] == 0.8
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]  # no temporary left over


def test_failed_run_leaves_existing_output_intact(run, ckpts, tmp_path):
    target = tmp_path / "report.csv"
    target.write_bytes(b"precious\x00bytes\n")
    code, out, err = run(*_margin(ckpts["mlp"], "--r", "-1", "--output", target))
    assert_one_error_line(code, out, err)
    assert target.read_bytes() == b"precious\x00bytes\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_output_into_missing_folder(run, ckpts, tmp_path):
    code, out, err = run(*_margin(ckpts["mlp"], "--quiet", "--output",
                                  tmp_path / "nope" / "r.csv"))
    line = assert_one_error_line(code, out, err)
    assert "does not exist" in line
    assert not (tmp_path / "nope").exists()


def test_output_into_missing_folder_is_refused_before_certifying(run, ckpts, tmp_path):
    code, out, err = run(*_margin(ckpts["mlp"], "--output", tmp_path / "nope" / "r.csv"))
    assert code == 2
    assert "certify:" not in err
    assert_one_error_line(code, out, err)


def test_data_from_npy_file(run, ckpts, files):
    code, out, err = run(*_margin(ckpts["mlp"], "--data", files["good"], "--format", "json",
                                  "--quiet"))
    assert code == 0, err
    res = strict_json(out)
    assert res["config"]["data"] == f"{files['good']}:all"
    # --limit 5 on 3 rows keeps all 3.
    assert [row["index"] for row in res["inputs"]] == [0, 1, 2]
    model = rcert.load(ckpts["mlp"])
    df = rcert.certify(model, np.load(files["good"]), r=0.8, n_samples=50)
    assert [row["k"] for row in res["inputs"]] == df["k"].tolist()


def test_explicit_r_and_data_override_the_checkpoint(run, ckpts):
    code, out, err = run(*_margin(ckpts["no_r"], "--r", "2.5", "--data", "digits:train",
                                  "--limit", "2", "--format", "json", "--quiet"))
    assert code == 0, err
    res = strict_json(out)
    assert res["config"]["r"] == 2.5
    assert res["config"]["data"] == "digits:train"
    assert len(res["inputs"]) == 2
    assert res["model"]["recommended_r"] is None


def test_conv_checkpoint_defaults_to_the_test_split_of_its_data(run, ckpts):
    code, out, err = run("margin", "--model", ckpts["conv"], "--n-samples", "50",
                         "--format", "json", "--quiet")
    assert code == 0, err
    res = strict_json(out)
    assert res["config"]["data"] == "dsprites:test:n=100:res=16"
    assert len(res["inputs"]) == 20  # the last 20 % of 100 images
    assert res["config"]["r"] == 0.5
    assert res["model"]["architecture"]["arch"] == "conv"


def test_margin_without_recorded_r_or_data(run, ckpts):
    line = assert_one_error_line(*run(*_margin(ckpts["no_r"])))
    assert "records no recommended r" in line and "--r" in line
    line = assert_one_error_line(*run(*_margin(ckpts["no_data"])))
    assert "records no training data" in line and "--data" in line


# --- rcert margin: bad input -----------------------------------------------------------------

# (id, arguments after the model, a piece the message must contain); "{name}" is a path in
# the ``files`` fixture.
MARGIN_ERRORS = [
    ("shape", ["--data", "{shape99}"], "input shape (1, 9, 9)"),
    ("channels", ["--data", "{rgb}"], "input shape (3, 8, 8)"),
    ("nan", ["--data", "{nan}"], "holds NaN or infinite values"),
    ("inf", ["--data", "{inf}"], "holds NaN or infinite values"),
    ("range", ["--data", "{bytes_range}"], "data range"),
    ("r0", ["--r", "0"], "r must be"),
    ("r-neg", ["--r", "-1"], "r must be"),
    ("r-nan", ["--r", "nan"], "r must be"),
    ("r-inf", ["--r", "inf"], "r must be"),
    ("n-samples", ["--n-samples", "0"], "--n-samples"),
    ("alpha0", ["--alpha", "0"], "alpha"),
    ("alpha1", ["--alpha", "1"], "alpha"),
    ("alpha1.5", ["--alpha", "1.5"], "alpha"),
    ("m0", ["--m", "0"], "m must"),
    ("m1", ["--m", "1"], "m must"),
    ("missing-data", ["--data", "{missing_npy}"], "does not exist"),
    ("unknown-dataset", ["--data", "imagenet:test"], "unknown dataset 'imagenet'"),
    ("bad-split", ["--data", "digits:valid"], "unexpected item 'valid'"),
    ("limit0", ["--limit", "0"], "limit"),
    ("limit-neg", ["--limit", "-2"], "limit"),
    ("cuda", ["--device", "cuda"], "cuda"),
    ("device", ["--device", "tpu"], "--device"),
    ("unknown-option", ["--bogus"], "--bogus"),
    ("seed", ["--seed", "-1"], "--seed"),
    ("format", ["--format", "xml"], "'xml'"),
    ("not-a-number", ["--r", "abc"], "--r"),
    ("memory", ["--memory-mb", "0"], "--memory-mb"),
]


def _fill(args: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in args]


@pytest.mark.parametrize(("args", "needle"), [case[1:] for case in MARGIN_ERRORS],
                         ids=[case[0] for case in MARGIN_ERRORS])
def test_margin_bad_input(run, ckpts, files, args, needle):
    if needle == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    line = assert_one_error_line(*run(*_margin(ckpts["mlp"], *_fill(args, files))))
    assert needle in line


MODEL_ERRORS = [
    ("missing", "missing", "does not exist"),
    ("folder", "folder", "not a pythae model folder"),
    ("garbage", "garbage", "not a model file rcert can read"),
    ("pickle", "pickle", "say how to build the model"),
]


@pytest.mark.parametrize(("key", "needle"), [case[1:] for case in MODEL_ERRORS],
                         ids=[case[0] for case in MODEL_ERRORS])
def test_margin_bad_model_file(run, files, key, needle):
    line = assert_one_error_line(*run("margin", "--model", files[key], "--n-samples", "50"))
    assert needle in line
    assert str(files[key]) in line


def test_margin_missing_model_option(run):
    line = assert_one_error_line(*run("margin"))
    assert "--model" in line


def test_unknown_command(run):
    line = assert_one_error_line(*run("certify"))
    assert "certify" in line


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_margin_non_finite_memory_budget(run, ckpts, value):
    try:
        result = run(*_margin(ckpts["mlp"], "--memory-mb", value))
    except ValueError as exc:  # what escapes main today
        pytest.fail(f"uncaught {exc!r}")
    assert_one_error_line(*result)


def test_margin_empty_data_spec_is_refused(run, ckpts):
    assert_one_error_line(*run(*_margin(ckpts["mlp"], "--data", "", "--quiet")))


def test_no_arguments(run):
    assert_one_error_line(*run())


# --- rcert train ---------------------------------------------------------------------------

TRAIN = ["train", "--data", "digits:train", "--epochs", "2", "--hidden", "16",
         "--latent-dim", "2"]


def test_train_quiet(run, tmp_path):
    out_path = tmp_path / "vae.rcert"
    code, out, err = run(*TRAIN, "--out", out_path, "--quiet")
    assert code == 0, err
    assert err == ""
    card_path = tmp_path / "vae.json"
    assert out_path.is_file() and card_path.is_file()
    card = json.loads(card_path.read_text())
    assert strict_json(out) == card  # stdout is the card and nothing else
    assert card["name"] == "vae"
    assert card["sha256"] == hashlib.sha256(out_path.read_bytes()).hexdigest()
    assert card["data"] == "digits:train"
    assert isinstance(card["recommended_r"], float) and card["recommended_r"] > 0
    assert math.isfinite(card["metrics"]["best_val_elbo"])
    assert card["metrics"]["epochs_run"] == 2
    assert card["command"].split()[0] == "rcert"
    assert card["architecture"]["hidden"] == [16]
    assert card["architecture"]["latent_dim"] == 2
    model = rcert.load(out_path)
    assert model.meta["recommended_r"] == card["recommended_r"]
    code, out, err = run("margin", "--model", out_path, "--limit", "3", "--n-samples", "50",
                         "--format", "json", "--quiet")
    assert code == 0, err
    res = strict_json(out)
    assert res["config"]["r"] == card["recommended_r"]
    assert res["config"]["data"] == "digits:test"
    assert len(res["inputs"]) == 3


def test_train_progress_goes_to_stderr(run, tmp_path, files):
    out_path = tmp_path / "vae.rcert"
    code, out, err = run("train", "--data", files["train"], "--epochs", "2", "--hidden", "8",
                         "--latent-dim", "2", "--out", out_path)
    assert code == 0, err
    assert "training epochs" in err
    card = strict_json(out)
    assert card == json.loads((tmp_path / "vae.json").read_text())
    assert card["data"] == f"{files['train']}:all"
    assert "test_elbo" not in card["metrics"]  # a file has no test split


def test_train_records_the_command_it_was_given(run, tmp_path, files):
    argv = ["train", "--data", str(files["train"]), "--epochs", "1", "--hidden", "8",
            "--latent-dim", "2", "--out", str(tmp_path / "v.rcert"), "--quiet"]
    code, out, err = run(*argv)
    assert code == 0, err
    assert strict_json(out)["command"] == shlex.join(["rcert", *argv])


TRAIN_ERRORS = [
    ("test-split", ["--data", "digits:test"], "test split"),
    ("floor-without-tau", ["--sigma", "floor"], "tau"),
    ("beta0", ["--beta", "0"], "beta"),
    ("beta-neg", ["--beta", "-1"], "beta"),
    ("hidden", ["--hidden", "12,abc"], "--hidden"),
    ("json-out", ["--out", "{dir}/model.json"], ".json"),
    ("epochs", ["--epochs", "0"], "epochs"),
    ("arch", ["--arch", "resnet"], "--arch"),
]


@pytest.mark.parametrize(("args", "needle"), [case[1:] for case in TRAIN_ERRORS],
                         ids=[case[0] for case in TRAIN_ERRORS])
def test_train_bad_input_leaves_existing_files_intact(run, tmp_path, args, needle):
    out_path = tmp_path / "model.rcert"
    out_path.write_bytes(b"old checkpoint")
    args = [a.format(dir=tmp_path) for a in args]
    base = [*TRAIN, "--out", out_path] if "--out" not in args else TRAIN
    # Later options win in click, so the bad value overrides the good default in TRAIN.
    line = assert_one_error_line(*run(*base, *args))
    assert needle in line
    assert out_path.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.rcert"]


def test_train_out_into_missing_folder(run, tmp_path, files):
    code, out, err = run("train", "--data", files["train"], "--epochs", "1", "--hidden", "8",
                         "--latent-dim", "2", "--quiet", "--out", tmp_path / "nope" / "m.rcert")
    line = assert_one_error_line(code, out, err)
    assert "does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_train_out_into_missing_folder_is_refused_before_training(run, tmp_path, files):
    code, out, err = run("train", "--data", files["train"], "--epochs", "1", "--hidden", "8",
                         "--latent-dim", "2", "--out", tmp_path / "nope" / "m.rcert")
    assert code == 2
    assert "training epochs" not in err
    assert_one_error_line(code, out, err)


# --- version, help, the real console entry -------------------------------------------------


def test_version(run):
    code, out, err = run("--version")
    assert code == 0 and err == ""
    assert out == f"rcert, version {rcert.__version__}\n"


@pytest.mark.parametrize(("argv", "needle"), [
    (["--help"], "margin"), (["-h"], "train"), (["margin", "--help"], "--n-samples"),
    (["train", "--help"], "--latent-dim"),
])
def test_help(run, argv, needle):
    code, out, err = run(*argv)
    assert code == 0 and err == ""
    assert out.startswith("Usage: rcert")
    assert needle in out


def test_console_entry_in_a_subprocess(files):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "rcert.cli", "margin", "--model", str(files["garbage"])],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rcert: error: ")
    assert "not an rcert checkpoint" in lines[0]


# --- attacks from the command line (issue 3) ----------------------------------------------


def test_attack_json_per_input_and_budget(run, ckpts):
    code, out, err = run("attack", "--model", ckpts["mlp"], "--L", "0.5,1", "--L", "2",
                         "--limit", "3", "--steps", "5", "--restarts", "2", "--format", "json",
                         "--quiet", "--threat", "mean")
    assert code == 0, err
    res = strict_json(out)
    assert set(res) == {"schema_version", "kind", "config", "model", "summary", "inputs"}
    assert res["kind"] == "attack" and res["config"]["threat"] == "mean"
    rows = pd.DataFrame(res["inputs"])
    assert sorted(rows["L"].unique()) == [0.5, 1.0, 2.0]
    assert len(rows) == 9
    assert (rows["delta_norm"] <= rows["L"] * (1 + 1e-5)).all()
    assert (rows["noise_delta_norm"] <= rows["L"] * (1 + 1e-5)).all()
    budgets = res["summary"]["budgets"]
    assert [b["L"] for b in budgets] == [0.5, 1.0, 2.0]
    for b in budgets:
        sub = rows[rows["L"] == b["L"]]
        assert b["damage"]["mean"] == pytest.approx(sub["damage"].mean())
        assert b["attack_beats_noise"] == pytest.approx(
            (sub["damage"] >= sub["noise_damage"]).mean())


def test_attack_table_and_bad_budget(run, ckpts):
    code, out, err = run("attack", "--model", ckpts["mlp"], "--L", "1", "--limit", "2",
                         "--steps", "3", "--quiet")
    assert code == 0, err
    assert "inputs attacked; means per budget" in out
    for bad in ("0", "-1", "abc", "1,,x"):
        assert_one_error_line(*run("attack", "--model", ckpts["mlp"], "--L", bad,
                                    "--limit", "2", "--quiet"))
    assert_one_error_line(*run("attack", "--model", ckpts["mlp"], "--limit", "2"))


def test_curve_csv(run, ckpts):
    code, out, err = run("curve", "--model", ckpts["mlp"], "--radii", "0,0.5,1", "--limit", "2",
                         "--n-samples", "50", "--format", "csv", "--quiet")
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    assert list(df.columns) == ["index", "rho", "delta_norm", "k", "n", "p_hat", "p_lower",
                                "p_upper", "certified", "broken"]
    # certified and broken are the two confident verdicts, and never both.
    assert (df["certified"] == (df["p_lower"] > 0.5)).all()
    assert (df["broken"] == (df["p_upper"] <= 0.5)).all()
    assert not (df["certified"] & df["broken"]).any()
    assert sorted(df["rho"].unique()) == [0.0, 0.5, 1.0] and len(df) == 6
    assert (df["delta_norm"] <= df["rho"] + 1e-5).all()
    assert (df["p_lower"] <= df["p_hat"]).all() and (df["p_hat"] <= df["p_upper"]).all()
    assert_one_error_line(*run("curve", "--model", ckpts["mlp"], "--radii", "-1",
                                "--limit", "2", "--quiet"))


def test_margin_empirical_adds_columns_and_summary(run, ckpts):
    code, out, err = run("margin", "--model", ckpts["mlp"], "--limit", "3", "--n-samples", "100",
                         "--empirical", "--steps", "5", "--restarts", "2", "--n-noise", "8",
                         "--format", "json", "--quiet")
    assert code == 0, err
    res = strict_json(out)
    rows = pd.DataFrame(res["inputs"])
    for col in ("margin_empirical", "margin_bracket_lo", "margin_bracket_hi", "p_check",
                "p_check_upper", "violation", "tightness"):
        assert col in rows.columns
    finite = rows["margin_empirical"].map(lambda v: v != "inf")
    lo = rows.loc[finite, "margin_bracket_lo"].astype(float)
    assert (lo <= rows.loc[finite, "margin_empirical"].astype(float)).all()
    empirical = res["summary"]["empirical"]
    assert empirical["n_violations"] == int(rows["violation"].sum())
    assert set(empirical["fit"]) == {"bound", "bound_certified"}
    assert res["config"]["empirical"]["threat"] == "mean"
    code, out, err = run("margin", "--model", ckpts["mlp"], "--limit", "2", "--n-samples", "50",
                         "--empirical", "--threat", "both", "--steps", "3", "--restarts", "1",
                         "--format", "json", "--quiet")
    assert code == 0, err
    assert strict_json(out)["config"]["empirical"]["threat"] == "both"


@pytest.mark.parametrize("option", ["--restarts", "--steps", "--n-noise"])
def test_zero_attack_effort_is_refused_not_replaced(run, ckpts, option):
    assert_one_error_line(*run("attack", "--model", ckpts["mlp"], "--L", "1", "--limit", "2",
                                option, "0", "--quiet"))
    assert_one_error_line(*run("margin", "--model", ckpts["mlp"], "--limit", "2",
                                "--empirical", option, "0", "--quiet"))


def test_plot_from_saved_results(run, ckpts, tmp_path):
    saved = tmp_path / "m.json"
    code, _, err = run("margin", "--model", ckpts["mlp"], "--limit", "4", "--n-samples", "100",
                       "--format", "json", "--output", saved, "--quiet")
    assert code == 0, err
    for suffix, head in ((".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"fraction{suffix}"
        code, stdout, err = run("plot", "certified-fraction", saved, "--out", out)
        assert code == 0, err
        assert stdout == "" and out.read_bytes().startswith(head)
    line = assert_one_error_line(*run("plot", "damage", saved, "--out", tmp_path / "d.png"))
    assert "rcert attack" in line
    assert_one_error_line(*run("plot", "margins", saved, "--out", tmp_path / "d.pdf"))
    assert_one_error_line(*run("plot", "margins", tmp_path / "missing.json",
                                "--out", tmp_path / "d.png"))
    assert_one_error_line(*run("plot", "nonsense", saved, "--out", tmp_path / "d.png"))
