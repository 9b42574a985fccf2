"""Figures of rcert.plots, drawn from real results of the shipped models read back from JSON."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.figure import Figure

import rcert
from rcert import plots
from rcert.evaluation.posteriors import posterior_table
from rcert.plots import loading, output, style
from rcert.results.schema import result
from rcert.results.text import to_json
from rcert.statistics.summary import certified_fraction, fit_line

MODELS = ("models/vae-digits.safetensors", "models/beta10-digits.safetensors")
RADII = [0.0, 0.2, 0.4, 0.8]
BUDGETS = [0.5, 1.0]


def _round_trip(tmp_path, name, df, kind, path):
    """Wrap ``df`` as a result, write it as JSON and read it back with load_result."""
    file = tmp_path / f"{name}.json"
    file.write_text(to_json(result(df, kind=kind, model={"path": path})), encoding="utf-8")
    return loading.load_result(file)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Margin (with and without --empirical), attack and curve results of both models."""
    tmp = tmp_path_factory.mktemp("results")
    x = rcert.load_data("digits:test").subset(6).x
    out = {}
    for path in MODELS:
        model = rcert.load(path)
        r = model.meta["recommended_r"]
        name = Path(path).stem
        # A light attack, and no audit: it would attack again at standard strength.
        emp = rcert.certify(model, x, r=r, n_samples=200,
                            attack=rcert.AttackConfig(restarts=1, steps=5, n_noise=8,
                                                      n_check=50, audit=0))
        out[f"margin:{name}"] = _round_trip(tmp, f"m-{name}", emp, "margin", path)
        plain = rcert.certify(model, x, r=r, n_samples=200)
        out[f"plain:{name}"] = _round_trip(tmp, f"p-{name}", plain, "margin", path)
        atk = rcert.attack(model, x, L=BUDGETS, restarts=1, steps=5, n_noise=4)
        out[f"attack:{name}"] = _round_trip(tmp, f"a-{name}", atk, "attack", path)
        cur = rcert.curve(model, x, r=r, radii=RADII, n_samples=100)
        out[f"curve:{name}"] = _round_trip(tmp, f"c-{name}", cur, "curve", path)
        tgt = rcert.targeted_attack(model, x.reshape(-1, 1, 8, 8) if x.dim() == 2 else x,
                                    pairs=2, lambdas=3, max_iter=3)
        out[f"targeted:{name}"] = _round_trip(tmp, f"t-{name}", tgt, "targeted", path)
        post = posterior_table(model, x, levels=(0.5,), draws=2)
        out[f"posteriors:{name}"] = _round_trip(tmp, f"s-{name}", post, "posteriors", path)
    return out


def _pair(results, kind):
    return [results[f"{kind}:vae-digits"], results[f"{kind}:beta10-digits"]]


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _line(ax, prefix):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith(prefix)]
    return line


# Reading results -------------------------------------------------------------------------


def test_load_result_turns_nonfinite_strings_back_into_floats(results):
    res = results["margin:beta10-digits"]
    df = loading.frame(res)
    assert df["margin_empirical"].dtype == np.float64
    raw = [row["margin_empirical"] for row in res["inputs"]]
    assert all(isinstance(v, float) for v in raw)
    assert not any(isinstance(v, str) for row in res["inputs"] for v in row.values())
    assert df["violation"].dtype == bool
    assert loading.label(res) == "beta10-digits"


def test_frame_reads_strings_and_rejects_words():
    df = loading.frame({"inputs": [{"a": "inf", "b": 1.0}, {"a": "nan", "b": "-inf"}]})
    assert np.isposinf(df["a"][0]) and np.isnan(df["a"][1]) and np.isneginf(df["b"][1])
    with pytest.raises(rcert.RcertError, match=r"column a .* not numbers"):
        loading.frame({"inputs": [{"a": "tall"}]})
    with pytest.raises(rcert.RcertError, match="no inputs list"):
        loading.frame({"kind": "margin"})


def test_label_falls_back_to_model():
    assert loading.label({"model": {"path": "runs/x/beta0.1-digits.rcert"}}) == "beta0.1-digits"
    assert loading.label({"model": {}}) == "model"
    assert loading.label({}) == "model"


@pytest.mark.parametrize(("text", "message"), [
    (None, r"^result .*r\.json does not exist; write one with rcert margin"),
    ("{not json", "not valid JSON"),
    ('{"schema_version": 1, "kind": "margin", "inputs": [{"a": NaN}]}', "strict JSON"),
    ("[1, 2]", "not an rcert result"),
    ('{"schema_version": 9, "kind": "margin", "inputs": []}', "schema version 9"),
    ('{"schema_version": 1, "kind": "banana", "inputs": []}', "unknown kind 'banana'"),
    ('{"schema_version": 1, "kind": "margin", "inputs": 3}', "list of objects"),
])
def test_load_result_refuses_bad_files(tmp_path, text, message):
    path = tmp_path / "r.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(rcert.RcertError, match=message) as err:
        loading.load_result(path)
    assert "\n" not in str(err.value)


