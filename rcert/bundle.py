"""The report folder written by ``rcert report`` and ``rcert check``.

Files, for one or several models side by side:

* ``inputs.csv``: every per-input row, with a ``model`` column first;
* ``summary.md``: a Markdown summary fit for a CI job summary;
* ``junit.xml``: one test case per input (failed: a violation; skipped: an abstention),
  and one per threshold when ``rcert check`` ran;
* ``plots/*.png`` and ``plots/*.svg``;
* ``report.html``: one self-contained page embedding the plots, every string escaped,
  nothing loaded from elsewhere;
* ``results.json``: the full results (schema version, one result per model, threshold
  verdicts) and the SHA-256 of every other file. It is written last: a report is complete
  when ``results.json`` exists and the files match its digests.

Every file is written atomically. Before anything is written, the old ``results.json`` is
removed, so a run that fails part-way leaves no report that looks complete.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd

from rcert import checkpoint, plots, report, resume
from rcert.files import atomic_write

SCHEMA_VERSION = 1

#: Figures drawn for every report, and the one that needs ``--empirical``.
FIGURES = ("certified-fraction", "margins", "encoder")
EMPIRICAL_FIGURE = "bound-vs-empirical"


def compute(entries: list[dict[str, Any]], out: Path, *,
            progress: bool = False) -> dict[str, dict[str, Any]]:
    """Certify each model of ``entries``, resuming from ``out/.partial``.

    Each entry is a dict with ``path`` and optional ``r``, ``data``, ``limit``,
    ``n_samples``, ``alpha``, ``m``, ``seed``, ``empirical`` and ``device``. Returns the
    results keyed by model name: the checkpoint's stem, with ``+`` added when two share one.
    """
    results: dict[str, dict[str, Any]] = {}
    for entry in entries:
        model, dataset = checkpoint.load_with_data(
            entry["path"], data_spec=entry.get("data"), limit=entry.get("limit"),
            device=entry.get("device", "cpu"))
        args = {"r": checkpoint.radius(model, entry.get("r"), entry["path"]),
                "m": entry.get("m", 0.5), "n_samples": entry.get("n_samples", 1000),
                "alpha": entry.get("alpha", 0.001), "seed": entry.get("seed", 0),
                "empirical": entry.get("empirical", False)}
        name = Path(entry["path"]).stem
        while name in results:
            name += "+"
        settings = {"weights_sha256": model.meta["sha256"], "architecture": model.meta["model"],
                    "data": str(dataset.spec), "n": len(dataset),
                    "device": entry.get("device", "cpu"), **args}
        df = resume.certify_resumable(model, dataset.x, dataset.index,
                                      path=out / ".partial" / f"{name}.jsonl",
                                      settings=settings, progress=progress, **args)
        results[name] = report.result(df, model=checkpoint.describe(model, entry["path"]),
                                      config={"data": str(dataset.spec)})
    return results


def inputs_csv(results: dict[str, dict[str, Any]]) -> str:
    """All models' per-input rows in one table, ``model`` first."""
    frames = [pd.DataFrame(res["inputs"]).assign(model=name) for name, res in results.items()]
    df = pd.concat(frames, ignore_index=True)
    df = df[["model", *[c for c in df.columns if c != "model"]]]
    return report.to_csv({"inputs": df.to_dict(orient="records")})


def _headline(res: dict[str, Any]) -> dict[str, Any]:
    """The figures a reviewer compares across models."""
    s = res["summary"]
    row = {
        "data": res["config"].get("data", ""),
        "r": res["config"].get("r"),
        "inputs": s["n_inputs"],
        "certified": f"{s['n_certified']} ({100 * s['certified_share']:.1f}%)",
        "abstained": s["n_abstained"],
        "mean bound_certified": s["mean_margin"]["bound_certified"],
        "median bound_certified": s["margins"]["bound_certified"]["median"],
        "mean bound_whitened": s["mean_margin"]["bound_whitened"],
        "mean latent_margin": s["mean_margin"]["latent_margin"],
        "median r_min": s["diagnostics"]["r_min"]["median"],
    }
    if "empirical" in s:
        e = s["empirical"]
        row.update({"violations": e["n_violations"],
                    "mean margin_empirical": e["margin_empirical"]["mean"],
                    "empirical vs bound: correlation": e["fit"]["bound"]["correlation"],
                    "median tightness": e["tightness"]["median"]})
    return row


