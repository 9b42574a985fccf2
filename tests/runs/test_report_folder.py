"""The report folder (``rcert.bundle``) and the ``rcert report`` command."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import shutil
import warnings
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from conftest import (
    REAL_CERTIFY,
    CertifyCalls,
    add_attack_columns,
    assert_one_error_line,
    cli_output,
    strict_json,
)

import rcert
import rcert.plots
import rcert.runs.resume
from rcert.engine.certificates import COLUMNS
from rcert.results import html, junit, markdown
from rcert.runs import report

REPORT_FILES = ("inputs.csv", "results.json", "summary.md", "junit.xml", "report.html")
EVIL = "<script>alert(1)</script> & co"


def _report(ab_ckpts, out: Path, *extra) -> list:
    return ["report", "--model", ab_ckpts["a"], "--model", ab_ckpts["b"], "--out", out,
            "--limit", "6", "--n-samples", "50", "--quiet", *extra]


@pytest.fixture(scope="module")
def main_report(ab_ckpts, tmp_path_factory):
    """``rcert report`` on two models, once for the module: (folder, code, stdout, stderr)."""
    out = tmp_path_factory.mktemp("report") / "rep"
    code, stdout, stderr = cli_output(*_report(ab_ckpts, out))
    return out, code, stdout, stderr


@pytest.fixture(scope="module")
def abstaining(ab_ckpts, tmp_path_factory) -> dict:
    """Results (no files) of a setting where some inputs abstain: a small r."""
    out = tmp_path_factory.mktemp("abstaining")
    res = report.compute([report.ModelEntry(str(ab_ckpts["a"]), limit=12,
                                            certify={"r": 0.3, "n_samples": 100})],
                         out).results
    n_abstained = sum(bool(row["abstain"]) for row in res["a"]["inputs"])
    assert 0 < n_abstained < 12  # both kinds of input, or the tests below prove little
    return res


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a report folder, by relative path; the hidden resume files and lock
    file (``.partial/``, ``.lock``) aside."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")}


# --- the folder ----------------------------------------------------------------------------


def test_report_writes_every_file(main_report):
    out, code, _, stderr = main_report
    assert code == 0, stderr
    assert stderr == ""
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    for kind in report.FIGURES:
        for suffix in ("png", "svg"):
            assert (out / "plots" / f"{kind}.{suffix}").stat().st_size > 0
    assert not (out / "plots" / f"{report.EMPIRICAL_FIGURE}.png").exists()  # no --empirical
    assert (out / "plots" / "margins.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in (out / "plots" / "margins.svg").read_bytes()


def test_stdout_is_the_markdown_summary(main_report):
    out, _, stdout, _ = main_report
    assert stdout == (out / "summary.md").read_text()
    lines = stdout.splitlines()
    assert lines[0] == "# rcert report"
    assert lines[2] == "| | a | b |"
    assert "| inputs | 6 | 6 |" in lines


def test_inputs_csv_has_model_first_and_every_row(main_report):
    out = main_report[0]
    df = pd.read_csv(out / "inputs.csv")
    assert list(df.columns) == ["model", *COLUMNS]
    assert len(df) == 12
    assert df["model"].tolist() == ["a"] * 6 + ["b"] * 6
    assert df["index"].tolist() == list(range(6)) * 2
    # The two seeds give two different models.
    assert df.loc[df.model == "a", "jacobian_fro"].tolist() != \
        df.loc[df.model == "b", "jacobian_fro"].tolist()


def test_results_json_document(main_report, ab_ckpts):
    out = main_report[0]
    doc = strict_json((out / "results.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["kind"] == "report"
    assert list(doc["models"]) == ["a", "b"]
    assert doc["verdicts"] == []
    for name in ("a", "b"):
        res = doc["models"][name]
        assert res["model"]["path"] == str(ab_ckpts[name])
        assert res["config"]["data"] == "digits:test"
        assert res["config"]["r"] == 0.8
        assert res["config"]["n_samples"] == 50
        assert res["summary"]["n_inputs"] == 6
        assert [row["index"] for row in res["inputs"]] == list(range(6))
    # The per-input rows agree with inputs.csv.
    df = pd.read_csv(out / "inputs.csv")
    for name in ("a", "b"):
        rows = df[df.model == name]
        assert rows["p_lower"].tolist() == [r["p_lower"] for r in doc["models"][name]["inputs"]]


def test_results_json_digests_cover_every_file(main_report):
    out = main_report[0]
    doc = strict_json((out / "results.json").read_text())
    on_disk = set(_snapshot(out)) - {"results.json"}
    assert set(doc["files"]) == on_disk
    for name, digest in doc["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert report.is_complete(out)


@pytest.fixture
def report_copy(main_report, tmp_path) -> Path:
    copied = tmp_path / "rep"
    shutil.copytree(main_report[0], copied)
    assert report.is_complete(copied)
    return copied


@pytest.mark.parametrize("name", ["inputs.csv", "summary.md", "junit.xml", "report.html",
                                  "plots/margins.svg", "plots/encoder.png"])
def test_a_corrupted_file_makes_the_report_incomplete(report_copy, name):
    path = report_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert not report.is_complete(report_copy)


@pytest.mark.parametrize("damage", ["delete results.json", "delete a file",
                                    "truncate results.json", "results.json without files"])
def test_a_damaged_report_is_incomplete(report_copy, damage):
    marker = report_copy / "results.json"
    if damage == "delete results.json":
        marker.unlink()
    elif damage == "delete a file":
        (report_copy / "plots" / "margins.png").unlink()
    elif damage == "truncate results.json":
        marker.write_bytes(marker.read_bytes()[:100])
    else:
        doc = json.loads(marker.read_text())
        del doc["files"]
        marker.write_text(json.dumps(doc))
    assert not report.is_complete(report_copy)


def test_an_empty_or_missing_folder_is_incomplete(tmp_path):
    assert not report.is_complete(tmp_path)
    assert not report.is_complete(tmp_path / "missing")


def test_verify_names_the_first_file_missing_or_changed(report_copy):
    assert report.verify(report_copy)["kind"] == "report"
    svg = report_copy / "plots" / "margins.svg"
    svg.write_bytes(svg.read_bytes() + b" ")
    with pytest.raises(rcert.RcertError, match=f"^report file {re.escape(str(svg))} does not "
                                               f"match its digest in results.json: it changed "
                                               f"after"):
        report.verify(report_copy)
    (report_copy / "inputs.csv").unlink()  # listed before the plots
    with pytest.raises(rcert.RcertError, match=r"^report file \S+/inputs.csv does not exist"):
        report.verify(report_copy)
    marker = report_copy / "results.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()),
                                  "files": {"../elsewhere": "0" * 64}}))
    with pytest.raises(rcert.RcertError, match=r"names '\.\./elsewhere', not a file of"):
        report.verify(report_copy)


def test_the_lock_file_is_no_report_file(main_report):
    out = main_report[0]
    assert (out / ".lock").read_bytes() == b""  # let go, and naming no one
    assert ".lock" not in strict_json((out / "results.json").read_text())["files"]


def test_report_reads_its_folder_back_before_printing(ab_ckpts, tmp_path, run, monkeypatch):
    real_write = report.write

    def then_damaged(out, *args, **kwargs):
        document = real_write(out, *args, **kwargs)
        (out / "junit.xml").write_text("changed behind rcert's back")
        return document

    monkeypatch.setattr(report, "write", then_damaged)
    line = assert_one_error_line(*run(*_report(ab_ckpts, tmp_path / "rep")))
    assert "junit.xml does not match its digest in results.json" in line


# --- JUnit XML ------------------------------------------------------------------------------


def _check_junit_counts(text: str) -> ElementTree.Element:
    """Parse; every suite's and the total's counts must match the elements."""
    root = ElementTree.fromstring(text.encode())
    assert root.tag == "testsuites"
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in root.findall("testsuite"):
        counts = {"tests": len(suite.findall("testcase")),
                  "failures": len(suite.findall("testcase/failure")),
                  "skipped": len(suite.findall("testcase/skipped"))}
        for key, value in counts.items():
            assert int(suite.get(key)) == value, (suite.get("name"), key)
            totals[key] += value
        assert suite.get("errors") == "0"
    for key, value in totals.items():
        assert int(root.get(key)) == value, key
    return root


def test_junit_of_the_report(main_report):
    out = main_report[0]
    root = _check_junit_counts((out / "junit.xml").read_text())
    df = pd.read_csv(out / "inputs.csv")
    assert [s.get("name") for s in root] == ["a", "b"]
    for suite in root:
        rows = df[df.model == suite.get("name")]
        assert int(suite.get("tests")) == len(rows)
        assert int(suite.get("skipped")) == int(rows["abstain"].sum())
        assert int(suite.get("failures")) == 0
        assert [c.get("name") for c in suite] == [f"input {i}" for i in rows["index"]]
    assert root.get("tests") == "12"


def test_junit_skips_the_inputs_that_abstain(abstaining):
    root = _check_junit_counts(junit.junit_xml(abstaining))
    rows = abstaining["a"]["inputs"]
    suite = root.find("testsuite")
    skipped = [c.get("name") for c in suite if c.find("skipped") is not None]
    assert skipped == [f"input {r['index']}" for r in rows if r["abstain"]]
    assert int(suite.get("skipped")) == sum(bool(r["abstain"]) for r in rows)
    assert suite.get("failures") == "0"


def _hand_result(rows: list[dict]) -> dict:
    return {"config": {"data": "digits:test", "r": 1.0}, "model": {},
            "summary": {}, "inputs": rows}


def test_junit_marks_violations_abstentions_and_failed_thresholds():
    rows = [
        {"index": 10, "abstain": False, "violation": True, "margin_empirical": 0.25,
         "bound_certified": 0.5},
        {"index": 11, "abstain": True, "violation": False, "margin_empirical": float("inf"),
         "bound_certified": 0.0},
        {"index": 12, "abstain": False, "violation": False, "margin_empirical": 0.9,
         "bound_certified": 0.5},
    ]
    verdicts = [
        {"model": "m", "threshold": "min_mean_margin", "value": 1.0, "limit": 0.5,
         "passed": True, "message": "ok"},
        {"model": "m", "threshold": "max_violations", "value": 1, "limit": 0, "passed": False,
         "message": "1 inputs where an attack beat the certificate: [10]"},
        {"model": "m", "threshold": "max_abstain_fraction", "value": 0.3, "limit": 0.1,
         "passed": False, "message": "too many"},
    ]
    root = _check_junit_counts(junit.junit_xml({"m": _hand_result(rows)}, verdicts))
    model, thresholds = root.findall("testsuite")
    assert model.get("name") == "m" and thresholds.get("name") == "thresholds"
    cases = {c.get("name"): c for c in model}
    failure = cases["input 10"].find("failure")
    assert failure is not None and "0.25" in failure.get("message")
    assert cases["input 10"].find("skipped") is None
    assert cases["input 11"].find("skipped") is not None
    assert cases["input 11"].find("failure") is None
    assert len(cases["input 12"]) == 0
    assert (model.get("tests"), model.get("failures"), model.get("skipped")) == ("3", "1", "1")
    assert (thresholds.get("tests"), thresholds.get("failures")) == ("3", "2")
    failed = [c.get("name") for c in thresholds if c.find("failure") is not None]
    assert failed == ["max_violations", "max_abstain_fraction"]
    assert thresholds[1].find("failure").get("message").endswith("[10]")
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "3", "1")


def test_junit_has_no_threshold_suite_without_verdicts(abstaining):
    for verdicts in (None, []):
        root = ElementTree.fromstring(junit.junit_xml(abstaining, verdicts).encode())
        assert [s.get("name") for s in root] == ["a"]


def test_junit_keeps_odd_names_intact(abstaining):
    res = {EVIL: abstaining["a"]}
    verdicts = [{"model": EVIL, "threshold": "t<&>\"", "value": 1.0, "limit": 2.0,
                 "passed": False, "message": "a <b> & \"c\""}]
    root = _check_junit_counts(junit.junit_xml(res, verdicts))
    assert root[0].get("name") == EVIL
    assert root[1][0].get("name") == "t<&>\""
    assert root[1][0].find("failure").get("message") == "a <b> & \"c\""


# --- HTML -----------------------------------------------------------------------------------


def _assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    lower = page.lower()
    assert "http://" not in lower and "https://" not in lower
    assert "<script" not in lower
    assert "<link" not in lower
    assert "<iframe" not in lower and "<object" not in lower and "<embed" not in lower


def test_report_html_is_self_contained(main_report):
    out = main_report[0]
    page = (out / "report.html").read_text()
    _assert_self_contained(page)
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) == len(report.FIGURES)
    # Each PNG is embedded whole, byte for byte; the other images are the weakest inputs'.
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode() in page
    doc = json.loads((out / "results.json").read_text())
    pictured = sum(min(report.GALLERY_SIZE, sum(not row["abstain"] for row in res["inputs"]))
                   for res in doc["models"].values())
    per_input = 2  # the input and its reconstruction (this report ran no attack)
    assert page.count('src="data:image/png;base64,') == len(pngs) + per_input * pictured
    assert page.count("<img") == len(pngs) + per_input * pictured
    assert "<th>a</th><th>b</th>" in page


def test_report_html_escapes_every_string(abstaining, tmp_path):
    res = copy.deepcopy(abstaining["a"])
    res["config"]["data"] = "<i>data</i> & more"
    verdicts = [{"model": EVIL, "threshold": "<b>threshold</b>", "value": 0.1, "limit": 0.2,
                 "passed": False, "message": "<script>no</script>"}]
    report.write(tmp_path, report.Computed({EVIL: res}, {}), verdicts)
    page = (tmp_path / "report.html").read_text()
    _assert_self_contained(page)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<i>data</i>" not in page and "&lt;i&gt;data&lt;/i&gt; &amp; more" in page
    assert "<b>threshold</b>" not in page and "&lt;b&gt;threshold&lt;/b&gt;" in page
    assert page.count('src="data:image/png;base64,') == len(report.FIGURES)
    assert report.is_complete(tmp_path)
    # The other files carry the name as it is.
    doc = strict_json((tmp_path / "results.json").read_text())
    assert list(doc["models"]) == [EVIL]
    assert pd.read_csv(tmp_path / "inputs.csv")["model"].unique().tolist() == [EVIL]


def test_report_html_escapes_image_names(abstaining):
    png = b"\x89PNG\r\n\x1a\n"
    page = html.report_html(abstaining, {'x"><script>.png': png})
    _assert_self_contained(page)
    assert "&quot;&gt;&lt;script&gt;" in page
    encoded = base64.b64encode(png).decode()
    assert f'src="data:image/png;base64,{encoded}"' in page


def test_an_empirical_report_where_no_attack_succeeded_says_so(ab_ckpts, tmp_path):
    res = report.compute([report.ModelEntry(str(ab_ckpts["a"]), limit=3,
                                            certify={"n_samples": 50}, empirical=True)],
                         tmp_path).results
    for row in res["a"]["inputs"]:
        row["margin_empirical"] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = rcert.plots.margins.margin_distributions(list(res.values()))
    legend = fig.axes[1].get_legend()
    assert legend is not None
    assert any("3 = inf" in t.get_text() for t in legend.get_texts())


# --- Markdown -------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """Split a Markdown table row on unescaped pipes (a backslash escapes the next char)."""
    cells, cell, i = [], "", 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cell += line[i + 1]
            i += 2
            continue
        if line[i] == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += line[i]
        i += 1
    cells.append(cell)
    return [c.strip() for c in cells[1:-1]]


@pytest.mark.parametrize("name", ["a|b", "a|b\\", "x\\|y", "two\nlines"])
def test_markdown_table_survives_odd_model_names(abstaining, name):
    res = abstaining["a"]
    verdicts = [{"model": name, "threshold": "min|mean", "value": 0.5, "limit": 0.25,
                 "passed": True, "message": ""}]
    text = markdown.summary_markdown({name: res, "plain": res}, verdicts)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    headline = [line for line in tables if len(_cells(line)) == 3]
    verdict_rows = [line for line in tables if len(_cells(line)) == 5]
    assert len(headline) + len(verdict_rows) == len(tables)  # no row has a stray cell
    assert _cells(headline[0]) == ["", name.replace("\n", " "), "plain"]
    assert len(verdict_rows) == 3  # header, rule, one verdict
    assert _cells(verdict_rows[2]) == ["PASS", name.replace("\n", " "), "min|mean", "0.5",
                                       "0.25"]
    assert "## Thresholds: 1 passed, 0 failed" in text


# --- reproducible, resumable, atomic --------------------------------------------------------


def test_the_same_command_twice_gives_the_same_bytes(main_report, ab_ckpts, tmp_path, run):
    code, stdout, err = run(*_report(ab_ckpts, tmp_path / "again"))
    assert code == 0, err
    assert stdout == main_report[2]
    first, second = _snapshot(main_report[0]), _snapshot(tmp_path / "again")
    assert set(first) == set(second)
    for name in first:
        assert first[name] == second[name], name


def test_a_different_seed_changes_the_report(main_report, ab_ckpts, tmp_path, run):
    code, _, err = run(*_report(ab_ckpts, tmp_path / "seed1", "--seed", "1"))
    assert code == 0, err
    assert (tmp_path / "seed1" / "inputs.csv").read_bytes() != \
        (main_report[0] / "inputs.csv").read_bytes()


def _long(ab_ckpts, out: Path, *extra) -> list:
    # 130 inputs: three chunks of the default 64.
    return ["report", "--model", ab_ckpts["a"], "--out", out, "--limit", "130",
            "--n-samples", "50", "--quiet", *extra]


def test_an_interrupted_report_resumes(ab_ckpts, tmp_path, run, monkeypatch):
    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=2))
        code, stdout, err = run(*_long(ab_ckpts, out))
    assert code == 130
    # (click ends the terminal's "^C" line first, hence a blank line before the message.)
    assert err.splitlines()[-1] == "rcert: interrupted" and "Traceback" not in err
    assert stdout == ""
    assert not (out / "results.json").exists()
    assert not report.is_complete(out)

    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    code, _, err = run(*_long(ab_ckpts, out))
    assert code == 0, err
    assert calls.calls == 2  # the chunks at 64 and 128 only
    assert report.is_complete(out)

    monkeypatch.setattr(rcert.runs.resume, "certify", REAL_CERTIFY)
    code, _, err = run(*_long(ab_ckpts, tmp_path / "straight"))
    assert code == 0, err
    for name in ("inputs.csv", "results.json"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    assert len(pd.read_csv(out / "inputs.csv")) == 130


def test_a_rerun_of_a_complete_report_computes_nothing(report_copy, ab_ckpts, run, monkeypatch):
    before = _snapshot(report_copy)
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    code, _, err = run(*_report(ab_ckpts, report_copy))
    assert code == 0, err
    assert calls.calls == 0
    assert _snapshot(report_copy) == before


def test_a_refused_rerun_keeps_the_saved_work(ab_ckpts, tmp_path, run, monkeypatch):
    out = tmp_path / "rep"
    with monkeypatch.context() as patch:
        patch.setattr(rcert.runs.resume, "certify", CertifyCalls(fail_on=3))
        assert run(*_long(ab_ckpts, out))[0] == 130
    assert_one_error_line(*run(*_long(ab_ckpts, out, "--alpha", "2")))
    calls = CertifyCalls()
    monkeypatch.setattr(rcert.runs.resume, "certify", calls)
    assert run(*_long(ab_ckpts, out))[0] == 0
    assert calls.calls == 1  # two chunks were saved before the interruption


@pytest.mark.parametrize("bad", [["--data", "nope:test"], ["--limit", "0"],
                                 ["--n-samples", "0"], ["--model", "missing.rcert"]])
def test_a_failed_run_leaves_a_complete_report_untouched(report_copy, ab_ckpts, run, bad):
    before = _snapshot(report_copy)
    # A missing third model fails after the first two were certified.
    assert_one_error_line(*run(*_report(ab_ckpts, report_copy, *bad)))
    assert _snapshot(report_copy) == before
    assert report.is_complete(report_copy)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -3])
def test_a_model_entry_refuses_a_limit_below_one(limit):
    with pytest.raises(rcert.RcertError, match=f"limit must be at least 1, got {limit}"):
        report.ModelEntry("a.rcert", limit=limit)
    assert report.ModelEntry("a.rcert", limit=1).limit == 1


def test_report_bad_input(ab_ckpts, tmp_path, run):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cases = [
        (["report", "--model", tmp_path / "missing.rcert", "--out", tmp_path / "o1",
          "--quiet"], "missing.rcert"),
        (["report", "--model", ab_ckpts["a"], "--out", tmp_path / "o2", "--limit", "0",
          "--quiet"], "limit"),
        (["report", "--model", ab_ckpts["a"], "--out", a_file, "--limit", "3", "--quiet"],
         "--out"),
        (["report", "--model", ab_ckpts["a"], "--out", tmp_path / "o3", "--limit", "3",
          "--n-samples", "0", "--quiet"], "n_samples"),
        (["report", "--out", tmp_path / "o4"], "--model"),
        (["report", "--model", ab_ckpts["a"]], "--out"),
    ]
    for argv, needle in cases:
        line = assert_one_error_line(*run(*argv))
        assert needle in line, line
    assert a_file.read_text() == "keep me"
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def _hand_made(p_lower, bound, certified, found, tightness_of=None) -> pd.DataFrame:
    """Certify rows with attack columns, written out by hand (m = 0.5)."""
    p_lower, certified, found = (np.asarray(v, dtype=float) for v in (p_lower, certified, found))
    n = len(p_lower)
    rng = np.random.default_rng(n)
    df = pd.DataFrame({
        "index": np.arange(n), "sigma_min": rng.uniform(0.2, 1, n),
        "sigma_mean": rng.uniform(1, 2, n), "jacobian_fro": rng.uniform(1, 3, n),
        "jacobian_spec": rng.uniform(0.5, 1, n), "jacobian_whitened": rng.uniform(1, 5, n),
        "k": np.full(n, 80), "n": np.full(n, 100), "p_hat": np.minimum(p_lower + 0.1, 1),
        "p_lower": p_lower, "r_min": rng.uniform(0.1, 1, n), "r_min_upper": np.full(n, 1.5),
        "bound": bound, "bound_certified": certified, "bound_spectral": certified * 1.5,
        "bound_whitened": certified * 2.5, "latent_margin": rng.uniform(0, 1, n) * certified,
        "abstain": p_lower <= 0.5,
    })
    assert list(df.columns) == list(COLUMNS)
    add_attack_columns(df, found, unbroken_lo=3.0, p_check=0.2, p_check_upper=0.4)
    df.attrs["config"] = {"r": 0.6, "m": 0.5, "n_samples": 100, "alpha": 0.001, "seed": 0}
    return df


@pytest.fixture(scope="module")
def hand_made_results():
    """Two models' results from hand-made rows: abstentions, an unbroken input (inf), an
    unbounded certificate (inf), violations; the second model's mean empirical margin is inf."""
    frames = {
        "one": _hand_made(p_lower=[0.9, 0.4, 0.8, 0.95, 0.7, 0.3, 0.85],
                          bound=[1.1, 0.0, 0.7, 2.5, 0.5, 0.0, 0.9],
                          certified=[0.8, 0.0, 0.5, 2.0, 0.3, 0.0, 0.6],
                          found=[1.6, 0.0, 0.4, 2.9, 1.2, 0.0, 0.25]),
        "two": _hand_made(p_lower=[0.99, 0.6, 0.45, 0.9, 0.75, 0.8],
                          bound=[math.inf, 0.4, 0.0, 1.3, 0.8, 0.6],
                          certified=[math.inf, 0.2, 0.0, 1.0, 0.6, 0.5],
                          found=[0.9, math.inf, 0.0, 0.7, 1.7, 0.45]),
    }
    results = {name: rcert.results.schema.result(df, model={"path": f"{name}.safetensors"},
                                                 config={"data": f"{name}.npz"})
               for name, df in frames.items()}
    return frames, results