def test_load_result_refuses_a_folder(tmp_path):
    with pytest.raises(rcert.RcertError, match="is a folder"):
        loading.load_result(tmp_path)


# bound_vs_empirical [C Fig 6] ------------------------------------------------------------


def test_bound_vs_empirical_draws_every_placeable_input(results):
    pair = _pair(results, "margin")
    fig = plots.bound_vs_empirical(pair)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 2
    texts = _legend_texts(ax)
    for res, col in zip(pair, dots, strict=True):
        df = loading.frame(res)
        keep = (np.isfinite(df["bound"]) & (df["bound"] > 0) & np.isfinite(df["margin_empirical"]))
        assert len(col.get_offsets()) == keep.sum()
        np.testing.assert_allclose(np.asarray(col.get_offsets())[:, 1],
                                   df.loc[keep, "margin_empirical"])
        name = loading.label(res)
        assert any(t.startswith(name) and "rho =" in t for t in texts)
        excluded = len(df) - int(keep.sum())
        if excluded:
            assert any(t.startswith(f"{name}:") and f"{excluded} excluded" in t for t in texts)
    identity = _line(ax, "y = x")
    np.testing.assert_array_equal(identity.get_xdata(), identity.get_ydata())


def test_bound_vs_empirical_legend_has_the_fit(results):
    res = results["margin:vae-digits"]
    df = loading.frame(res)
    fit = fit_line(df["bound_certified"].to_numpy(), df["margin_empirical"].to_numpy())
    (ax,) = plots.bound_vs_empirical(res, bound="bound_certified").axes
    text = next(t for t in _legend_texts(ax) if "least squares" in t)
    assert f"rho = {fit['correlation']:.2f}" in text
    assert f"y = {fit['slope']:.2f}x" in text


