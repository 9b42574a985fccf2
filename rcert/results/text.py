"""Renderings of one result for people and programs: terminal table, CSV and JSON."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from rcert.results.schema import plain
from rcert.statistics.summary import MARGINS

#: Columns shown by the terminal table; CSV and JSON carry every column.
TABLE_COLUMNS = ("index", "sigma_min", "jacobian_fro", "p_hat", "p_lower", "r_min", "bound",
                 "bound_certified", "bound_whitened", "latent_margin", "abstain",
                 "margin_empirical", "violation", "tightness")


def to_json(res: dict[str, Any]) -> str:
    """The result as strict JSON (non-finite numbers spelled ``"inf"``, ``"-inf"``, ``"nan"``)."""
    return json.dumps(plain(res), indent=2, allow_nan=False) + "\n"


def to_csv(res: dict[str, Any]) -> str:
    """One row per input, every column, full precision."""
    buffer = io.StringIO()
    pd.DataFrame(res["inputs"]).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


#: Columns shown by the terminal table, per kind; CSV and JSON carry every column.
SHOWN = {
    "margin": TABLE_COLUMNS,
    "attack": ("index", "L", "damage", "noise_damage", "distortion", "noise_distortion",
               "clean_distortion", "loglik_degradation", "noise_loglik_degradation",
               "delta_norm"),
    "curve": ("index", "rho", "delta_norm", "p_hat", "p_lower", "p_upper", "certified",
              "broken"),
    "posteriors": ("index", "sigma_norm", "elbo"),
    "downstream": ("classifier", "accuracy_clean", "accuracy_attacked", "accuracy_drop",
                   "n_attacked"),
    "targeted": ("pair", "input", "target", "lambda", "loss", "attack_loss", "distortion",
                 "neg_log_lik_target", "l2_output_target", "status", "selected"),
    "latent": ("seed", "index", "epsilon", "shift_l2", "loss", "mse", "ssim", "psnr", "lpips",
               "target_mse", "exceeds_r"),
    "latent-margin": ("index", "p_lower", "latent_margin", "l2_p_inside", "l2_violation",
                      "l2_tightness", "whitened_p_inside", "whitened_violation",
                      "whitened_tightness"),
}


def to_table(res: dict[str, Any]) -> str:
    """A per-input table and a summary block for people at a terminal."""
    df = pd.DataFrame(res["inputs"])
    kind = res.get("kind", "margin")
    shown = df[[c for c in SHOWN[kind] if c in df.columns]]
    lines = [shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), ""]
    lines += _heading(res)
    lines += {"margin": _margin_lines, "attack": _attack_lines, "curve": _curve_lines,
              "targeted": _targeted_lines, "posteriors": _posterior_lines,
              "downstream": _downstream_lines, "latent": _latent_lines,
              "latent-margin": _latent_margin_lines}[kind](res["summary"])
    return "\n".join(lines) + "\n"


def _heading(res: dict[str, Any]) -> list[str]:
    cfg, model = res["config"], res.get("model", {})
    head = f"model {model.get('path', '?')}" + (f" on {cfg['data']}" if "data" in cfg else "")
    setting = ", ".join(f"{k}={v}" for k, v in cfg.items()
                        if k not in ("data", "device") and not isinstance(v, dict))
    return [head, setting]


def _stats_table(rows: dict[str, dict[str, float]]) -> str:
    stats = pd.DataFrame(rows).T[["mean", "median", "q05", "q95", "min", "max"]]
    return stats.to_string(float_format=lambda v: f"{v:.4g}")


def _margin_lines(s: dict[str, Any]) -> list[str]:
    """Counts, the attack's verdict if any, and quantiles of each margin and of r_min; for a
    model no certificate covers (a deterministic encoder), why, and its Jacobian norms."""
    if "n_certified" not in s:
        return [f"{s['n_inputs']} inputs; certificates: {s.get('certificates', 'none')}", "",
                _stats_table(s["diagnostics"])]
    lines = [f"certified {s['n_certified']} of {s['n_inputs']} inputs "
             f"({100 * s['certified_share']:.1f}%), abstained {s['n_abstained']}"]
    if "empirical" in s:
        e = s["empirical"]
        if "fit" in e:
            fit = e["fit"]["bound"]
            lines.append(f"attacked: {e['n_violations']} violations, {e['n_unbroken']} "
                         f"unbroken; empirical vs bound: correlation {fit['correlation']:.3f}, "
                         f"slope {fit['slope']:.3f}, intercept {fit['intercept']:.3g}")
        else:
            lines.append(f"attacked: {e['n_unbroken']} unbroken; no certificate of this "
                         f"family to compare with (docs/hierarchical.md)")
        if "audit" in e:
            lines.append(f"attack strength: {strength_line(e['audit'])}")
    rows = {col: s["margins"][col] for col in MARGINS if col in s["margins"]}
    if "empirical" in s:
        rows["margin_empirical"] = s["empirical"]["margin_empirical"]
    rows["r_min"] = s["diagnostics"]["r_min"]
    rows["r_min_upper"] = s["diagnostics"]["r_min_upper"]
    return [*lines, "", _stats_table(rows)]


def strength_line(audit: dict[str, Any]) -> str:
    """The attack-strength audit of an empirical summary in words, e.g. "standard (restarts
    5, steps 50, n_noise 128) lowered 1 of 8 audited margins (max drop 4%), 0 confirmed"."""
    if not audit["n_audited"]:
        return "no input audited"
    return (f"{audit.get('attack') or 'the stronger attack'} lowered {audit['n_lowered']} of "
            f"{audit['n_audited']} audited margins (max drop {float(audit['max_drop']):.0%}), "
            f"{audit['n_confirmed']} confirmed")