def headline_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Models as columns, headline figures as rows."""
    return pd.DataFrame({name: _headline(res) for name, res in results.items()})


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_markdown(results: dict[str, dict[str, Any]],
                     verdicts: list[dict[str, Any]] | None = None) -> str:
    """A Markdown summary: headline figures side by side, then threshold verdicts."""
    table = headline_table(results)
    names = list(table.columns)
    lines = ["# rcert report", "",
             "| | " + " | ".join(_md(n) for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for metric, row in table.iterrows():
        lines.append(f"| {_md(str(metric))} | " + " | ".join(_md(_cell(row[n])) for n in names)
                     + " |")
    if verdicts:
        failed = sum(not v["passed"] for v in verdicts)
        lines += ["", f"## Thresholds: {len(verdicts) - failed} passed, {failed} failed", "",
                  "| | model | threshold | value | limit |", "|---|---|---|---|---|"]
        for v in verdicts:
            mark = "PASS" if v["passed"] else "FAIL"
            lines.append(f"| {mark} | {_md(v['model'])} | {_md(v['threshold'])} | "
                         f"{_md(_cell(v['value']))} | {_md(_cell(v['limit']))} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Escape what would break a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def junit_xml(results: dict[str, dict[str, Any]],
              verdicts: list[dict[str, Any]] | None = None) -> str:
    """JUnit XML: a suite per model (a case per input) and one for the thresholds.

    An input fails when an attack beat its certificate (``violation``) and is skipped
    when it abstains; a threshold fails when it does not hold.
    """
    root = ElementTree.Element("testsuites", name="rcert")
    for name, res in results.items():
        suite = ElementTree.SubElement(root, "testsuite", name=name)
        for row in res["inputs"]:
            case = ElementTree.SubElement(suite, "testcase", classname=f"rcert.{name}",
                                          name=f"input {row['index']}")
            if row.get("violation"):
                ElementTree.SubElement(case, "failure", message=(
                    f"attack broke the certificate: margin_empirical "
                    f"{row['margin_empirical']} < bound_certified {row['bound_certified']}"))
            elif row.get("abstain"):
                ElementTree.SubElement(case, "skipped", message="abstained: p_lower <= m")
    if verdicts:
        suite = ElementTree.SubElement(root, "testsuite", name="thresholds")
        for v in verdicts:
            case = ElementTree.SubElement(suite, "testcase", classname=f"rcert.{v['model']}",
                                          name=v["threshold"])
            if not v["passed"]:
                ElementTree.SubElement(case, "failure", message=v["message"])
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in root:
        counts = {"tests": len(suite), "failures": len(suite.findall("testcase/failure")),
                  "skipped": len(suite.findall("testcase/skipped"))}
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def figures(results: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The report's plots, as PNG and SVG bytes keyed by file name."""
    docs = list(results.values())
    kinds = list(FIGURES)
    if all("empirical" in r["summary"] for r in docs):
        kinds.insert(0, EMPIRICAL_FIGURE)
    out = {}
    for kind in kinds:
        figure = plots.PLOTS[kind](docs)
        for suffix in ("png", "svg"):
            out[f"{kind}.{suffix}"] = plots.render(figure, suffix)
    return out


def report_html(results: dict[str, dict[str, Any]], images: dict[str, bytes],
                verdicts: list[dict[str, Any]] | None = None) -> str:
    """One self-contained page: headline table, verdicts, embedded PNGs; all text escaped."""
    e = html.escape
    table = headline_table(results)
    head = "".join(f"<th>{e(str(n))}</th>" for n in table.columns)
    body = "".join(
        f"<tr><th>{e(str(metric))}</th>"
        + "".join(f"<td>{e(_cell(row[n]))}</td>" for n in table.columns) + "</tr>"
        for metric, row in table.iterrows())
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>rcert report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:.3em .6em;text-align:right}th{background:#f4f4f4}"
             ".fail{color:#b00}.pass{color:#070}img{max-width:100%}</style></head><body>",
             "<h1>rcert report</h1>",
             f"<table><tr><th></th>{head}</tr>{body}</table>"]
    if verdicts:
        rows = "".join(
            f'<tr><td class="{"pass" if v["passed"] else "fail"}">'
            f'{"PASS" if v["passed"] else "FAIL"}</td><td>{e(v["model"])}</td>'
            f"<td>{e(v['threshold'])}</td><td>{e(_cell(v['value']))}</td>"
            f"<td>{e(_cell(v['limit']))}</td></tr>" for v in verdicts)
        parts += ["<h2>Thresholds</h2>", "<table><tr><th></th><th>model</th><th>threshold</th>"
                  f"<th>value</th><th>limit</th></tr>{rows}</table>"]
    for name, image in images.items():
        if name.endswith(".png"):
            encoded = base64.b64encode(image).decode("ascii")
            parts.append(f"<h2>{e(name[:-4])}</h2>"
                         f'<img alt="{e(name)}" src="data:image/png;base64,{encoded}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(out: Path, results: dict[str, dict[str, Any]],
          verdicts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the report folder (see the module docstring); return the results document."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    marker = out / "results.json"
    marker.unlink(missing_ok=True)
    images = figures(results)
    files = {"inputs.csv": inputs_csv(results).encode(),
             "summary.md": summary_markdown(results, verdicts).encode(),
             "junit.xml": junit_xml(results, verdicts).encode(),
             **{f"plots/{name}": data for name, data in images.items()},
             "report.html": report_html(results, images, verdicts).encode()}
    for stale in (out / "plots").iterdir():  # figures of an earlier run, e.g. --empirical
        if f"plots/{stale.name}" not in files:
            stale.unlink()
    for name, content in files.items():
        atomic_write(out / name, content)
    document = {"schema_version": SCHEMA_VERSION, "kind": "report",
                "models": results, "verdicts": verdicts or [],
                "files": {name: hashlib.sha256(content).hexdigest()
                          for name, content in files.items()}}
    atomic_write(marker, report.to_json(document))
    return document


def is_complete(out: Path) -> bool:
    """Whether ``out`` holds a complete report: ``results.json`` and matching files."""
    try:
        document = json.loads((out / "results.json").read_text())
        return all(hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
                   for name, digest in document["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False

