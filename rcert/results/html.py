"""The self-contained HTML page of a report.

The page says how its numbers were made (the settings of every model, the date), names
each headline figure in words with a one-line definition (:data:`rcert.results.markdown.ROWS`),
warns when the models were certified at different radii, and can show the weakest inputs
as pictures. Every string is escaped and nothing is loaded from elsewhere.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
from collections.abc import Callable, Mapping
from typing import Any

from rcert import __version__
from rcert.errors import RcertError
from rcert.results.gallery_html import CSS as GALLERY_CSS
from rcert.results.gallery_html import gallery_section
from rcert.results.markdown import ROW_BY_KEY, cell, headline_table

_e = html.escape

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.3em .6em;text-align:right}th{background:#f4f4f4}"
        "th.row{text-align:left;max-width:28em}"
        ".def{display:block;font-weight:normal;font-size:.8em;color:#666}"
        "td.text{text-align:left;word-break:break-all}"
        ".note{border-left:4px solid #c80;background:#fff6e5;padding:.5em 1em}"
        ".fail{color:#b00}.pass{color:#070}img{max-width:100%}" + GALLERY_CSS)

#: What is shown when a model's result does not record a setting.
NOT_RECORDED = "not recorded"


#: Section headings of the report's figures, by file stem.
FIGURE_HEADINGS = {
    "bound-vs-empirical": "Certified bound against the empirical margin ([C] Fig 6)",
    "certified-fraction": "Share of inputs certified at each radius",
    "margins": "Distribution of the margins over the inputs ([C] Fig 9a)",
    "encoder": "Encoder sigma and Jacobian norm over the inputs ([C] Fig 9c, d)",
}


def generation_date(environ: Mapping[str, str] | None = None) -> str:
    """Today's date in UTC as ``YYYY-MM-DD``, or that of ``SOURCE_DATE_EPOCH`` when set.

    ``SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) is the reproducible-builds convention
    for pinning the date a build records; with it, the same inputs give the same page.

    Raises
    ------
    RcertError
        If ``SOURCE_DATE_EPOCH`` is set but is not a non-negative whole number of seconds.
    """
    env = os.environ if environ is None else environ
    value = env.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return datetime.datetime.now(datetime.UTC).date().isoformat()
    if not value.isdigit():
        raise RcertError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since "
                         f"1970-01-01 UTC, got {value!r}")
    try:
        moment = datetime.datetime.fromtimestamp(int(value), datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise RcertError(f"SOURCE_DATE_EPOCH {value} is out of range") from None
    return moment.date().isoformat()


def attack_preset(result: dict[str, Any]) -> str:
    """The attack preset of a result's ``--empirical`` run, or ``"no attacks run"``."""
    empirical = (result.get("config") or {}).get("empirical")
    if isinstance(empirical, dict) and empirical.get("preset") is not None:
        return str(empirical["preset"])
    if empirical or "empirical" in (result.get("summary") or {}):
        return NOT_RECORDED  # attacks ran, but the result does not say how hard they tried
    return "no attacks run"


def _recorded(value: Any) -> str:
    return NOT_RECORDED if value is None or value == "" else cell(value)


def _read(block: str, key: str) -> Callable[[dict[str, Any]], str]:
    """Reads ``result[block][key]`` for the settings table."""
    return lambda res: _recorded((res.get(block) or {}).get(key))


#: The settings table: (heading, how to read it from a result).
SETTINGS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("checkpoint", _read("model", "path")),
    ("weights digest (SHA-256)", _read("model", "sha256")),
    ("architecture", _read("model", "architecture")),
    ("saved by rcert", _read("model", "rcert_version")),
    ("data", _read("config", "data")),
    ("r (reconstruction radius)", _read("config", "r")),
    ("m (robustness level)", _read("config", "m")),
    ("n_samples (Monte Carlo draws)", _read("config", "n_samples")),
    ("alpha (1 - confidence)", _read("config", "alpha")),
    ("seed", _read("config", "seed")),
    ("attack preset", attack_preset),
)


