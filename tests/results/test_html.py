"""The HTML report: settings, headings, the different-r note, escaping, and the gallery of
weakest inputs (rcert.runs.gallery)."""

from __future__ import annotations

import base64
import datetime
import io
import math
import re
import struct
from html import escape
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg
from torch import nn

import rcert
from rcert.results import html, markdown, schema
from rcert.runs import gallery
from rcert.statistics.summary import DIAGNOSTICS, MARGINS

EVIL = "<script>alert(1)</script> & co"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCH = 1_700_000_000


def _rows(seed: int, n: int = 12, empirical: bool = False) -> pd.DataFrame:
    """Seeded per-input rows with every column the summaries read; some inputs abstain
    (certified margins 0) and two share a margin, to exercise ties."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"index": np.arange(100, 100 + n)})
    for col in (*DIAGNOSTICS, *MARGINS):
        df[col] = rng.uniform(0.05, 2.0, n)
    df["abstain"] = rng.random(n) < 0.3
    df.loc[[0, 1], "abstain"] = [True, False]
    for col in ("bound_certified", "bound_spectral", "bound_whitened", "latent_margin"):
        df.loc[df["abstain"], col] = 0.0
    df.loc[[2, 3], "abstain"] = False
    df.loc[3, "bound_certified"] = df.loc[2, "bound_certified"]
    df["k"], df["n"] = 40, 50
    if empirical:
        df["margin_empirical"] = df["bound_certified"] * rng.uniform(1.0, 3.0, n)
        df.loc[4, "margin_empirical"] = math.inf
        df["violation"] = False
        df["tightness"] = df["bound_certified"] / df["margin_empirical"]
        # Four inputs audited; the stronger attack lowers one by half, confirmed.
        df["margin_empirical_audit"] = np.nan
        df.loc[5:8, "margin_empirical_audit"] = df.loc[5:8, "margin_empirical"]
        df.loc[6, "margin_empirical_audit"] = df.loc[6, "margin_empirical"] / 2
        df["p_value_audit"] = np.where(df.index == 6, 1e-6, np.nan)
    return df


def _result(rows_seed: int, /, *, r: float = 0.75, path: str = "m.rcert", empirical: bool = False,
            **config) -> dict:
    cfg = {"r": r, "m": 0.5, "n_samples": 1000, "alpha": 0.001, "seed": 0,
           "data": "digits:test", **config}
    if empirical and "empirical" not in cfg:
        cfg["empirical"] = {"preset": "fast"}
    return schema.result(_rows(rows_seed, empirical=empirical), config=cfg,
                         model={"path": path, "architecture": "mlp",
                                "rcert_version": "0.3.1"})


class _Cells(HTMLParser):
    """Every table of a page as lists of rows of cell texts (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> list[list[list[str]]]:
    parser = _Cells()
    parser.feed(page)
    return parser.tables


def _section(page: str, title: str) -> str:
    """The HTML from ``<h2>title</h2>`` to the next ``<h2>`` (or the end)."""
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start:] if end < 0 else page[start:end]


def _settings(page: str) -> dict[str, list[str]]:
    """The settings table by row heading: one cell per model."""
    (table,) = _tables(_section(page, "Settings"))
    return {row[0]: row[1:] for row in table[1:]}


def _setting(settings: dict[str, list[str]], name: str) -> list[str]:
    (heading,) = [h for h in settings if h == name or h.startswith(name + " ")]
    return settings[heading]


@pytest.fixture(autouse=True)
def _pinned_date(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))


# --- settings ---------------------------------------------------------------------------------


def test_settings_section_shows_how_each_model_was_run():
    a = _result(0, r=0.75, path="runs/a.rcert", empirical=True, n_samples=137, alpha=0.0025,
                m=0.4, seed=11, data="digits:val")
    a["config"]["empirical"] = {"preset": "thorough", "steps": 50}
    a["model"]["sha256"] = "ab" * 32
    b = _result(1, r=0.4, path="runs/b.rcert", n_samples=50, seed=3)
    results = {"a": a, "b": b}
    page = html.report_html(results, {})
    settings = _settings(page)
    for key in ("n_samples", "alpha", "m", "r", "seed", "data"):
        assert _setting(settings, key) == [str(res["config"][key]) for res in (a, b)], key
    assert _setting(settings, "checkpoint") == ["runs/a.rcert", "runs/b.rcert"]
    assert _setting(settings, "weights digest") == ["ab" * 32, "not recorded"]
    assert _setting(settings, "saved by rcert") == ["0.3.1", "0.3.1"]
    assert f"by rcert {rcert.__version__}" in page  # the version that made the report
    assert _setting(settings, "attack preset") == ["thorough", "no attacks run"]


