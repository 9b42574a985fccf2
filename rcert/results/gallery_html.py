"""The "Weakest inputs" section of the HTML report: pictures of the inputs with the
smallest certified margin (made by :func:`rcert.runs.gallery.weakest_inputs`)."""

from __future__ import annotations

import base64
import html
from typing import Any

from rcert.results.markdown import cell

#: The pictures of one input, in the order shown, with the caption under each.
PICTURES = (("input", "input x"), ("reconstruction", "reconstruction g(mu(x))"),
            ("adversarial input", "adversarial input x + d"),
            ("adversarial reconstruction", "reconstruction g(mu(x + d))"))

CSS = (".gallery{display:flex;flex-wrap:wrap;gap:1em}"
       ".gallery figure{margin:0;border:1px solid #ccc;padding:.5em}"
       ".gallery figcaption{font-size:.85em;margin-bottom:.3em}"
       ".pics{display:flex;gap:.4em}.pics div{text-align:center;font-size:.75em;color:#666}"
       ".pics img{display:block;image-rendering:pixelated;margin-bottom:.2em}")

_INTRO = ("For each model, the inputs with the smallest certified margin (Theorem 1 of "
          "Camuto et al. 2021 with p_lower) among the inputs that did not abstain, smallest "
          "first: the input x and its maximum-likelihood reconstruction g(mu(x)) and, where "
          "an attack ran, the adversarial input x + d and its reconstruction g(mu(x + d)). "
          "A model without certificates (a deterministic encoder) shows the inputs with the "
          "smallest empirical margin, or without attacks the largest encoder Jacobian norm.")


def _abstained(result: dict[str, Any] | None) -> int | None:
    """How many inputs of ``result`` abstained (no certificate at its r), if known."""
    if not isinstance(result, dict):
        return None
    n = result.get("summary", {}).get("n_abstained")
    if isinstance(n, int):
        return n
    rows = result.get("inputs")
    if isinstance(rows, list) and any(isinstance(row, dict) and "abstain" in row
                                      for row in rows):
        return sum(bool(row.get("abstain")) for row in rows if isinstance(row, dict))
    return None  # no certificate to abstain from (a deterministic encoder)


def _figure(entry: dict[str, Any]) -> str:
    """One input: a caption with its margins, then its pictures with alt text."""
    e = html.escape
    index = entry["index"]
    caption = f"input {index}: certified margin {cell(float(entry['bound_certified']))}"
    if "jacobian_spec" in entry:  # a deterministic encoder: no certificate, SPEC section 9
        caption = f"input {index}: no certificate, ||J||_2 {cell(entry['jacobian_spec'])}"
    if entry.get("margin_empirical") is not None:
        caption += f", empirical margin {cell(float(entry['margin_empirical']))}"
    pictures = []
    for key, text in PICTURES:
        png = entry["images"].get(key)
        if png is None:
            continue
        encoded = base64.b64encode(png).decode("ascii")
        pictures.append(f'<div><img alt="{e(f"input {index}: {text}")}" '
                        f'src="data:image/png;base64,{encoded}">{e(text)}</div>')
    return (f"<figure><figcaption>{e(caption)}</figcaption>"
            f'<div class="pics">{"".join(pictures)}</div></figure>')


def gallery_section(gallery: dict[str, list[dict[str, Any]]],
                    results: dict[str, dict[str, Any]]) -> list[str]:
    """HTML parts of the "Weakest inputs" section, one subsection per model of ``gallery``.

    ``gallery`` maps a model name to the entries of
    :func:`rcert.runs.gallery.weakest_inputs`; ``results`` gives each model's count of
    abstentions, which are not pictured. Every string is escaped.
    """
    e = html.escape
    parts = ["<h2>Weakest inputs</h2>", f"<p>{e(_INTRO)}</p>"]
    for name, entries in gallery.items():
        parts.append(f"<h3>{e(str(name))}</h3>")
        n_abstained = _abstained(results.get(name))
        if n_abstained is not None:
            parts.append(f"<p>{n_abstained} abstained input{'' if n_abstained == 1 else 's'} "
                         "(p_lower &le; m: no certificate at this r) not shown.</p>")
        if not entries:
            parts.append("<p>No input was certified, so there is none to show.</p>")
            continue
        parts.append('<div class="gallery">' + "".join(_figure(x) for x in entries) + "</div>")
    return parts
