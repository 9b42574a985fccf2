"""``rcert check``: TOML thresholds (``rcert.check``) and their exit codes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from conftest import Kink, assert_one_error_line, cli_output, kinked_vae, strict_json
from scipy import stats

import rcert
import rcert.runs.loading
from rcert.runs import report
from rcert.runs import thresholds as check

# Settings where some inputs abstain (3 of 12 for model a), so fractions are not trivial.
R, LIMIT, N_SAMPLES = 0.3, 12, 100


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    return repr(v)


def _toml(models: list[dict], thresholds: dict | None = None) -> str:
    lines = []
    for model in models:
        lines.append("[[model]]")
        lines += [f"{k} = {_value(v)}" for k, v in model.items()]
    if thresholds is not None:
        lines.append("[thresholds]")
        lines += [f"{k} = {_value(v)}" for k, v in thresholds.items()]
    return "\n".join(lines) + "\n"


def _model(path: Path, **extra) -> dict:
    return {"path": path, "r": R, "limit": LIMIT, "n_samples": N_SAMPLES, **extra}


def _write(folder: Path, text: str, name: str = "rcert.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def _verdicts(out: Path) -> dict[str, dict]:
    doc = strict_json((out / "results.json").read_text())
    return {v["threshold"]: v for v in doc["verdicts"]}


def _inputs(out: Path, model: str = "a") -> pd.DataFrame:
    df = pd.read_csv(out / "inputs.csv")
    return df[df.model == model]


def _report(means: dict[str, float | str]) -> dict:
    """The smallest results.json of a report whose models have these mean certified margins."""
    models = {name: {"schema_version": 1, "kind": "margin", "config": {}, "model": {},
                     "summary": {"mean_margin": {"bound_certified": mean}}, "inputs": []}
              for name, mean in means.items()}
    return {"schema_version": 1, "kind": "report", "models": models, "verdicts": [],
            "files": {}}


# --- load_config ------------------------------------------------------------------------------


def test_load_config_reads_models_and_thresholds(tmp_path):
    text = """
[[model]]
path = "models/a.rcert"
r = 1
data = "digits:test"
limit = 5
n_samples = 50
alpha = 0.01
m = 0.5
seed = 3
empirical = true

[[model]]
path = "/abs/b.rcert"
empirical = true

