"""The text ``rcert inspect`` prints for people (its JSON is the dict itself)."""

from __future__ import annotations

from typing import Any


def to_text(info: dict[str, Any]) -> str:
    """A block of ``key: value`` lines, then one line per model check (PASS or FAIL)."""
    model = info["model"]
    rows = [
        ("model", model.get("path")),
        ("format", model.get("format")),
        ("library", model.get("library") or "-"),
        ("encoder", f"{info['family']['encoder']}, "
                    f"{info['family']['stochastic_layers']} stochastic layer(s)"),
        ("input shape", "x".join(map(str, info["input_shape"]))),
        ("latent size", info["latent_dim"]),
        ("data range", "none stated" if info["data_range"] is None
         else f"[{info['data_range'][0]:g}, {info['data_range'][1]:g}]"),
        ("sigma convention", info["sigma_convention"]),
        ("likelihood", info["likelihood"] or "unknown"),
        ("probe", info["probe"]),
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    lines.append("checks:")
    lines += [f"  {'PASS' if c['passed'] else 'FAIL'} {c['code']}: {c['message']}"
              for c in info["checks"]]
    failed = [c["code"] for c in info["checks"] if not c["passed"]]
    lines.append(f"{len(info['checks']) - len(failed)} passed, {len(failed)} failed"
                 + (f"; certifying needs a fix or --allow {' --allow '.join(failed)}"
                    if failed else ""))
    return "\n".join(lines) + "\n"
