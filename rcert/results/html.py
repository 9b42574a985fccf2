"""The self-contained HTML page of a report."""

from __future__ import annotations

import base64
import html
from typing import Any

from rcert.results.markdown import cell, headline_table


def report_html(results: dict[str, dict[str, Any]], images: dict[str, bytes],
                verdicts: list[dict[str, Any]] | None = None) -> str:
    """One self-contained page: headline table, verdicts, embedded PNGs; all text escaped."""
    e = html.escape
    table = headline_table(results)
    head = "".join(f"<th>{e(str(n))}</th>" for n in table.columns)
    body = "".join(
        f"<tr><th>{e(str(metric))}</th>"
        + "".join(f"<td>{e(cell(row[n]))}</td>" for n in table.columns) + "</tr>"
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
            f"<td>{e(v['threshold'])}</td><td>{e(cell(v['value']))}</td>"
            f"<td>{e(cell(v['limit']))}</td></tr>" for v in verdicts)
        parts += ["<h2>Thresholds</h2>", "<table><tr><th></th><th>model</th><th>threshold</th>"
                  f"<th>value</th><th>limit</th></tr>{rows}</table>"]
    for name, image in images.items():
        if name.endswith(".png"):
            encoded = base64.b64encode(image).decode("ascii")
            parts.append(f"<h2>{e(name[:-4])}</h2>"
                         f'<img alt="{e(name)}" src="data:image/png;base64,{encoded}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