[thresholds]
min_mean_margin = 0.04
min_certified_fraction = 0.8
at_radius = 0
max_violations = 0
max_abstain_fraction = 1
baseline = "prev/results.json"
max_regression = 0.1
"""
    config = _write(tmp_path / "cfg", text)
    # The baseline is read when the config is loaded, so a bad one fails before any run.
    (tmp_path / "cfg" / "prev").mkdir()
    (tmp_path / "cfg" / "prev" / "results.json").write_text(json.dumps(_report({"a": 0.5})))
    parsed = check.load_config(config)
    entries, thresholds = parsed.models, parsed.thresholds
    assert entries == [
        report.ModelEntry(str(tmp_path / "cfg" / "models" / "a.rcert"),
                          data="digits:test", limit=5, empirical=True,
                          certify={"r": 1.0, "n_samples": 50, "alpha": 0.01, "m": 0.5,
                                   "seed": 3}),
        report.ModelEntry("/abs/b.rcert", empirical=True),
    ]
    assert isinstance(entries[0].certify["r"], float)  # an integer where a float is asked
    assert parsed.attack == rcert.settings.EMPIRICAL_ATTACK
    assert thresholds == {"min_mean_margin": 0.04, "min_certified_fraction": 0.8,
                          "at_radius": 0.0, "max_violations": 0, "max_abstain_fraction": 1.0,
                          "baseline": str(tmp_path / "cfg" / "prev" / "results.json"),
                          "max_regression": 0.1}
    assert isinstance(thresholds["max_abstain_fraction"], float)


def test_load_config_without_thresholds(tmp_path):
    parsed = check.load_config(_write(tmp_path, '[[model]]\npath = "a.rcert"\n'))
    assert parsed.models == [report.ModelEntry(str(tmp_path / "a.rcert"))]
    assert parsed.thresholds == {}


_PATH = '[[model]]\npath = "a.rcert"\n'
_EMPIRICAL = '[[model]]\npath = "a.rcert"\nempirical = true\n'

BAD_CONFIGS = [
    ('[[model]\npath = "a.rcert"\n', "not valid TOML"),
    ("", "no [[model]]"),
    ("[thresholds]\nmin_mean_margin = 0.1\n", "no [[model]]"),
    ('model = "a.rcert"\n', "no [[model]]"),
    ("[[model]]\nr = 0.5\n", "path is required"),
    (_PATH + "radius = 1\n", "unknown key 'radius'"),
    (_PATH + "[thresholds]\nmin_margin = 1\n", "unknown key 'min_margin'"),
    (_PATH + "[threshold]\nmin_mean_margin = 1\n", "unknown table 'threshold'"),
    (_PATH + 'r = "abc"\n', "r must be a number"),
    (_PATH + "r = true\n", "r must be a number"),
    (_PATH + "limit = 1.5\n", "limit must be an integer"),
    (_PATH + "limit = true\n", "limit must be an integer"),
    (_PATH + "limit = 0\n", "limit must be at least 1"),
    (_PATH + "empirical = 1\n", "empirical must be true or false"),
    ("[[model]]\npath = 3\n", "path must be a string"),
    (_PATH + '[thresholds]\nmin_mean_margin = "0.1"\n', "min_mean_margin must be a number"),
    (_PATH + "[thresholds]\nbaseline = 1\n", "baseline must be a string"),
    (_PATH + "[thresholds]\nmin_certified_fraction = 1.5\n", "must lie in [0, 1]"),
    (_PATH + "[thresholds]\nmin_certified_fraction = -0.1\n", "must lie in [0, 1]"),
    (_PATH + "[thresholds]\nmax_abstain_fraction = 2\n", "must lie in [0, 1]"),
    (_PATH + "[thresholds]\nmax_abstain_fraction = nan\n", "must lie in [0, 1]"),
    (_PATH + "[thresholds]\nmax_regression = 0.1\n", "needs a baseline"),
    (_PATH + "[thresholds]\nmax_violations = 0\n", "needs empirical"),
    (_EMPIRICAL + _PATH + "[thresholds]\nmax_violations = 0\n", "needs empirical"),
    (_PATH + "empirical = false\n[thresholds]\nmax_violations = 0\n", "needs empirical"),
    (_EMPIRICAL + "[thresholds]\nmax_violations = -1\n", "max_violations must be >= 0"),
    (_PATH + "[thresholds]\nat_radius = -0.5\n", "at_radius must be >= 0"),
    (_PATH + "[thresholds]\nmin_mean_margin = -1\n", "min_mean_margin must be >= 0"),
    (_PATH + '[thresholds]\nbaseline = "b.json"\nmax_regression = -0.1\n',
     "max_regression must be >= 0"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_CONFIGS)
def test_load_config_refuses(tmp_path, text, needle):
    config = _write(tmp_path, text)
    with pytest.raises(rcert.RcertError) as info:
        check.load_config(config)
    assert needle in str(info.value)
    assert str(config) in str(info.value)  # says which file


@pytest.mark.parametrize(("text", "needle"), BAD_CONFIGS[::3])
def test_check_refuses_a_bad_config_in_one_line(tmp_path, run, text, needle):
    config = _write(tmp_path, text)
    line = assert_one_error_line(*run("check", config, "--out", tmp_path / "rep", "--quiet"))
    assert needle in line
    assert not (tmp_path / "rep").exists()  # refused before any work


def test_load_config_missing_file(tmp_path, run):
    with pytest.raises(rcert.RcertError, match=r"config .*nope\.toml does not exist; pass the "
                                               r"path of an rcert check config \(see docs"):
        check.load_config(tmp_path / "nope.toml")
    line = assert_one_error_line(*run("check", tmp_path / "nope.toml", "--quiet"))
    assert "nope.toml" in line


def test_load_config_unreadable_file(tmp_path):
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(rcert.RcertError, match=r"bin\.toml"):
        check.load_config(tmp_path / "bin.toml")


@pytest.mark.parametrize("text", [
    "thresholds = 5\n" + _PATH,
    _PATH + "[[thresholds]]\nmin_mean_margin = 0.1\n",
    'model = [{path = "a.rcert"}, 3]\n',
], ids=["thresholds = 5", "[[thresholds]]", "model = [table, 3]"])
def test_load_config_refuses_non_tables(tmp_path, run, text):
    config = _write(tmp_path, text)
    line = assert_one_error_line(*run("check", config, "--quiet"))
    assert str(config) in line


@pytest.mark.parametrize("key", ["at_radius", "min_mean_margin", "max_regression"])
def test_load_config_refuses_nan_limits(tmp_path, key):
    text = _PATH + f'[thresholds]\nbaseline = "b.json"\n{key} = nan\n'
    with pytest.raises(rcert.RcertError, match=key):
        check.load_config(_write(tmp_path, text))


# --- verdicts on hand-made results ------------------------------------------------------------


def _result(margins, abstain, violations=None) -> dict:
    rows = [{"index": i, "bound_certified": m, "abstain": a}
            for i, (m, a) in enumerate(zip(margins, abstain, strict=True))]
    summary = {}
    if violations is not None:
        summary["empirical"] = {"n_violations": len(violations), "violations": violations}
    return {"summary": summary, "inputs": rows}


def test_verdict_values_follow_their_definitions():
    res = {"m": _result([0.0, 0.2, 0.5, "inf", 0.2], [True, False, False, False, False],
                        violations=[2])}
    thresholds = {"min_mean_margin": 0.1, "min_certified_fraction": 0.5, "at_radius": 0.2,
                  "max_abstain_fraction": 0.2, "max_violations": 0}
    got = {v["threshold"]: v for v in check.verdicts(res, thresholds)}
    assert set(got) == {"min_mean_margin", "min_certified_fraction at radius 0.2",
                        "max_abstain_fraction", "max_violations"}
    assert got["min_mean_margin"]["value"] == math.inf  # "inf" as read from JSON
    assert got["min_mean_margin"]["passed"]
    # A margin equal to the radius counts; an abstention never does.
    frac = got["min_certified_fraction at radius 0.2"]
    assert (frac["value"], frac["limit"], frac["passed"]) == (0.8, 0.5, True)
    assert got["max_abstain_fraction"]["value"] == 0.2 and got["max_abstain_fraction"]["passed"]
    assert (got["max_violations"]["value"], got["max_violations"]["passed"]) == (1, False)
    assert "[2]" in got["max_violations"]["message"]
    for v in got.values():
        assert set(v) == {"model", "threshold", "value", "limit", "passed", "message"}
        assert v["model"] == "m"
        assert isinstance(v["passed"], bool)


@pytest.mark.parametrize("radius", [0.0, 0.1, 0.25, 0.35])
def test_an_abstention_with_a_margin_does_not_count_as_certified(radius):
    # Inputs 0 and 1 abstain yet carry a positive bound_certified (e.g. rows from another
    # tool, or a bound column filled before the abstention rule): they must never count,
    # even where their margin reaches the radius.
    margins = np.array([0.4, 0.3, 0.2, 0.5, 0.0])
    abstain = np.array([True, True, False, False, True])
    res = {"m": _result(margins.tolist(), abstain.tolist())}
    (v,) = check.verdicts(res, {"min_certified_fraction": 0.5, "at_radius": radius})
    expected = np.mean(~abstain & (margins >= radius) & (margins > 0))
    assert v["value"] == pytest.approx(expected)
    assert v["passed"] == (expected >= 0.5)
    # Counting the abstentions would give a different share at every radius here.
    assert expected < np.mean((margins >= radius) & (margins > 0))


def test_an_abstention_with_margin_zero_does_not_count_at_radius_zero():
    # At radius 0, where every margin qualifies, abstentions stay out.
    res = {"m": _result([0.0, 0.0, 0.3], [True, True, False])}
    (v,) = check.verdicts(res, {"min_certified_fraction": 0.5})
    assert v["threshold"] == "min_certified_fraction at radius 0"
    assert v["value"] == pytest.approx(1 / 3) and not v["passed"]


def test_no_thresholds_no_verdicts():
    assert check.verdicts({"m": _result([0.1], [False])}, {}) == []


# --- rcert check through the CLI --------------------------------------------------------------


PASSING = {"min_mean_margin": 0.0, "min_certified_fraction": 0.0, "at_radius": 0.0,
           "max_abstain_fraction": 1.0}


@pytest.fixture(scope="module")
def passing(ab_ckpts, tmp_path_factory):
    """``rcert check`` with thresholds that hold: (report folder, code, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("passing")
    config = _write(folder, _toml([_model(ab_ckpts["a"])], PASSING))
    out = folder / "rep"
    return (out, *cli_output("check", config, "--out", out, "--quiet"))


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_check_passes(passing):
    out, code, stdout, stderr = passing
    assert code == 0, stderr
    assert stderr == ""
    lines = stdout.splitlines()
    assert lines == ["PASS a min_mean_margin", "PASS a min_certified_fraction at radius 0",
                     "PASS a max_abstain_fraction", f"3 passed, 0 failed; report in {out}"]
    assert report.is_complete(out)
    summary = (out / "summary.md").read_text()
    assert "## Thresholds: 3 passed, 0 failed" in summary
    # The verdict table's row carries the share of abstaining rows of inputs.csv.
    share = float(_inputs(out)["abstain"].mean())
    assert 0 < share < 1
    rows = [_cells(line) for line in summary.splitlines() if line.startswith("| PASS | a |")]
    by_name = {row[2]: row for row in rows}
    assert set(by_name) == {"min_mean_margin", "min_certified_fraction at radius 0",
                            "max_abstain_fraction"}
    mark, model, _, value, limit = by_name["max_abstain_fraction"]
    assert (mark, model) == ("PASS", "a")
    assert float(value) == pytest.approx(share, rel=5e-4)  # printed to 4 significant figures
    assert float(limit) == PASSING["max_abstain_fraction"]
    suites = {s.get("name"): s for s in ElementTree.parse(out / "junit.xml").getroot()}
    assert suites["thresholds"].get("tests") == "3"
    assert suites["thresholds"].get("failures") == "0"


def test_check_fraction_values_come_from_the_inputs(passing):
    out = passing[0]
    df = _inputs(out)
    assert len(df) == LIMIT
    assert 0 < df["abstain"].sum() < LIMIT
    verdicts = _verdicts(out)
    certified = float(np.mean(~df["abstain"] & (df["bound_certified"] >= 0.0)))
    assert verdicts["min_certified_fraction at radius 0"]["value"] == certified
    assert certified < 1  # the abstentions were left out
    assert verdicts["max_abstain_fraction"]["value"] == float(df["abstain"].mean())
    assert verdicts["min_mean_margin"]["value"] == pytest.approx(
        df["bound_certified"].mean(), rel=1e-12)
    assert all(v["passed"] for v in verdicts.values())


def test_check_fails_with_exit_1_and_still_writes_the_report(ab_ckpts, tmp_path, run):
    thresholds = {"min_mean_margin": 1e9, "min_certified_fraction": 0.5, "at_radius": 0.05}
    config = _write(tmp_path, _toml([_model(ab_ckpts["a"])], thresholds))
    out = tmp_path / "rep"
    code, stdout, err = run("check", config, "--out", out, "--quiet")
    assert code == 1, err
    assert report.is_complete(out)

    df = _inputs(out)
    share = float(np.mean(~df["abstain"] & (df["bound_certified"] >= 0.05)))
    verdicts = _verdicts(out)
    frac = verdicts["min_certified_fraction at radius 0.05"]
    assert frac["value"] == share
    assert frac["passed"] == (share >= 0.5)
    assert not verdicts["min_mean_margin"]["passed"]
    assert verdicts["min_mean_margin"]["limit"] == 1e9

    lines = stdout.splitlines()
    assert lines[0].startswith("FAIL a min_mean_margin: mean bound_certified ")
    assert lines[0].endswith("< 1e+09")
    n_failed = 1 + (not frac["passed"])
    assert lines[-1] == f"{2 - n_failed} passed, {n_failed} failed; report in {out}"

    root = ElementTree.parse(out / "junit.xml").getroot()
    suite = root.find("testsuite[@name='thresholds']")
    assert suite.get("failures") == str(n_failed)
    failed = [c for c in suite if c.find("failure") is not None]
    assert failed[0].get("name") == "min_mean_margin"
    assert "< 1e+09" in failed[0].find("failure").get("message")
    assert root.find("testsuite[@name='a']").get("failures") == "0"

    summary = (out / "summary.md").read_text()
    assert f"## Thresholds: {2 - n_failed} passed, {n_failed} failed" in summary
    assert "| FAIL | a | min_mean_margin |" in summary
    assert "| value | limit |" in summary
    html = (out / "report.html").read_text()
    assert '<td class="fail">FAIL</td><td>a</td><td>min_mean_margin</td>' in html


# --- baseline ---------------------------------------------------------------------------------


def _baseline_mean(passing, model: str = "a") -> float:
    doc = strict_json((passing[0] / "results.json").read_text())
    return doc["models"][model]["summary"]["mean_margin"]["bound_certified"]


def test_baseline_with_the_same_numbers_passes(passing, ab_ckpts, tmp_path, run):
    thresholds = {"baseline": passing[0] / "results.json", "max_regression": 0.0}
    config = _write(tmp_path, _toml([_model(ab_ckpts["a"])], thresholds))
    code, stdout, err = run("check", config, "--out", tmp_path / "rep", "--quiet")
    assert code == 0, err
    assert stdout.splitlines()[0] == "PASS a max_regression"
    v = _verdicts(tmp_path / "rep")["max_regression"]
    old = _baseline_mean(passing)
    assert v["value"] == v["limit"] == old
    assert v["passed"]


def test_baseline_regression_limit(passing, ab_ckpts, tmp_path, run):
    # Another seed changes the numbers; the limit is old * (1 - max_regression).
    thresholds = {"baseline": passing[0] / "results.json", "max_regression": 1e-9}
    config = _write(tmp_path, _toml([_model(ab_ckpts["a"], seed=1)], thresholds))
    code, stdout, err = run("check", config, "--out", tmp_path / "rep", "--quiet")
    v = _verdicts(tmp_path / "rep")["max_regression"]
    old = _baseline_mean(passing)
    new = _inputs(tmp_path / "rep")["bound_certified"].mean()
    assert v["value"] == pytest.approx(new, rel=1e-12)
    assert v["value"] != old
    assert v["limit"] == old * (1 - 1e-9)
    assert v["passed"] == (v["value"] >= v["limit"])
    assert code == (0 if v["passed"] else 1), err
    if not v["passed"]:
        assert stdout.startswith("FAIL a max_regression: mean bound_certified fell from ")


def test_baseline_relative_to_the_config(passing, ab_ckpts, run):
    # baseline = "rep/results.json" next to the config: the passing run's own report.
    folder = passing[0].parent
    config = _write(folder, _toml([_model(ab_ckpts["a"])], {"baseline": "rep/results.json"}),
                    name="relative.toml")
    out = folder / "rep-relative"
    code, _, err = run("check", config, "--out", out, "--quiet")
    assert code == 0, err
    assert _verdicts(out)["max_regression"]["limit"] == _baseline_mean(passing)


def test_baseline_without_the_model_fails(passing, ab_ckpts, tmp_path, run):
    thresholds = {"baseline": passing[0] / "results.json", "max_regression": 0.5}
    config = _write(tmp_path, _toml([_model(ab_ckpts["b"])], thresholds))
    code, stdout, err = run("check", config, "--out", tmp_path / "rep", "--quiet")
    assert code == 1, err
    assert stdout.splitlines()[0].startswith("FAIL b max_regression: ")
    assert "baseline" in stdout.splitlines()[0]
    v = _verdicts(tmp_path / "rep")["max_regression"]
    assert not v["passed"] and "baseline" in v["message"]
    assert v["limit"] == "nan"  # NaN, spelled as strict JSON
    assert report.is_complete(tmp_path / "rep")


@pytest.mark.parametrize("which", ["missing", "not a results.json"])
def test_a_bad_baseline_is_an_error(passing, ab_ckpts, tmp_path, run, which):
    baseline = (tmp_path / "missing.json" if which == "missing"
                else passing[0] / "inputs.csv")
    config = _write(tmp_path, _toml([_model(ab_ckpts["a"])], {"baseline": baseline}))
    line = assert_one_error_line(*run("check", config, "--out", tmp_path / "rep", "--quiet"))
    assert "baseline" in line and str(baseline) in line
    assert not report.is_complete(tmp_path / "rep")


_FIX = "; point baseline at the results.json of an earlier report$"


def _edited_report(change) -> str:
    doc = _report({"vae": 0.5})
    change(doc)
    return json.dumps(doc)


def _vae_summary(doc: dict) -> dict:
    return doc["models"]["vae"]["summary"]


BAD_BASELINES = {
    "a list": ("[1, 2]", r" is not an rcert report \(a JSON object with kind 'report'\)"),
    "no summary": (_edited_report(lambda d: d["models"]["vae"].pop("summary")),
                   r": models\.vae\.summary\.mean_margin is missing"),
    "a string for a number": (
        _edited_report(lambda d: _vae_summary(d)["mean_margin"].update(bound_certified="x")),
        r": models\.vae\.summary\.mean_margin\.bound_certified must be a number, got 'x'"),
    "a list for an object": (_edited_report(lambda d: _vae_summary(d).update(mean_margin=[1])),
                             r": models\.vae\.summary\.mean_margin must be an object, got \[1\]"),
    "no inputs": (_edited_report(lambda d: d["models"]["vae"].pop("inputs")),
                  r": models\.vae is not an rcert result"),
    "100k deep": ("[" * 100_000 + "]" * 100_000, r" nests arrays or objects more than \d+ deep"),
    "schema_version 99": (_edited_report(lambda d: d.update(schema_version=99)),
                          r" has report schema version 99, but this rcert reads version 1"),
    "kind margin": (_edited_report(lambda d: d.update(kind="margin")),
                    r" has kind 'margin', not 'report': it is not a report's results\.json"),
    "no models": (_edited_report(lambda d: d.update(models={})), r" is a report without models"),
}


@pytest.mark.parametrize("case", list(BAD_BASELINES))
def test_a_bad_baseline_is_refused_naming_the_file_and_field(tmp_path, case):
    text, message = BAD_BASELINES[case]
    (tmp_path / "b.json").write_text(text)
    config = _write(tmp_path, _PATH + '[thresholds]\nbaseline = "b.json"\n')
    with pytest.raises(rcert.RcertError, match=f"^baseline {tmp_path / 'b.json'}{message}.*{_FIX}"):
        check.load_config(config)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_baseline_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, kind):
    baseline = tmp_path / "b.json" if kind == "fifo" else Path(kind)
    if kind == "fifo":
        os.mkfifo(baseline)
    config = _write(tmp_path, _PATH + f'[thresholds]\nbaseline = "{baseline}"\n')
    what = r"a named pipe \(FIFO\)" if kind == "fifo" else "a character device"
    with pytest.raises(rcert.RcertError, match=f"^baseline {baseline} is {what}, not a regular "
                                               f"file{_FIX}"):
        check.load_config(config)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_config_that_is_no_regular_file_is_one_line(tmp_path, run, kind):
    config = tmp_path / "rcert.toml" if kind == "fifo" else Path(kind)
    if kind == "fifo":
        os.mkfifo(config)
    line = assert_one_error_line(*run("check", config, "--out", tmp_path / "rep", "--quiet"))
    assert line.startswith(f"rcert: error: config {config} is ")
    assert line.endswith("not a regular file; pass the path of an rcert check config "
                         "(see docs/ci.md)")


