"""The Markdown summary of a report: headline figures side by side, threshold verdicts."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from rcert.results.text import strength_line


class Row(NamedTuple):
    """One headline figure: its key (the row label of :func:`headline_table` and of the
    Markdown summary), the heading a reader sees in the HTML page, and what it means."""

    key: str
    heading: str
    definition: str


#: Every headline figure, in table order: the one place the Markdown summary and the HTML
#: page take their rows, headings and definitions from. The notation is that of [C]
#: (Camuto et al. 2021) and docs/statistics.md: t(p) = Phi^-1(p) - Phi^-1(m).
ROWS: tuple[Row, ...] = (
    Row("data", "Data", "the data set and split whose inputs were certified"),
    Row("r", "Reconstruction radius r",
        "a reconstruction is robust when within distance r of g(mu(x)) ([C] Def 3.1)"),
    Row("inputs", "Inputs", "number of inputs certified"),
    Row("certified", "Certified inputs",
        "inputs with p_lower > m, r-robust unperturbed at confidence 1 - alpha (share)"),
    Row("abstained", "Abstentions",
        "inputs with p_lower <= m: no certificate at this r, their certified margin is 0"),
    Row("mean bound_certified", "Mean certified margin (Theorem 1 with p_lower)",
        "mean over inputs of s_min t(p_lower) / ||J||_F, [C] Eq 4 with the Clopper-Pearson "
        "lower bound p_lower of p0"),
    Row("median bound_certified", "Median certified margin (Theorem 1 with p_lower)",
        "median over inputs of s_min t(p_lower) / ||J||_F"),
    Row("mean bound_whitened", "Mean whitened margin",
        "mean of t(p_lower) / ||diag(1/sigma) J||_2, the tightest first-order bound "
        "(docs/statistics.md)"),
    Row("mean latent_margin", "Mean latent margin",
        "mean of s_min t(p_lower): an exact certificate for shifts of the latent mean"),
    Row("median r_min", "Median minimum radius r_min",
        "median of the m-quantile of ||Delta(x)||: the smallest r at which an unperturbed "
        "input is r-robust"),
    Row("median jacobian_spec", "Median encoder Jacobian norm ||J||_2",
        "median over inputs of the spectral norm of J = d mu / d x: how far the code moves "
        "per unit of input perturbation; the one figure a deterministic encoder gets "
        "(docs/statistics.md)"),
    Row("violations", "Violations",
        "inputs where an attack broke r-robustness below the certified margin, confirmed "
        "on fresh noise draws"),
    Row("mean margin_empirical", "Mean empirical margin",
        "mean over inputs of the smallest perturbation norm at which an attack broke "
        "r-robustness (inf where none did)"),
    Row("empirical vs bound: correlation", "Empirical margin against Theorem 1: correlation",
        "Pearson correlation of the empirical margin with the published bound ([C] Fig 6), "
        "over inputs where both are finite and the bound positive"),
    Row("median tightness", "Median tightness",
        "median of certified margin / empirical margin over inputs an attack broke: "
        "1 means the certificate is as large as the attacks allow"),
    Row("attack strength", "Attack strength audit",
        "a seeded random subset of inputs attacked again with the next stronger preset: how "
        "many empirical margins it lowered by more than the search resolution, and the "
        "largest relative drop (docs/attacks.md)"),
)

#: The rows of :data:`ROWS` by key.
ROW_BY_KEY: dict[str, Row] = {row.key: row for row in ROWS}


def _headline(res: dict[str, Any]) -> dict[str, Any]:
    """The figures a reviewer compares across models, by :data:`ROWS` key."""
    s = res["summary"]
    diagnostics = s["diagnostics"]
    # A deterministic encoder has no certificate at all, so no counts (SPEC section 9).
    counted = "n_certified" in s
    row = {
        "data": res["config"].get("data", ""),
        "r": res["config"].get("r"),
        "inputs": s["n_inputs"],
        "certified": f"{s['n_certified']} ({100 * s['certified_share']:.1f}%)" if counted
        else "n/a (deterministic encoder)",
        "abstained": s["n_abstained"] if counted else "n/a",
        # A family a certificate does not cover has no figure for it (docs/hierarchical.md).
        "mean bound_certified": s["mean_margin"].get("bound_certified", "n/a"),
        "median bound_certified": s["margins"].get("bound_certified", {}).get("median", "n/a"),
        "mean bound_whitened": s["mean_margin"].get("bound_whitened", "n/a"),
        "mean latent_margin": s["mean_margin"].get("latent_margin", "n/a"),
        "median r_min": diagnostics.get("r_min", {}).get("median", "n/a"),
        "median jacobian_spec": diagnostics.get("jacobian_spec", {}).get("median", "n/a"),
    }
    if "empirical" in s:
        e = s["empirical"]
        row["mean margin_empirical"] = e["margin_empirical"]["mean"]
        if "fit" in e:
            row.update({"violations": e["n_violations"],
                        "empirical vs bound: correlation": e["fit"]["bound"]["correlation"],
                        "median tightness": e["tightness"]["median"]})
        if "audit" in e:
            row["attack strength"] = strength_line(e["audit"])
    return row


def headline_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Models as columns, headline figures as rows, labelled and ordered by :data:`ROWS`."""
    table = pd.DataFrame({name: _headline(res) for name, res in results.items()})
    return table.reindex([row.key for row in ROWS if row.key in table.index])


def cell(value: Any) -> str:
    """A table cell: floats to four significant figures, anything else as ``str``."""
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