def _attack_lines(s: dict[str, Any]) -> list[str]:
    """Per budget: mean damage, distortion and degradation of attack and noise, and how often
    the attack beats noise on each (distortion sees sigma, damage does not)."""
    means = ("damage", "noise_damage", "distortion", "noise_distortion", "clean_distortion",
             "loglik_degradation", "noise_loglik_degradation")
    shares = ("attack_beats_noise", "attack_beats_noise_distortion")
    rows = [{"L": b["L"], **{n: b[n]["mean"] for n in means if n in b},
             **{n: b[n] for n in shares if n in b}} for b in s["budgets"]]
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    return [f"{s['n_inputs']} inputs attacked; means per budget:", table]


def _curve_lines(s: dict[str, Any]) -> list[str]:
    """Mean ``p(rho)`` per radius and the crossing radii of the inputs that crossed."""
    table = pd.DataFrame({"rho": s["rho"], "mean_p_hat": s["mean_p_hat"]}).to_string(
        index=False, float_format=lambda v: f"{v:.4g}")
    crossed = s["n_inputs"] - s["n_uncrossed"]
    lines = [f"{s['n_inputs']} inputs; mean p(rho):", table, "",
             f"crossing: the first rho with p_upper <= m (broken at confidence 1 - alpha); "
             f"{crossed} of {s['n_inputs']} inputs crossed, {s['n_uncrossed']} did not up to "
             f"rho = {s['largest_rho']:.4g}"]
    if crossed:
        lines.append(_stats_table({"crossing": s["crossing"]}))
    return lines


def _targeted_lines(s: dict[str, Any]) -> list[str]:
    """Each metric's mean and bootstrap interval over pairs x lambdas and over the selected
    rows (Willetts et al.: a higher loss means a more robust model)."""
    pct = f"{100 * float(s['level']):g}%"
    rows = [{"metric": col, "mean": s["all"][col]["mean"], f"{pct} low": s["all"][col]["low"],
             f"{pct} high": s["all"][col]["high"],
             "selected mean": s["selected"][col]["mean"]} for col in s["all"]]
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    status = ", ".join(f"{n} {k}" for k, n in s["status"].items())
    return [f"{s['kind']} attack: {s['n_pairs']} pairs x {s['n_lambdas']} lambdas "
            f"({status}); intervals resample whole pairs:", table]


def _posterior_lines(s: dict[str, Any]) -> list[str]:
    """Each measure's mean and bootstrap interval over the inputs."""
    pct = f"{100 * float(s['level']):g}%"
    rows = [{"measure": col, "mean": v["mean"], f"{pct} low": v["low"], f"{pct} high": v["high"]}
            for col, v in s["measures"].items()]
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    return [f"{s['n_inputs']} inputs; means over the inputs:", table]


def _downstream_lines(s: dict[str, Any]) -> list[str]:
    """The attack's cost to each classifier (Willetts et al. Table 1)."""
    return [f"{s['n_attacked']} inputs attacked toward targets of another label; the drop is "
            f"attacked minus clean accuracy (smaller in magnitude: more robust)"]


def _latent_lines(s: dict[str, Any]) -> list[str]:
    """Each score's DD-curve (mean and spread over the batch-and-seed curves) and AADDC."""
    rows = {score: [f"{m:.4g} ({sd:.2g})" for m, sd in zip(c["mean"], c["std"], strict=True)]
            for score, c in s["curves"].items()}
    table = pd.DataFrame(rows, index=pd.Index([f"{e:g}" for e in s["epsilons"]],
                                              name="epsilon"))
    lines = [f"{s['n_inputs']} inputs, {s['n_batches']} batches, {s['n_seeds']} seeds; mean "
             f"score per epsilon (standard deviation over the batch-and-seed curves):",
             table.to_string(), ""]
    for score, a in s["aaddc"].items():
        lines.append(f"AADDC {score} (limit {a['limit']:g}): {a['mean']:.4g} +- "
                     f"{a['std']:.2g} over {a['n_curves']} curves; of the mean curve "
                     f"{a['of_mean_curve']:.4g}")
    return lines


def _latent_margin_lines(s: dict[str, Any]) -> list[str]:
    """Violations inside the latent certificate and the latent tightness beyond it."""
    lines = [f"{s['n_certified']} of {s['n_inputs']} inputs certified and attacked"]
    for geometry in ("l2", "whitened"):
        g = s.get(geometry)
        if g is None:
            continue
        median = "-" if g["tightness_median"] is None else f"{g['tightness_median']:.3g}"
        lines.append(f"{geometry}: {g['violations']} violations inside the certificate; "
                     f"{g['n_broken']} broken beyond it, median tightness {median}")
    return lines