def test_non_finite_baseline_numbers_as_rcert_writes_them_are_read(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(_report({"m": "nan", "n": "inf"})))
    got = {(v["model"], v["threshold"]): v for v in check.verdicts(
        {"m": _result([0.1], [False]), "n": _result([0.2], [False])},
        {"baseline": str(tmp_path / "b.json"), "max_regression": 0.5})}
    assert math.isnan(got["m", "max_regression"]["limit"])
    assert not got["m", "max_regression"]["passed"]  # nothing compares with NaN
    assert got["n", "max_regression"]["limit"] == math.inf


def test_check_refuses_a_bad_baseline_before_loading_any_model(tmp_path, run, monkeypatch):
    loaded = []
    monkeypatch.setattr(rcert.runs.loading, "load_with_data",
                        lambda *args, **kwargs: loaded.append(args))
    (tmp_path / "b.json").write_text(BAD_BASELINES["a string for a number"][0])
    config = _write(tmp_path, _toml([{"path": "a.rcert"}], {"baseline": "b.json"}))
    line = assert_one_error_line(*run("check", config, "--out", tmp_path / "rep", "--quiet"))
    assert "models.vae.summary.mean_margin.bound_certified must be a number" in line
    assert loaded == [] and not (tmp_path / "rep").exists()