def settings_section(results: dict[str, dict[str, Any]], date: str) -> list[str]:
    """The "Settings" section: how each model's numbers were made, and when."""
    head = "".join(f"<th>{_e(str(name))}</th>" for name in results)
    body = "".join(
        f'<tr><th class="row">{_e(heading)}</th>'
        + "".join(f'<td class="text">{_e(read(res))}</td>' for res in results.values())
        + "</tr>" for heading, read in SETTINGS)
    return ["<h2>Settings</h2>",
            f"<p>Generated on {_e(date)} (UTC) by rcert {_e(__version__)}. Theorem 1 and the "
            "margins follow Camuto et al. "
            "(2021); docs/statistics.md says how each number is computed.</p>",
            f"<table><tr><th></th>{head}</tr>{body}</table>"]


def radius_note(results: dict[str, dict[str, Any]]) -> str | None:
    """A warning when the models were certified at different ``r``, else None."""
    radii = {name: (res.get("config") or {}).get("r") for name, res in results.items()}
    if len(set(radii.values())) <= 1:
        return None
    listed = ", ".join(f"{name}: {_recorded(r)}" for name, r in radii.items())
    return (f"models were certified at different r: {listed}; "
            f"their margins are not comparable")


def _headline(results: dict[str, dict[str, Any]]) -> str:
    """The headline table, each row named in words with its definition under it."""
    table = headline_table(results)
    head = "".join(f"<th>{_e(str(n))}</th>" for n in table.columns)
    rows = []
    for key, values in table.iterrows():
        row = ROW_BY_KEY[str(key)]
        rows.append(f'<tr><th class="row" title="{_e(row.key)}">{_e(row.heading)}'
                    f'<span class="def">{_e(row.definition)}</span></th>'
                    + "".join(f"<td>{_e(cell(values[n]))}</td>" for n in table.columns)
                    + "</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _verdicts(verdicts: list[dict[str, Any]]) -> list[str]:
    rows = "".join(
        f'<tr><td class="{"pass" if v["passed"] else "fail"}">'
        f'{"PASS" if v["passed"] else "FAIL"}</td><td>{_e(v["model"])}</td>'
        f"<td>{_e(v['threshold'])}</td><td>{_e(cell(v['value']))}</td>"
        f"<td>{_e(cell(v['limit']))}</td></tr>" for v in verdicts)
    return ["<h2>Thresholds</h2>", "<table><tr><th></th><th>model</th><th>threshold</th>"
            f"<th>value</th><th>limit</th></tr>{rows}</table>"]


def report_html(results: dict[str, dict[str, Any]], images: dict[str, bytes],
                verdicts: list[dict[str, Any]] | None = None,
                gallery: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """One self-contained page: headline table, settings, thresholds, plots, weakest inputs.

    Parameters
    ----------
    results : dict
        Results by model name (:func:`rcert.results.schema.result`).
    images : dict
        Figure bytes by file name; the ``.png`` ones are embedded.
    verdicts : list of dict, optional
        Threshold verdicts of ``rcert check``.
    gallery : dict, optional
        Entries of :func:`rcert.runs.gallery.weakest_inputs` by model name.

    Returns
    -------
    str
        The page. Its date is :func:`generation_date`, so ``SOURCE_DATE_EPOCH`` pins it.
    """
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>rcert report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>rcert report</h1>"]
    note = radius_note(results)
    if note is not None:
        parts.append(f'<p class="note">{_e(note)}</p>')
    parts.append(_headline(results))
    parts += settings_section(results, generation_date())
    if verdicts:
        parts += _verdicts(verdicts)
    for name, image in images.items():
        if name.endswith(".png"):
            encoded = base64.b64encode(image).decode("ascii")
            parts.append(f"<h2>{_e(FIGURE_HEADINGS.get(name[:-4], name[:-4]))}</h2>"
                         f'<img alt="{_e(name)}" src="data:image/png;base64,{encoded}">')
    if gallery:
        parts += gallery_section(gallery, results)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
