"""What a deterministic encoder's frame (``index``, ``jacobian_fro``, ``jacobian_spec``: no
certificate, SPEC section 9) becomes downstream: its summary, table, Markdown, JUnit, the
weakest-inputs gallery and the threshold verdicts degrade to what applies, never crash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rcert.errors import RcertError
from rcert.models.architectures import build_model
from rcert.results import schema
from rcert.results.gallery_html import gallery_section
from rcert.results.junit import junit_xml
from rcert.results.markdown import headline_table, summary_markdown
from rcert.results.text import to_csv, to_json, to_table
from rcert.runs import gallery, thresholds
from rcert.statistics import summary


def _frame(empirical: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({"index": np.arange(4, dtype=np.int64),
                       "jacobian_fro": [2.0, 3.0, 1.0, 4.0],
                       "jacobian_spec": [1.5, 2.5, 0.5, 3.5]})
    if empirical:
        df["margin_empirical"] = [0.9, 0.2, math.inf, 0.4]
    df.attrs["config"] = {"r": 0.5}
    return df


def test_the_summary_has_no_counts_and_says_why():
    s = summary.summarize(_frame())
    assert s["n_inputs"] == 4
    assert not {"n_certified", "n_abstained", "certified_share"} & s.keys()
    assert s["certificates"] == summary.NO_CERTIFICATE
    assert s["margins"] == {} and s["mean_margin"] == {}
    assert set(s["diagnostics"]) == {"jacobian_fro", "jacobian_spec"}
    assert s["diagnostics"]["jacobian_spec"]["median"] == pytest.approx(2.0)
    assert list(s["certified_fraction"]) == ["radius"]


def test_the_empirical_side_is_summarised_without_verdicts():
    s = summary.summarize(_frame(empirical=True))
    assert s["empirical"]["n_unbroken"] == 1
    assert "n_violations" not in s["empirical"]


@pytest.mark.parametrize("empirical", [False, True])
def test_every_renderer_takes_the_frame(empirical):
    res = schema.result(_frame(empirical), model={"path": "dae.safetensors"})
    table = to_table(res)
    assert "certificates: none: a deterministic encoder has no sigma" in table
    assert "jacobian_spec" in table
    assert "jacobian_spec" in to_csv(res) and "jacobian_spec" in to_json(res)
    results = {"dae": res}
    headline = headline_table(results)["dae"]
    assert headline["certified"] == "n/a (deterministic encoder)"
    assert headline["abstained"] == "n/a" and headline["median r_min"] == "n/a"
    assert headline["median jacobian_spec"] == pytest.approx(2.0)
    assert "| certified | n/a (deterministic encoder) |" in summary_markdown(results)
    junit = junit_xml(results)
    assert 'tests="4"' in junit and 'failures="0"' in junit and 'skipped="0"' in junit


def test_the_gallery_shows_the_weakest_inputs_without_a_certificate():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 2, 2), latent_dim=2, hidden=(4,),
                        sigma_mode="none")
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    # Without attacks: the largest ||J||_2 first; with them: the smallest empirical margin.
    plain = gallery.weakest_inputs(model, x, _frame(), k=2)
    assert [e["index"] for e in plain] == [3, 1]
    assert plain[0]["jacobian_spec"] == 3.5 and math.isnan(plain[0]["bound_certified"])
    attacked = gallery.weakest_inputs(model, x, _frame(empirical=True), k=2)
    assert [e["index"] for e in attacked] == [1, 3]
    html = "".join(gallery_section({"dae": plain}, {"dae": schema.result(_frame())}))
    assert "no certificate, ||J||_2 3.5" in html and "abstained" not in html


@pytest.mark.parametrize("name", ["min_mean_margin", "min_certified_fraction",
                                  "max_abstain_fraction"])
def test_a_threshold_on_a_frame_without_its_column_fails(name):
    res = schema.result(_frame())
    [verdict] = thresholds.verdicts({"dae": res}, {name: 0.5})
    assert not verdict["passed"] and "deterministic encoder" in verdict["message"]


def test_the_preflight_refuses_a_dae_only_for_sigma_thresholds():
    torch.manual_seed(0)
    dae = build_model("mlp", input_shape=(4,), latent_dim=2, hidden=(4,), sigma_mode="none")
    vae = build_model("mlp", input_shape=(4,), latent_dim=2, hidden=(4,))
    thresholds.refuse_deterministic({})("dae.safetensors", dae)
    check = thresholds.refuse_deterministic({"max_abstain_fraction": 0.1})
    check("vae.safetensors", vae)
    with pytest.raises(RcertError, match=r"^dae\.safetensors is a deterministic autoencoder "
                                         r".*threshold max_abstain_fraction"):
        check("dae.safetensors", dae)