# --- empirical --------------------------------------------------------------------------------


def test_max_violations_with_empirical(ab_ckpts, tmp_path, run):
    # Whatever the attack finds on an untrained model, the verdict is the count of the
    # violation column, and the exit code follows the verdict.
    model = {"path": ab_ckpts["a"], "limit": 3, "n_samples": 50, "empirical": True}
    config = _write(tmp_path, _toml([model], {"max_violations": 0}))
    out = tmp_path / "rep"
    code, stdout, err = run("check", config, "--out", out, "--quiet")
    v = _verdicts(out)["max_violations"]
    doc = strict_json((out / "results.json").read_text())
    n_violations = doc["models"]["a"]["summary"]["empirical"]["n_violations"]
    df = _inputs(out)
    assert len(df) == 3
    assert v["value"] == n_violations == int(df["violation"].sum())
    assert v["limit"] == 0
    assert v["passed"] == (n_violations == 0)
    assert code == (0 if v["passed"] else 1), err
    assert stdout.splitlines()[0].startswith(("PASS a max_violations", "FAIL a max_violations"))
    root = ElementTree.parse(out / "junit.xml").getroot()
    assert root.find("testsuite[@name='a']").get("failures") == str(n_violations)
    assert (out / "plots" / f"{report.EMPIRICAL_FIGURE}.png").is_file()
    assert report.is_complete(out)


