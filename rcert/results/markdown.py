"""The Markdown summary of a report: headline figures side by side, threshold verdicts."""

from __future__ import annotations

from typing import Any

import pandas as pd


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


def cell(value: Any) -> str:
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
        lines.append(f"| {_md(str(metric))} | " + " | ".join(_md(cell(row[n])) for n in names)
                     + " |")
    if verdicts:
        failed = sum(not v["passed"] for v in verdicts)
        lines += ["", f"## Thresholds: {len(verdicts) - failed} passed, {failed} failed", "",
                  "| | model | threshold | value | limit |", "|---|---|---|---|---|"]
        for v in verdicts:
            mark = "PASS" if v["passed"] else "FAIL"
            lines.append(f"| {mark} | {_md(v['model'])} | {_md(v['threshold'])} | "
                         f"{_md(cell(v['value']))} | {_md(cell(v['limit']))} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Escape what would break a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
