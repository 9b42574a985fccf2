"""Hostile result files read by rcert.plots.loading: one line each, before anything is drawn."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from conftest import assert_one_error_line

import rcert
from rcert import plots
from rcert.plots import loading

#: A small margin result as ``rcert margin --format json`` writes it.
RESULT = {"schema_version": 1, "kind": "margin", "config": {"m": 0.5, "r": 0.3},
          "model": {"path": "models/vae.safetensors"}, "summary": {"mean_margin": {}},
          "inputs": [{"index": i, "bound_certified": 0.1 * (i + 1), "abstain": False}
                     for i in range(3)]}


def _written(tmp_path: Path, doc, name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _edited(change) -> dict:
    doc = copy.deepcopy(RESULT)
    change(doc)
    return doc


def test_a_small_result_draws(tmp_path):
    (res,) = loading.load_results(_written(tmp_path, RESULT))
    assert plots.certified_fraction(res).axes


@pytest.mark.parametrize(("what", "message"), [
    ("fifo", r"is a named pipe \(FIFO\), not a regular file"),
    ("/dev/zero", "is a character device, not a regular file"),
    ("folder", "is a folder, not a regular file"),
])
def test_a_path_that_is_no_regular_file_is_refused_by_its_type(tmp_path, what, message):
    path = Path(what) if what.startswith("/") else tmp_path / "r.json"
    if what == "fifo":
        os.mkfifo(path)
    elif what == "folder":
        path.mkdir()
    with pytest.raises(rcert.RcertError, match=f"^result {path} {message}; write one with"):
        loading.load_results(path)


def test_deep_json_is_refused_before_parsing(tmp_path):
    path = _written(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(rcert.RcertError, match=r"nests arrays or objects more than \d+ deep"):
        loading.load_result(path)


def test_a_result_over_the_document_limit_is_refused_by_its_size(tmp_path, monkeypatch):
    path = _written(tmp_path, RESULT)
    monkeypatch.setenv("RCERT_MAX_DOCUMENT_MB", str(path.stat().st_size / 2 / 2**20))
    with pytest.raises(rcert.RcertError, match=r"more than the .* MB rcert reads"):
        loading.load_results(path)


FIELDS = [
    (lambda d: d.update(config=[1]), r": config must be an object, got \[1\]"),
    (lambda d: d.update(model="vae"), r": model must be an object, got 'vae'"),
    (lambda d: d.update(summary=3), r": summary must be an object, got 3"),
    (lambda d: d["config"].update(m="half"), r": config\.m must be a number, got 'half'"),
    (lambda d: d["config"].update(m=2), r": config\.m must be a number in \(0, 1\), got 2\.0"),
    (lambda d: d.update(inputs=[1, 2]), r": inputs must be a list of objects, one per input"),
    (lambda d: d.update(schema_version=True), " has result schema version True"),
    (lambda d: d.update(kind=["margin"]), r" has unknown kind \['margin'\]"),
]


@pytest.mark.parametrize(("change", "message"), FIELDS)
def test_mistyped_fields_are_named(tmp_path, change, message):
    path = _written(tmp_path, _edited(change))
    with pytest.raises(rcert.RcertError, match=f"^{path}{message}"):
        loading.load_results(path)


@pytest.mark.parametrize(("change", "message"), FIELDS[:5])
def test_mistyped_fields_of_a_report_model_are_named(tmp_path, change, message):
    report = {"schema_version": 1, "kind": "report", "models": {"vae": _edited(change)}}
    path = _written(tmp_path, report)
    with pytest.raises(rcert.RcertError, match=f"^{path}: models\\.vae\\.{message[2:]}"):
        loading.load_results(path)


@pytest.mark.parametrize(("value", "column"), [
    ({"a": 1}, "bound_certified"), ([0.1], "bound_certified"), ("tall", "bound_certified"),
    ("0.25", "bound_certified"),
    (10**400, "bound_certified"), ("no", "abstain"),
])
def test_columns_that_are_not_numbers_are_one_line_before_drawing(tmp_path, run, value,
                                                                   column):
    doc = _edited(lambda d: d["inputs"][1].update({column: value}))
    path = _written(tmp_path, doc)
    line = assert_one_error_line(*run("plot", "certified-fraction", path, "--out",
                                      tmp_path / "f.png"))
    assert f"column {column} holds values that are not numbers" in line
    assert not (tmp_path / "f.png").exists()


def test_a_margin_result_without_abstain_is_one_line(tmp_path, run):
    doc = _edited(lambda d: [row.pop("abstain") for row in d["inputs"]])
    line = assert_one_error_line(*run("plot", "certified-fraction", _written(tmp_path, doc),
                                      "--out", tmp_path / "f.png"))
    assert line.endswith("vae lacks abstain, which certified-fraction needs; make it with "
                         "rcert margin --format json")


def test_an_attack_result_given_to_a_margin_plot_is_named_with_its_article(tmp_path):
    doc = _edited(lambda d: d.update(kind="attack"))
    with pytest.raises(rcert.RcertError, match="needs a margin result, but vae is an attack "
                                               "result"):
        plots.certified_fraction(loading.load_results(_written(tmp_path, doc)))


@pytest.mark.parametrize("plot", ["margins", "certified-fraction", "encoder"])
def test_numbers_too_large_to_draw_are_one_line(tmp_path, run, plot):
    doc = _edited(lambda d: d["inputs"][2].update(bound_certified=-1e308, sigma_min=1.0,
                                                  sigma_mean=1.0, jacobian_fro=1.0))
    line = assert_one_error_line(*run("plot", plot, _written(tmp_path, doc), "--out",
                                      tmp_path / "f.png"))
    assert line.endswith("vae: column bound_certified holds -1e+308, too large to draw (figures "
                         "place finite values within ±1e+100); check that the result is not "
                         "damaged")