def test_bound_vs_empirical_rings_violations(results):
    res = copy.deepcopy(results["margin:vae-digits"])
    df = loading.frame(res)
    keep = np.isfinite(df["margin_empirical"]) & (df["bound"] > 0)
    first = int(np.flatnonzero(keep)[0])
    res["inputs"][first]["violation"] = True
    (ax,) = plots.bound_vs_empirical(res).axes
    (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    red = np.all(np.isclose(dots.get_edgecolors()[:, :3], mpl.colors.to_rgb(style.VIOLATION)),
                 axis=1)
    assert red.sum() == 1 and red[0]
    assert any(t.startswith("violation") and "(1)" in t for t in _legend_texts(ax))


def test_bound_vs_empirical_needs_the_empirical_margin(results):
    with pytest.raises(rcert.RcertError, match="--empirical"):
        plots.bound_vs_empirical(results["plain:vae-digits"])
    with pytest.raises(rcert.RcertError, match=r"needs a margin result.*rcert margin"):
        plots.bound_vs_empirical(results["curve:vae-digits"])
    with pytest.raises(rcert.RcertError, match="unknown bound"):
        plots.bound_vs_empirical(results["margin:vae-digits"], bound="latent_margin")


# robustness_curves [C Fig 5, 7 left] -----------------------------------------------------


def test_robustness_curves_mean_over_inputs_at_the_radii(results):
    pair = _pair(results, "curve")
    (ax,) = plots.robustness_curves(pair).axes
    for res in pair:
        df = loading.frame(res)
        mean = _line(ax, loading.label(res))
        np.testing.assert_array_equal(mean.get_xdata(), RADII)
        np.testing.assert_allclose(mean.get_ydata(), df.groupby("rho")["p_hat"].mean())
    m = _line(ax, "m = 0.5")
    assert set(m.get_ydata()) == {0.5}
    # Six inputs each: a thin line per input, per model.
    thin = [ln for ln in ax.get_lines() if ln.get_label().startswith("_")]
    assert len(thin) >= 12
    assert "thin lines: single inputs" in _legend_texts(ax)


def test_robustness_curves_refuse_other_kinds(results):
    with pytest.raises(rcert.RcertError, match=r"needs a curve result.*rcert curve"):
        plots.robustness_curves(results["margin:vae-digits"])


# margin_distributions [C Fig 9a] ---------------------------------------------------------


def test_margin_distributions_one_panel_per_present_column(results):
    pair = _pair(results, "margin")
    fig = plots.margin_distributions(pair)
    assert [ax.get_title() for ax in fig.axes] == ["bound_certified", "margin_empirical"]
    for ax, col in zip(fig.axes, ("bound_certified", "margin_empirical"), strict=True):
        texts = _legend_texts(ax)
        for res in pair:
            values = loading.frame(res)[col]
            n_inf = int(np.isinf(values).sum())
            assert any(t.startswith(loading.label(res)) for t in texts)
            if n_inf:
                assert any(f"{n_inf} = inf" in t for t in texts)
        rugs = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(rugs) == 2
    # Without --empirical only the certified margin is drawn.
    assert len(plots.margin_distributions(results["plain:vae-digits"]).axes) == 1


def test_margin_distributions_fall_back_to_a_rug(results):
    res = copy.deepcopy(results["margin:vae-digits"])
    for row in res["inputs"]:
        row["bound_certified"] = 0.25
    (ax,) = plots.margin_distributions(res, columns=("bound_certified",)).axes
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert any("too few distinct values" in t for t in _legend_texts(ax))


def test_margin_distributions_need_a_column(results):
    with pytest.raises(rcert.RcertError, match="--empirical"):
        plots.margin_distributions(results["plain:vae-digits"], columns=("margin_empirical",))


# encoder_diagnostics [C Fig 9c, d] -------------------------------------------------------


def test_encoder_diagnostics_box_and_dots_per_model(results):
    pair = _pair(results, "margin")
    fig = plots.encoder_diagnostics(pair)
    assert len(fig.axes) == 3
    for ax, col in zip(fig.axes, ("sigma_min", "sigma_mean", "jacobian_fro"), strict=True):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["vae-digits", "beta10-digits"]
        dots = [c for c in ax.collections if isinstance(c, PathCollection)]
        for res, col_dots in zip(pair, dots, strict=True):
            np.testing.assert_allclose(np.asarray(col_dots.get_offsets())[:, 1],
                                       loading.frame(res)[col])
    with pytest.raises(rcert.RcertError, match="needs a margin result"):
        plots.encoder_diagnostics(results["attack:vae-digits"])


# damage_vs_budget [C Fig 9b] -------------------------------------------------------------


@pytest.mark.parametrize("measure", ["damage", "loglik_degradation"])
def test_damage_vs_budget_means_and_noise_baseline(results, measure):
    pair = _pair(results, "attack")
    (ax,) = plots.damage_vs_budget(pair, measure=measure).axes
    for res in pair:
        name, df = loading.label(res), loading.frame(res)
        attack = _line(ax, f"{name}: attack")
        noise = _line(ax, f"{name}: Gaussian noise")
        np.testing.assert_array_equal(attack.get_xdata(), BUDGETS)
        np.testing.assert_allclose(attack.get_ydata(), df.groupby("L")[measure].mean())
        np.testing.assert_allclose(noise.get_ydata(), df.groupby("L")[f"noise_{measure}"].mean())
        assert noise.get_linestyle() == "--"


def test_damage_vs_budget_refuses_bad_input(results):
    with pytest.raises(rcert.RcertError, match="unknown measure"):
        plots.damage_vs_budget(results["attack:vae-digits"], measure="objective")
    res = copy.deepcopy(results["attack:vae-digits"])
    for row in res["inputs"]:
        row["loglik_degradation"] = float("nan")
    with pytest.raises(rcert.RcertError, match="measure='damage'"):
        plots.damage_vs_budget(res, measure="loglik_degradation")


# certified_fraction (SPEC section 7) -----------------------------------------------------


@pytest.mark.parametrize("column", ["bound_certified", "bound_whitened"])
def test_certified_fraction_is_the_report_curve(results, column):
    pair = _pair(results, "margin")
    (ax,) = plots.certified_fraction(pair, column=column).axes
    for res in pair:
        df = loading.frame(res)
        line = _line(ax, loading.label(res))
        radii = line.get_xdata()
        np.testing.assert_array_equal(line.get_ydata(), certified_fraction(df, radii)[column])
        margins = df[column][np.isfinite(df[column]) & (df[column] > 0)]
        assert set(margins) <= set(radii)
        assert line.get_ydata()[0] == pytest.approx((df[column] > 0).mean())
        assert line.get_ydata()[-1] == 0


def test_certified_fraction_single_model_on_a_linear_axis(results):
    res = results["margin:vae-digits"]
    df = loading.frame(res)
    (ax,) = plots.certified_fraction(res).axes
    line = _line(ax, "vae-digits")
    if ax.get_xscale() == "linear":
        assert line.get_xdata()[0] == 0
    np.testing.assert_array_equal(line.get_ydata(),
                                  certified_fraction(df, line.get_xdata())["bound_certified"])
    with pytest.raises(rcert.RcertError, match="unknown column"):
        plots.certified_fraction(res, column="bound")


# All plots -------------------------------------------------------------------------------


KIND_OF = {"bound-vs-empirical": "margin", "curves": "curve", "margins": "margin",
           "encoder": "margin", "damage": "attack", "certified-fraction": "margin",
           "targeted": "targeted", "posteriors": "posteriors"}
#: The latent-attack plots, tested with latent results in test_latent_plots.py.
LATENT_PLOTS = {"dd", "latent-statistics", "tsne"}


@pytest.mark.parametrize("name", sorted(KIND_OF))
def test_every_plot_takes_one_or_several_results(results, name):
    assert set(plots.PLOTS) == set(KIND_OF) | LATENT_PLOTS
    kind = KIND_OF[name]
    assert isinstance(plots.PLOTS[name](results[f"{kind}:vae-digits"]), Figure)
    assert isinstance(plots.PLOTS[name](_pair(results, kind)), Figure)
    other = "curve" if kind != "curve" else "margin"
    with pytest.raises(rcert.RcertError, match=rf"needs an? {kind} result") as err:
        plots.PLOTS[name]([results[f"{kind}:vae-digits"], results[f"{other}:vae-digits"]])
    assert "\n" not in str(err.value)
    for bad in ([], "r.json", [{"inputs": []}]):
        with pytest.raises(rcert.RcertError, match="result"):
            plots.PLOTS[name](bad)


def test_plots_leave_rcparams_and_pyplot_alone(results):
    import matplotlib.pyplot as plt

    backend = mpl.get_backend()
    before = dict(mpl.rcParams)
    for name, kind in KIND_OF.items():
        plots.PLOTS[name](_pair(results, kind))
    assert dict(mpl.rcParams) == before
    assert mpl.get_backend() == backend
    assert plt.get_fignums() == []


def test_same_model_twice_gets_two_names(results):
    res = results["margin:vae-digits"]
    (ax,) = plots.certified_fraction([res, res]).axes
    texts = _legend_texts(ax)
    assert texts[0].startswith("vae-digits (1)") and texts[1].startswith("vae-digits (2)")


# Saving ----------------------------------------------------------------------------------


def test_save_png_and_svg_are_reproducible_and_self_contained(results, tmp_path):
    pair = _pair(results, "margin")
    for i in (1, 2):
        fig = plots.bound_vs_empirical(pair)  # built afresh each time
        output.save(fig, tmp_path / f"f{i}.png")
        output.save(fig, tmp_path / f"f{i}.svg")
    png = (tmp_path / "f1.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert png == (tmp_path / "f2.png").read_bytes()
    svg = (tmp_path / "f1.svg").read_text(encoding="utf-8")
    assert svg == (tmp_path / "f2.svg").read_text(encoding="utf-8")
    assert "<svg" in svg[:300]
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", svg))
    assert urls == {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<text" in svg and "@font-face" not in svg and "<image" not in svg
    assert "dc:date" not in svg


def test_save_refuses_unknown_suffixes_and_missing_folders(results, tmp_path):
    fig = plots.certified_fraction(results["margin:vae-digits"])
    with pytest.raises(rcert.RcertError, match=r"unknown suffix '\.pdf'.*png or \.svg"):
        output.save(fig, tmp_path / "f.pdf")
    with pytest.raises(rcert.RcertError, match="does not exist"):
        output.save(fig, tmp_path / "missing" / "f.png")
    assert not list(tmp_path.iterdir())


def test_saved_json_of_the_cli_shape_plots(results, tmp_path):
    """A result file as the CLI writes it (config, summary, inf strings) plots directly."""
    res = results["margin:beta10-digits"]
    path = tmp_path / "cli.json"
    path.write_text(to_json(res), encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == "margin"
    fig = plots.margin_distributions(loading.load_result(path))
    output.save(fig, tmp_path / "m.svg")
    assert (tmp_path / "m.svg").read_bytes().startswith(b"<?xml")


def test_the_lambda_sweep_draws_each_model_per_lambda(results):
    fig = plots.PLOTS["targeted"](_pair(results, "targeted"))
    loss, nll = fig.axes
    assert [len(line.get_xdata()) for line in loss.lines] == [3, 3]
    assert loss.get_xscale() == "log" and nll.get_ylabel().startswith("$-")
    df = loading.frame(results["targeted:vae-digits"])
    median = df.groupby("lambda")["loss"].median().to_numpy()
    np.testing.assert_allclose(loss.lines[0].get_ydata(), median)


def test_posterior_densities_have_a_panel_per_measure(results):
    fig = plots.PLOTS["posteriors"](_pair(results, "posteriors"))
    assert [ax.get_title() for ax in fig.axes][:2] == [r"$\|\sigma(x)\|_2$", "ELBO (no penalty)"]
    assert len(fig.axes) == 3  # sigma_norm, elbo, denoise_0.5