# Inputs in the flat part of the kinked model, at distances 0.04, 0.05 and 0.02 from its kink.
KINKED_INPUTS = np.array([[0.49], [0.5], [0.53]], dtype=np.float32)


@pytest.fixture(scope="module")
def kinked_check(tmp_path_factory):
    """``rcert check`` with ``max_violations = 0`` on a model whose first-order certificate
    is wrong by a factor of about 40 (``kinked_vae``): (report folder, code, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("kinked")
    data = folder / "inputs.npz"
    np.savez(data, x=KINKED_INPUTS)
    rcert.save(kinked_vae(), folder / "kinked.rcert", data=str(data), recommended_r=Kink.r)
    entry = {"path": "kinked.rcert", "data": str(data), "r": Kink.r, "n_samples": 500,
             "empirical": True}
    config = _write(folder, _toml([entry], {"max_violations": 0}))
    out = folder / "rep"
    return (out, *cli_output("check", config, "--out", out, "--quiet"))


def test_max_violations_fails_where_an_attack_beats_a_first_order_bound(kinked_check):
    out, code, stdout, stderr = kinked_check
    assert code == 1, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("FAIL kinked max_violations: ")
    assert "3" in lines[0].removeprefix("FAIL kinked max_violations: ").split()  # the count
    assert lines[-1] == f"0 passed, 1 failed; report in {out}"
    v = _verdicts(out)["max_violations"]
    assert (v["value"], v["limit"], v["passed"]) == (3, 0, False)

    df = _inputs(out, "kinked").sort_values("index")
    assert len(df) == len(KINKED_INPUTS)
    assert df["violation"].tolist() == [True] * len(KINKED_INPUTS)
    # The certificate sees only the slope at x: Theorem 1 with p_lower, about 1.8 here.
    expected = Kink.sigma * stats.norm.ppf(df["p_lower"]) / Kink.slope
    np.testing.assert_allclose(df["bound_certified"], expected, rtol=1e-6)
    assert (df["bound_certified"] > 1.0).all()
    # The true margin is the distance to the nearer side of the kink (+ O(1/gain)); the
    # attack's margin is an upper bound on it, found by bisection to 2% on whichever side
    # the attack went, so it lies between the two distances (up to 2%).
    offset = np.abs(KINKED_INPUTS.ravel() - Kink.centre)
    found = df["margin_empirical"].to_numpy()
    assert (found >= Kink.half_width - offset - 1e-6).all()
    assert (found <= 1.05 * (Kink.half_width + offset) + 1e-4).all()
    assert (found < df["bound_certified"].to_numpy() / 20).all()
    # At the attack's perturbation not one fresh draw was within r: the violation is not a
    # Monte Carlo accident and survives any multiplicity correction over three inputs.
    assert (df["p_check"] == 0).all()
    assert (df["p_check_upper"] < 0.05).all()

    root = ElementTree.parse(out / "junit.xml").getroot()
    assert root.find("testsuite[@name='kinked']").get("failures") == "3"
    assert report.is_complete(out)


# --- the default config -----------------------------------------------------------------------


def test_default_config_in_the_working_folder(ab_ckpts, tmp_path, run, monkeypatch):
    _write(tmp_path, _toml([_model(ab_ckpts["a"], limit=5, n_samples=50)],
                           {"min_mean_margin": 0.0}))
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run("check", "--quiet")
    assert code == 0, err
    assert stdout.splitlines() == ["PASS a min_mean_margin",
                                   "1 passed, 0 failed; report in rcert-report"]
    assert report.is_complete(tmp_path / "rcert-report")
    assert len(_inputs(tmp_path / "rcert-report")) == 5


def test_no_default_config(tmp_path, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*run("check", "--quiet"))
    assert "rcert.toml" in line
    assert not (tmp_path / "rcert-report").exists()


def test_check_with_a_missing_model_file(tmp_path, run):
    config = _write(tmp_path, _toml([{"path": "missing.rcert"}], {"min_mean_margin": 0.0}))
    line = assert_one_error_line(*run("check", config, "--out", tmp_path / "rep", "--quiet"))
    assert "missing.rcert" in line


def test_failure_messages_print_the_judged_values():
    res = {"m": _result([0.0, 0.05, 0.3, 0.4], [True, False, False, False])}
    got = {v["threshold"]: v for v in check.verdicts(
        res, {"min_certified_fraction": 0.9, "at_radius": 0.1, "max_abstain_fraction": 0.1})}
    fraction = got["min_certified_fraction at radius 0.1"]
    assert fraction["value"] == 0.5 and not fraction["passed"]
    assert fraction["message"] == "50.0% certified at radius 0.1, below 90.0%"
    abstain = got["max_abstain_fraction"]
    assert abstain["value"] == 0.25 and not abstain["passed"]
    assert abstain["message"] == "25.0% of inputs abstained, above 10.0%"


def test_failure_messages_of_the_margin_violation_and_regression_thresholds(tmp_path):
    baseline = tmp_path / "results.json"
    baseline.write_text(json.dumps(_report({"m": 0.5})))
    res = {"m": _result([0.1, 0.2, 0.3], [False] * 3, violations=[0, 2]),
           "new": _result([0.2], [False], violations=[])}
    thresholds = {"min_mean_margin": 0.25, "max_violations": 1, "baseline": str(baseline),
                  "max_regression": 0.1}
    got = {(v["model"], v["threshold"]): v for v in check.verdicts(res, thresholds)}
    margin = got["m", "min_mean_margin"]
    assert (margin["value"], margin["limit"], margin["passed"]) == (pytest.approx(0.2), 0.25,
                                                                     False)
    assert margin["message"] == "mean bound_certified 0.2 < 0.25"
    violations = got["m", "max_violations"]
    assert (violations["value"], violations["limit"], violations["passed"]) == (2, 1, False)
    assert violations["message"] == "2 inputs where an attack beat the certificate: [0, 2]"
    regression = got["m", "max_regression"]
    assert regression["limit"] == pytest.approx(0.45) and not regression["passed"]
    assert regression["message"] == "mean bound_certified fell from 0.5 to 0.2, more than 10%"
    missing = got["new", "max_regression"]
    assert math.isnan(missing["limit"]) and not missing["passed"]
    assert missing["message"] == "model new is not in the baseline; regenerate the baseline"


def test_verdict_lines_and_the_failed_verdicts():
    verdicts = [
        {"model": "a", "threshold": "min_mean_margin", "value": 0.5, "limit": 0.1,
         "passed": True, "message": "not shown"},
        {"model": "b", "threshold": "max_violations", "value": 2, "limit": 0,
         "passed": False, "message": "2 inputs where an attack beat the certificate: [1, 4]"},
    ]
    assert check.verdict_lines(verdicts, "rep") == (
        "PASS a min_mean_margin\n"
        "FAIL b max_violations: 2 inputs where an attack beat the certificate: [1, 4]\n"
        "1 passed, 1 failed; report in rep\n")
    assert check.failed(verdicts) == [verdicts[1]]
    assert check.failed(verdicts[:1]) == []
    assert check.verdict_lines([], "rep") == "0 passed, 0 failed; report in rep\n"