def test_source_date_epoch_pins_the_generation_date(monkeypatch):
    results = {"a": _result(0)}
    for epoch in (EPOCH, 86_400 * 365):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
        page = html.report_html(results, {})
        expected = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)  # noqa: UP017
        assert f"Generated on {expected:%Y-%m-%d}" in page
        assert html.report_html(results, {}) == page  # same inputs, same bytes
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    before = datetime.datetime.now(datetime.timezone.utc).date()  # noqa: UP017
    page = html.report_html(results, {})
    after = datetime.datetime.now(datetime.timezone.utc).date()  # noqa: UP017
    assert f"Generated on {before:%Y-%m-%d}" in page or f"Generated on {after:%Y-%m-%d}" in page


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", "9" * 30])
def test_a_bad_source_date_epoch_is_one_line_error(monkeypatch, value):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(rcert.RcertError, match="SOURCE_DATE_EPOCH") as err:
        html.report_html({"a": _result(0)}, {})
    assert "\n" not in str(err.value)


# --- headings ---------------------------------------------------------------------------------


def test_rows_are_named_in_words_with_a_definition_and_the_right_values():
    results = {"a": _result(0, empirical=True), "b": _result(1, empirical=True)}
    headline = _tables(html.report_html(results, {}))[0]  # the page opens with it
    assert headline[0] == ["", "a", "b"]
    keys = list(markdown.headline_table(results).index)
    assert len(headline) - 1 == len(keys) == len(markdown.ROWS)  # every row, with attacks
    for key, row in zip(keys, headline[1:], strict=True):
        entry = markdown.ROW_BY_KEY[key]
        assert row[0] == entry.heading + entry.definition
        assert entry.heading != key and entry.definition and "\n" not in entry.definition
        assert "SPEC" not in entry.heading + entry.definition
    rows = {row[0]: row[1:] for row in headline[1:]}
    mean = markdown.ROW_BY_KEY["mean bound_certified"]
    for name, shown in zip(("a", "b"), rows[mean.heading + mean.definition], strict=True):
        df = _rows(0 if name == "a" else 1, empirical=True)
        assert float(shown) == pytest.approx(df["bound_certified"].mean(), rel=1e-3)
    assert rows["Mean certified margin (Theorem 1 with p_lower)" + mean.definition]
    audit = markdown.ROW_BY_KEY["attack strength"]
    assert rows[audit.heading + audit.definition][0] == (
        "the stronger attack lowered 1 of 4 audited margins (max drop 50%), 1 confirmed")


def test_markdown_and_html_share_one_table_of_rows():
    results = {"a": _result(0, empirical=True)}
    md = markdown.summary_markdown(results)
    labels = [line.split("|")[1].strip() for line in md.splitlines()[4:] if line.startswith("|")]
    assert labels == [row.key for row in markdown.ROWS]
    assert len({row.heading for row in markdown.ROWS}) == len(markdown.ROWS)


# --- the different-r note ---------------------------------------------------------------------


@pytest.mark.parametrize(("radii", "differ"), [((0.75, 0.4), True), ((0.5, 0.5), False),
                                               ((0.75,), False), ((0.3, 0.3, 1.25), True)])
def test_the_note_on_different_radii_appears_iff_r_differs(radii, differ):
    names = [chr(ord("a") + i) for i in range(len(radii))]
    results = {n: _result(i, r=r) for i, (n, r) in enumerate(zip(names, radii, strict=True))}
    page = html.report_html(results, {})
    listed = ", ".join(f"{n}: {r}" for n, r in zip(names, radii, strict=True))
    assert ("different r" in page) == differ
    assert (f"models were certified at different r: {listed}; their margins are not "
            f"comparable" in page) == differ


# --- escaping, self-contained -----------------------------------------------------------------


