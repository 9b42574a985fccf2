"""Plotting from a report's results.json: rcert.plots.load_results and ``rcert plot``."""

from __future__ import annotations

import json
import math

import pytest
from conftest import assert_one_error_line, cli_output, strict_json

import rcert
from rcert import plots
from rcert.plots import loading, output
from rcert.results.text import to_json


@pytest.fixture(scope="module")
def report_json(ab_ckpts, tmp_path_factory):
    """The results.json of ``rcert report`` on two tiny models, ``a`` and ``b``."""
    out = tmp_path_factory.mktemp("plot-report") / "rep"
    code, _, err = cli_output("report", "--model", ab_ckpts["a"], "--model", ab_ckpts["b"],
                              "--out", out, "--limit", "5", "--n-samples", "50", "--quiet")
    assert code == 0, err
    return out / "results.json"


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, "inf"-style strings equal to their floats."""
    def number(v):
        return float(v) if isinstance(v, str) and v in ("inf", "-inf", "nan") else v

    a, b = number(a), number(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_load_results_gives_one_result_per_model_of_a_report(report_json):
    raw = strict_json(report_json.read_text())
    loaded = loading.load_results(report_json)
    assert [res["name"] for res in loaded] == list(raw["models"]) == ["a", "b"]
    for res, (name, want) in zip(loaded, raw["models"].items(), strict=True):
        assert loading.label(res) == name
        assert res["kind"] == want["kind"] == "margin"
        assert res["config"] == want["config"]
        assert len(res["inputs"]) == len(want["inputs"]) == 5
        for got_row, want_row in zip(res["inputs"], want["inputs"], strict=True):
            assert got_row.keys() == want_row.keys()
            assert all(_same(got_row[k], want_row[k]) for k in want_row)
            assert not any(isinstance(v, str) for v in got_row.values())


def test_load_results_of_a_single_result_is_that_result(report_json, tmp_path):
    single = tmp_path / "single.json"
    single.write_text(to_json(strict_json(report_json.read_text())["models"]["b"]))
    (res,) = loading.load_results(single)
    assert res == loading.load_result(single)
    assert "name" not in res
    assert loading.label(res) == "b"  # from the checkpoint's path


def test_load_result_points_a_report_to_load_results(report_json):
    with pytest.raises(rcert.RcertError, match="load_results") as err:
        loading.load_result(report_json)
    assert "\n" not in str(err.value) and "report" in str(err.value)


def _bad_reports(report_json) -> list[tuple[object, str]]:
    good = strict_json(report_json.read_text())
    cases = []

    def edit(message, change):
        doc = json.loads(json.dumps(good))
        change(doc)
        cases.append((doc, message))

    edit("report schema version 9", lambda d: d.update(schema_version=9))
    edit("report schema version None", lambda d: d.pop("schema_version"))
    edit("without models", lambda d: d.pop("models"))
    edit("without models", lambda d: d.update(models={}))
    edit("without models", lambda d: d.update(models=[1, 2]))
    edit("models.b is not an rcert result", lambda d: d["models"].update(b=[]))
    edit("models.a has result schema version 7",
         lambda d: d["models"]["a"].update(schema_version=7))
    edit("models.a has unknown kind 'banana'", lambda d: d["models"]["a"].update(kind="banana"))
    edit(r"models\.b\.inputs must be a list", lambda d: d["models"]["b"].update(inputs={}))
    return cases


def test_load_results_refuses_malformed_reports(report_json, tmp_path):
    for i, (doc, message) in enumerate(_bad_reports(report_json)):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(rcert.RcertError, match=message) as err:
            loading.load_results(path)
        assert "\n" not in str(err.value), message


# --- rcert plot -------------------------------------------------------------------------------


def test_rcert_plot_draws_a_report(report_json, tmp_path, run):
    out = tmp_path / "x.png"
    code, stdout, err = run("plot", "margins", report_json, "--out", out)
    assert code == 0, err
    assert stdout == "" and err == ""
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    # The same figure as drawn from the report's models through the API.
    figure = plots.margin_distributions(loading.load_results(report_json))
    assert data == output.render(figure, "png")
    legends = [t.get_text() for ax in figure.axes if ax.get_legend()
               for t in ax.get_legend().get_texts()]
    assert any(t.startswith("a") for t in legends) and any(t.startswith("b") for t in legends)


def test_rcert_plot_mixes_reports_and_single_results(report_json, tmp_path, run):
    single = tmp_path / "c.json"
    doc = strict_json(report_json.read_text())["models"]["a"]
    doc["model"]["path"] = "elsewhere/c.rcert"
    single.write_text(to_json(doc))
    out = tmp_path / "mixed.svg"
    code, _, err = run("plot", "certified-fraction", report_json, single, "--out", out)
    assert code == 0, err
    figure = plots.certified_fraction([*loading.load_results(report_json),
                                       *loading.load_results(single)])
    assert out.read_bytes() == output.render(figure, "svg")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert [t.split(":")[0] for t in legend] == ["a", "b", "c"]


def test_rcert_plot_of_a_report_says_what_is_missing(report_json, tmp_path, run):
    line = assert_one_error_line(*run("plot", "curves", report_json, "--out",
                                      tmp_path / "c.png"))
    assert "curve result" in line
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 2, "kind": "report", "models": {}}))
    line = assert_one_error_line(*run("plot", "margins", bad, "--out", tmp_path / "m.png"))
    assert "report schema version 2" in line
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "m.png").exists()
