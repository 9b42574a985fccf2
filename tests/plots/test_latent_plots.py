"""Lu & Chen's figures (rcert.plots.latent) from latent-attack results read back from JSON:
what each panel draws is checked against the result's own rows, summary and sections."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

import rcert
from rcert import plots
from rcert.errors import RcertError
from rcert.evaluation.latent import latent_attack
from rcert.plots import loading
from rcert.plots.latent import dd_curves, latent_embedding, latent_statistics
from rcert.results.schema import result
from rcert.results.text import to_json
from rcert.settings import FidelityConfig, RunConfig

MODELS = ("models/vae-digits.safetensors", "models/beta10-digits.safetensors")
N = 6
EPS = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """Latent-attack results of both shipped models: 6 digits in batches of 3, two seeds,
    statistics at 0.5 and 1, a t-SNE at 1; written as JSON and read back."""
    tmp = tmp_path_factory.mktemp("latent-plots")
    x = rcert.load_data("digits:test").subset(N).x
    out = []
    for i, path in enumerate(MODELS):
        df = latent_attack(rcert.load(path), x, epsilons=EPS, seeds=[0, 1],
                           fidelity=FidelityConfig(ssim_window=7, batch=3),
                           statistics_at=(0.5, 1.0), tsne_at=(1.0,),
                           run=RunConfig(progress=False))
        file = tmp / f"r{i}.json"
        file.write_text(to_json(result(df, kind="latent", model={"path": path})))
        out.append(loading.load_result(file))
    return out


def test_the_kinds_are_registered():
    assert {"dd", "latent-statistics", "tsne"} <= set(plots.KINDS)
    assert plots.PLOTS["dd"] is dd_curves
    assert plots.PLOTS["latent-statistics"] is latent_statistics
    assert plots.PLOTS["tsne"] is latent_embedding


def test_dd_curves_draw_the_mean_band_and_limit(docs):
    doc = docs[0]
    fig = dd_curves(doc)
    axes = fig.axes
    assert len(axes) == 4  # mse, l2, ssim, psnr: the scores the result has
    rows = pd.DataFrame(doc["inputs"])
    for ax, score in zip(axes, ("mse", "l2", "ssim", "psnr"), strict=True):
        (line, *rest) = ax.get_lines()
        np.testing.assert_allclose(line.get_xdata(), EPS)
        np.testing.assert_allclose(line.get_ydata(), rows.groupby("epsilon")[score].mean())
        np.testing.assert_allclose(line.get_ydata(), doc["summary"]["curves"][score]["mean"])
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        top = band.get_paths()[0].vertices[:, 1].max()
        mean = np.asarray(doc["summary"]["curves"][score]["mean"])
        std = np.asarray(doc["summary"]["curves"][score]["std"])
        assert top == pytest.approx((mean + std).max(), rel=1e-9)
        limits = [ln for ln in rest if ln.get_label().startswith("limit")]
        assert len(limits) == (score == "ssim")  # the default limits: ssim 0.4, lpips 0.15
        if limits:
            assert set(limits[0].get_ydata()) == {0.4}


def test_dd_curves_of_two_models_and_chosen_metrics(docs):
    fig = dd_curves(docs, metrics=["ssim"])
    (ax,) = fig.axes
    models = [ln for ln in ax.get_lines() if not ln.get_label().startswith("limit")]
    assert len(models) == 2
    for line, doc in zip(models, docs, strict=True):
        np.testing.assert_allclose(line.get_ydata(), doc["summary"]["curves"]["ssim"]["mean"])
    with pytest.raises(RcertError, match=r"dd cannot draw lpips"):
        dd_curves(docs, metrics=["lpips"])


def test_dd_refuses_another_kind_of_result(docs):
    other = copy.deepcopy(docs[0])
    other["kind"] = "margin"
    with pytest.raises(RcertError, match=r"dd needs a latent result"):
        dd_curves(other)


def test_latent_statistics_draw_the_recorded_bars(docs):
    doc = docs[0]
    fig = latent_statistics(doc)
    assert len(fig.axes) == 2  # epsilon 0.5 and 1
    stats = pd.DataFrame(doc["sections"]["statistics"])
    for ax, (eps, part) in zip(fig.axes, stats.groupby("epsilon"), strict=True):
        assert f"epsilon {eps:g}" in ax.get_title()
        heights = [p.get_height() for p in ax.patches]
        d = len(part)
        assert len(heights) == 3 * d
        for k, col in enumerate(("mean_abs_code", "mean_abs_adversarial", "mean_abs_shift")):
            np.testing.assert_allclose(heights[k * d:(k + 1) * d], part[col])


def test_latent_embedding_scatters_clean_and_adversarial_codes(docs):
    doc = docs[1]
    fig = latent_embedding(doc)
    (ax,) = fig.axes
    emb = pd.DataFrame(doc["sections"]["embedding"])
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 2
    for dot, code in zip(dots, ("clean", "adversarial"), strict=True):
        want = emb.loc[emb["code"] == code, ["x", "y"]].to_numpy()
        np.testing.assert_allclose(dot.get_offsets(), want)


@pytest.mark.parametrize(("plot", "flag"), [(latent_statistics, "--statistics-at"),
                                             (latent_embedding, "--tsne-at")])
def test_a_result_without_sections_says_how_to_make_them(docs, plot, flag):
    bare = copy.deepcopy(docs[0])
    del bare["sections"]
    with pytest.raises(RcertError, match=rf"has no .*{flag} EPSILON") as info:
        plot([docs[1], bare])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["dd", "latent-statistics", "tsne"])
def test_every_latent_plot_takes_one_or_several_results(docs, kind):
    """The contract of every plot (tests/plots/test_plots.py) for the latent kinds."""
    import matplotlib as mpl

    before = dict(mpl.rcParams)
    draw = plots.PLOTS[kind]
    assert isinstance(draw(docs[0]), Figure) and isinstance(draw(docs), Figure)
    assert dict(mpl.rcParams) == before
    other = copy.deepcopy(docs[1])
    other["kind"] = "curve"
    with pytest.raises(RcertError, match=r"needs a latent result") as err:
        draw([docs[0], other])
    assert "\n" not in str(err.value)
    for bad in ([], "r.json", [{"inputs": []}]):
        with pytest.raises(RcertError, match="result"):
            draw(bad)