def test_every_hostile_string_is_escaped():
    res = _result(0, path="<script>p</script>.rcert", empirical=True, data="<i>d</i>")
    res["config"]["empirical"] = {"preset": "<b>preset</b>"}
    res["model"]["sha256"] = "<img src=x>"
    res["model"]["rcert_version"] = "1<2"
    other = _result(1, r=0.5)
    entries = gallery.weakest_inputs(_Flat(16), torch.rand(12, 16, generator=_gen(1)),
                                     _rows(0), k=2)
    page = html.report_html({EVIL: res, "o": other}, {'x"><script>.png': PNG_SIGNATURE},
                            gallery={EVIL: entries})
    lower = page.lower()
    assert "<script" not in lower and "<i>" not in page and "<b>" not in page
    assert "<img src=x>" not in page
    for text in (EVIL, "<script>p</script>.rcert", "<i>d</i>", "<b>preset</b>",
                 "<img src=x>", "1<2"):
        assert escape(text) in page, text
    assert f"{escape(EVIL)}: 0.75, o: 0.5" in page  # the note escapes names too


def test_the_page_loads_nothing_from_elsewhere():
    x = torch.rand(12, 1, 8, 8, generator=_gen(2))
    entries = gallery.weakest_inputs(_Flat(64), x, _rows(2, empirical=True), k=3,
                                     deltas={100 + i: np.full(64, 0.1) for i in range(12)})
    page = html.report_html({"a": _result(2, empirical=True)}, {"p.png": PNG_SIGNATURE},
                            verdicts=[{"model": "a", "threshold": "t", "value": 1.0,
                                       "limit": 2.0, "passed": True, "message": ""}],
                            gallery={"a": entries})
    lower = page.lower()
    assert re.search(r"https?:", lower) is None
    assert "<link" not in lower and "<script" not in lower and "@import" not in lower
    assert "url(" not in lower
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 1 + 3 * 4 and all(s.startswith("data:image/png;base64,")
                                             for s in sources)


