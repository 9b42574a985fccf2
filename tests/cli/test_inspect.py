"""``rcert inspect``'s text for people: every line, and the exit status that follows the checks."""

from __future__ import annotations

import json

import pytest

import rcert
from rcert.checks import MODEL_CHECKS
from rcert.results.inspection import failed, to_text

INFO = {
    "model": {"path": "vae.pt", "format": "torch.save"},
    "family": {"encoder": "gaussian", "stochastic_layers": 2,
               "input_feeds_upper_layers": False},
    "input_shape": [3, 32, 32],
    "latent_dim": 16,
    "data_range": None,
    "sigma_convention": "logvar",
    "likelihood": None,
    "probe": "8 uniform random inputs",
    "checks": [{"code": "sigma", "passed": True, "message": "sigma in [0.1, 1]"},
               {"code": "decoder-range", "passed": False, "message": "logits"},
               {"code": "no-data-range", "passed": False, "message": "none stated"}],
}


def test_to_text_prints_every_field_and_check():
    assert to_text(INFO).splitlines() == [
        "model             vae.pt",
        "format            torch.save",
        "library           -",
        "encoder           gaussian, 2 stochastic layer(s)",
        "input shape       3x32x32",
        "latent size       16",
        "data range        none stated",
        "sigma convention  logvar",
        "likelihood        unknown",
        "probe             8 uniform random inputs",
        "checks:",
        "  PASS sigma: sigma in [0.1, 1]",
        "  FAIL decoder-range: logits",
        "  FAIL no-data-range: none stated",
        "1 passed, 2 failed; certifying needs a fix or --allow decoder-range --allow "
        "no-data-range",
    ]
    assert failed(INFO) == ["decoder-range", "no-data-range"]


@pytest.mark.parametrize(("data_range", "shown"), [([0.0, 1.0], "[0, 1]"),
                                                   ([-1.0, 1.0], "[-1, 1]"),
                                                   ([0.5, 2.25], "[0.5, 2.25]")])
def test_to_text_data_range(data_range, shown):
    lines = to_text({**INFO, "data_range": data_range}).splitlines()
    assert f"data range        {shown}" in lines


def test_to_text_when_every_check_passes():
    checks = [{**c, "passed": True} for c in INFO["checks"]]
    info = {**INFO, "checks": checks, "model": {**INFO["model"], "library": "pythae"}}
    lines = to_text(info).splitlines()
    assert lines[2] == "library           pythae"
    assert lines[-1] == "3 passed, 0 failed"
    assert failed(info) == []


def test_inspect_table_says_what_the_json_says(tmp_path, run):
    path = tmp_path / "m.safetensors"
    model = rcert.build_model("mlp", input_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    rcert.save(model, path, data="digits:train", recommended_r=0.5)
    code, table, err = run("inspect", path)
    assert code == 0, err
    code, text, err = run("inspect", path, "--format", "json")
    assert code == 0, err
    info = json.loads(text)
    lines = table.splitlines()
    assert lines[:11] == [
        f"model             {path}",
        "format            rcert",
        "library           -",
        "encoder           gaussian, 1 stochastic layer(s)",
        "input shape       1x8x8",
        "latent size       4",
        "data range        [0, 1]",
        "sigma convention  rcert learned (softplus head)",
        "likelihood        bernoulli",
        "probe             the first 8 inputs of digits:test",
        "checks:",
    ]
    assert [c["code"] for c in info["checks"]] == list(MODEL_CHECKS)
    assert lines[11:-1] == [f"  PASS {c['code']}: {c['message']}" for c in info["checks"]]
    assert lines[-1] == f"{len(MODEL_CHECKS)} passed, 0 failed"
