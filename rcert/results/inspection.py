"""The text ``rcert inspect`` prints for people (its JSON is the dict itself)."""

from __future__ import annotations

from typing import Any


def failed(info: dict[str, Any]) -> list[str]:
    """The codes of the model checks ``info`` failed; ``rcert inspect`` exits 1 when there
    are any (certifying would stop)."""
    return [c["code"] for c in info["checks"] if not c["passed"]]


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
        ("latent size", ", ".join(map(str, info.get("layer_dims") or [info["latent_dim"]]))
         + (" (first to top layer)" if len(info.get("layer_dims") or ()) > 1 else "")),
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
    codes = failed(info)
    lines.append(f"{len(info['checks']) - len(codes)} passed, {len(codes)} failed"
                 + (f"; certifying needs a fix or --allow {' --allow '.join(codes)}"
                    if codes else ""))
    return "\n".join(lines) + "\n"