def _markdown_table(md: str) -> dict[str, list[str]]:
    """The headline table of a Markdown summary: row label -> cells, one per model."""
    table = {}
    for line in md.splitlines():
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            table[cells[0]] = cells[1:]
    return table


def _close(printed: str, expected: float) -> bool:
    """A number printed to four significant figures against its exact value."""
    value = float(printed)
    if not math.isfinite(expected):
        return value == expected or (math.isnan(value) and math.isnan(expected))
    return value == pytest.approx(expected, rel=6e-4, abs=1e-12)


def test_headline_figures_are_recomputed_from_the_inputs(hand_made_results):
    """Every number of the Markdown headline table, against the per-input rows."""
    frames, results = hand_made_results
    table = _markdown_table(rcert.results.markdown.summary_markdown(results))
    assert table[""] == list(frames)  # the header: one column per model, in order
    for i, (name, df) in enumerate(frames.items()):
        col = {label: cells[i] for label, cells in table.items()}
        assert col["data"] == f"{name}.npz"
        assert float(col["r"]) == 0.6
        assert int(col["inputs"]) == len(df)
        certified = int((df["p_lower"] > 0.5).sum())
        count, share = col["certified"].split(" ", 1)
        assert int(count) == certified
        assert float(share.strip("()%")) == pytest.approx(100 * certified / len(df), abs=0.05)
        assert int(col["abstained"]) == int((df["p_lower"] <= 0.5).sum())
        margin = df["bound_certified"].to_numpy()
        assert _close(col["mean bound_certified"], np.mean(margin))
        assert _close(col["median bound_certified"], np.median(margin))
        assert _close(col["mean bound_whitened"], df["bound_whitened"].mean())
        assert _close(col["mean latent_margin"], df["latent_margin"].mean())
        assert _close(col["median r_min"], np.median(df["r_min"]))
        found = df["margin_empirical"].to_numpy()
        assert int(col["violations"]) == int((found < margin).sum())
        assert _close(col["mean margin_empirical"], np.mean(found))
        bound = df["bound"].to_numpy()
        keep = np.isfinite(bound) & np.isfinite(found) & (bound > 0)
        assert keep.sum() >= 3
        assert _close(col["empirical vs bound: correlation"],
                      np.corrcoef(bound[keep], found[keep])[0, 1])
        broken = np.isfinite(found)
        with np.errstate(divide="ignore", invalid="ignore"):
            tightness = np.where(margin[broken] == 0, 0.0, margin[broken] / found[broken])
        assert _close(col["median tightness"], np.median(tightness))
    # The hand-made rows exercise what they should: counts that differ between models, an
    # inf mean on the second, violations on both.
    assert table["violations"] == ["2", "3"]
    assert table["mean margin_empirical"][1] == "inf"


def test_a_bad_second_model_fails_before_the_first_is_certified(ab_ckpts, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "rep"
    for second in (tmp_path / "missing.safetensors", bad):
        code, stdout, stderr = cli_output("report", "--model", ab_ckpts["a"], "--model",
                                          second, "--out", out, "--limit", "4",
                                          "--n-samples", "20", "--quiet")
        assert_one_error_line(code, stdout, stderr)
        assert not out.exists()  # nothing computed, nothing saved, no folder left


def test_a_sample_too_large_for_the_budget_fails_before_anything_is_saved(ab_ckpts, tmp_path):
    out = tmp_path / "rep"
    code, stdout, stderr = cli_output("report", "--model", ab_ckpts["a"], "--out", out,
                                      "--n-samples", 10**12, "--quiet")
    line = assert_one_error_line(code, stdout, stderr)
    assert "n_samples = 1000000000000 needs 7.28 TiB" in line
    assert not out.exists()


def test_the_files_checked_before_the_work_are_the_files_written(main_report):
    out = main_report[0]
    listed = json.loads((out / "results.json").read_text())["files"]
    texts = {name for name in listed if not name.startswith("plots/")} | {"results.json"}
    assert texts == set(report.TEXT_FILES)