# --- the gallery ------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Flat(nn.Module):
    """A linear encoder and a sigmoid decoder on flattened inputs: decode returns flat
    vectors whatever the input's shape, as many real decoders do."""

    def __init__(self, size: int, latent: int = 3) -> None:
        super().__init__()
        g = _gen(size)
        self.enc = nn.Parameter(torch.randn(latent, size, generator=g) / math.sqrt(size))
        self.dec = nn.Parameter(3 * torch.randn(size, latent, generator=g))
        self.data_range = (0.0, 1.0)

    def encode(self, x):
        mu = x.reshape(len(x), -1) @ self.enc.T
        return mu, torch.full_like(mu, 0.1)

    def decode(self, z):
        return torch.sigmoid(z @ self.dec.T)


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which follows the signature."""
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def _pixels(png: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The data pixels of a PNG drawn at a whole-number scale: one sample per block."""
    decoded = mpimg.imread(io.BytesIO(png))[..., :3]
    sy, sx = decoded.shape[0] // shape[0], decoded.shape[1] // shape[1]
    return decoded[sy // 2::sy, sx // 2::sx]


def _expected_size(h: int, w: int) -> tuple[int, int]:
    scale = max(1, -(-gallery.MIN_SIDE // max(h, w)))
    return w * scale, h * scale


@pytest.mark.parametrize("k", [1, 4, 6, 50])
def test_the_weakest_inputs_are_the_k_smallest_certified_margins(k):
    rows = _rows(3, empirical=True)
    x = torch.rand(len(rows), 1, 8, 8, generator=_gen(3))
    entries = gallery.weakest_inputs(_Flat(64), x, rows, k=k)
    expected = rows[~rows["abstain"]].nsmallest(k, "bound_certified")
    assert [e["index"] for e in entries] == expected["index"].tolist()
    assert [e["bound_certified"] for e in entries] == expected["bound_certified"].tolist()
    assert [e["margin_empirical"] for e in entries] == expected["margin_empirical"].tolist()
    assert all(set(e["images"]) == {"input", "reconstruction"} for e in entries)


def test_without_attacks_there_is_no_empirical_margin():
    rows = _rows(4)
    entries = gallery.weakest_inputs(_Flat(10), torch.rand(len(rows), 10, generator=_gen(4)),
                                     rows, k=3)
    assert [e["margin_empirical"] for e in entries] == [None] * 3


@pytest.mark.parametrize(("input_shape", "image_shape"), [
    ((1, 8, 8), (8, 8)), ((16,), (4, 4)), ((10,), (1, 10)), ((3, 5, 7), (5, 7)),
    ((1, 30, 20), (30, 20))])
def test_gallery_images_show_input_and_reconstruction(input_shape, image_shape):
    rows = _rows(5)
    size = int(np.prod(input_shape))
    model = _Flat(size)
    # Values outside [0, 1] must be clipped to the model's data_range, not rescaled.
    x = torch.rand(len(rows), *input_shape, generator=_gen(5)) * 1.4 - 0.2
    entries = gallery.weakest_inputs(model, x, rows, k=2)
    position = {int(i): p for p, i in enumerate(rows["index"])}
    for entry in entries:
        xi = x[position[entry["index"]]].unsqueeze(0)
        with torch.no_grad():
            recon = model.decode(model.encode(xi)[0]).reshape(input_shape).numpy()
        for key, values in (("input", xi[0].numpy()), ("reconstruction", recon)):
            png = entry["images"][key]
            assert _png_size(png) == _expected_size(*image_shape)
            shown = _pixels(png, image_shape)
            want = np.clip(values, 0.0, 1.0)
            want = np.moveaxis(want, 0, -1) if input_shape[0] == 3 else want.reshape(
                image_shape)[..., None]
            np.testing.assert_allclose(shown, np.broadcast_to(want, shown.shape), atol=1 / 255)


def test_adversarial_pictures_come_with_a_perturbation():
    rows = _rows(6, empirical=True)
    model = _Flat(64)
    x = torch.rand(len(rows), 1, 8, 8, generator=_gen(6))
    weakest = rows[~rows["abstain"]].nsmallest(3, "bound_certified")["index"].tolist()
    delta = np.random.default_rng(6).normal(0, 0.2, 64)
    model.train()
    entries = gallery.weakest_inputs(model, x, rows, k=3, deltas={weakest[1]: delta})
    assert model.training  # the model's mode is left as it was
    assert [set(e["images"]) for e in entries] == [
        {"input", "reconstruction"},
        {"input", "reconstruction", "adversarial input", "adversarial reconstruction"},
        {"input", "reconstruction"}]
    position = int(np.flatnonzero(rows["index"] == weakest[1])[0])
    attacked = x[position].reshape(1, 64) + torch.as_tensor(delta, dtype=x.dtype)
    with torch.no_grad():
        recon = model.decode(model.encode(attacked)[0])
    images = entries[1]["images"]
    for key, values in (("adversarial input", attacked), ("adversarial reconstruction", recon)):
        shown = _pixels(images[key], (8, 8))[..., 0]
        np.testing.assert_allclose(shown, np.clip(values.numpy().reshape(8, 8), 0, 1),
                                   atol=1 / 255)


def test_gallery_images_are_deterministic_and_the_section_embeds_them():
    rows = _rows(7)
    x = torch.rand(len(rows), 1, 8, 8, generator=_gen(7))
    first = gallery.weakest_inputs(_Flat(64), x, rows, k=4)
    second = gallery.weakest_inputs(_Flat(64), x.clone(), rows, k=4)
    assert first == second
    res = schema.result(rows, config={"r": 0.75, "data": "digits:test"})
    page = html.report_html({"a": res}, {}, gallery={"a": first})
    section = _section(page, "Weakest inputs")
    images = [png for e in first for png in e["images"].values()]
    assert section.count("<img") == len(images) == 8
    for png in images:
        assert base64.b64encode(png).decode() in section
    n_abstained = int(rows["abstain"].sum())
    assert f"{n_abstained} abstained input" in section
    alts = re.findall(r'alt="([^"]*)"', section)
    assert [a.split(":")[0] for a in alts] == [f"input {e['index']}" for e in first
                                               for _ in range(2)]
    assert "Weakest inputs" not in html.report_html({"a": res}, {})


def test_weakest_inputs_refuses_rows_that_do_not_match_the_inputs():
    rows = _rows(8)
    with pytest.raises(rcert.RcertError, match="one row per input"):
        gallery.weakest_inputs(_Flat(10), torch.rand(len(rows) - 1, 10, generator=_gen(8)), rows)
    with pytest.raises(rcert.RcertError, match="perturbation"):
        gallery.weakest_inputs(_Flat(10), torch.rand(len(rows), 10, generator=_gen(9)), rows, k=1,
                               deltas={int(i): np.zeros(3) for i in rows["index"]})
