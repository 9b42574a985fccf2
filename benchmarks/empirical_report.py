"""The tables and verdicts of ``bench_empirical.py``: rcert's margins against the scan's.

:func:`compare` sets one rcert run against one baseline per input; :func:`summarise` pools
the (model, r) configurations; the ``print_*`` functions and :func:`verdicts` print the
tables and the PASS/MISS lines against the targets (``TARGET_RATIO`` fewer decoder rows,
an equal or smaller margin).
"""

from __future__ import annotations

import numpy as np
from lipschitz_scan import (
    BASE_MAX_R,
    BASE_MAX_R_KIND,
    MAIN_BASE,
    RESOLUTION,
    VERIFY_SAMPLES,
    M,
)

TARGET_RATIO = 10.0


def compare(rc: dict, base: dict, key: str = "breaking", rc_key: str = "margin") -> dict:
    """rcert's margin against the baseline's breaking radius (or the verified ones)."""
    a = np.asarray(rc[rc_key], dtype=float)
    b = np.asarray(base[key], dtype=float)
    known = ~np.isnan(a) & ~np.isnan(b)  # NaN: a verified radius that no recheck confirmed
    a, b = a[known], b[known]
    with np.errstate(invalid="ignore"):
        diff = np.where(np.isfinite(a) & np.isfinite(b), a - b,
                        np.where(np.isinf(a) & np.isinf(b), 0.0,
                                 np.where(np.isinf(a), np.inf, -np.inf)))
    finite = diff[np.isfinite(diff)]
    return {"ratio": base["rows_mean"] / rc["rows_mean"],
            "n_above": int((diff > 1e-9).sum()),
            "n_above_resolution": int((diff > RESOLUTION + 1e-9).sum()),
            "n_equal": int((np.abs(diff) <= 1e-9).sum()),
            "n_below": int((diff < -1e-9).sum()),
            "max_above": float(max(diff.max(initial=0.0), 0.0)),
            "n_compared": int(known.sum()),
            "mean_diff": float(finite.mean()) if finite.size else float("nan"),
            "diffs": diff.tolist()}


def key_base(max_r: float, name: str = MAIN_BASE[0]) -> str:
    return f"{name}@{max_r:g}"


def finite_mean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def confirmed(p_values) -> str:
    """How many successes a recheck on fresh draws confirms (``P(||Delta|| <= r) <= m``)."""
    p = np.asarray(p_values, dtype=float)
    return f"{int((p <= M).sum()):>4}/{int(np.isfinite(p).sum()):<4}"


def print_config_table(cfg: dict) -> None:
    print(f"\n{cfg['model']}  r={cfg['r']:g}  N={cfg['n_inputs']}  (bound_whitened mean "
          f"{np.mean(cfg['bound_whitened']):.3f}; certify's own decodes "
          f"{cfg['certify_rows_per_input']:.0f}/input, not counted)")
    print(f"  {'baseline':20} {'dec rows/input':>14} {'wall s':>7} {'tests/in':>8} "
          f"{'returned':>8} {'breaking':>8} {'verified':>8} {'confirmed':>9} {'p_verify':>8}")
    for bk, b in cfg["baselines"].items():
        p = np.asarray(b["p_verify_at_breaking"], dtype=float)
        print(f"  {bk:20} {b['rows_mean']:14.0f} {b['wall_s']:7.1f} {np.mean(b['tests']):8.1f} "
              f"{np.nanmean(b['returned']):8.3f} {finite_mean(b['breaking']):8.3f} "
              f"{finite_mean(b['breaking_verified']):8.3f} {confirmed(p)} "
              f"{np.nanmean(p):8.3f}")
    head = (f"  {'rcert':26} {'dec rows/input':>14} {'wall s':>7} {'rounds':>6} "
            f"{'margin':>7} {'ratio@10':>8} {'ratio@2':>7} {'>b@10':>5} {'>b+res':>6} "
            f"{'max>':>6} {'diff':>7} {'verified':>8} {'confirmed':>9} {'>v@10':>5} "
            f"{'diff v':>7}")
    print(head)
    for rk, rv in cfg["rcert"].items():
        c10 = cfg["comparisons"][rk][key_base(BASE_MAX_R)]
        v10 = cfg["comparisons"][rk][key_base(BASE_MAX_R) + "/verified"]
        c2 = cfg["comparisons"][rk][key_base(BASE_MAX_R_KIND)]
        print(f"  {rk:26} {rv['rows_mean']:14.0f} {rv['wall_s']:7.2f} "
              f"{np.mean(rv['rounds']):6.1f} {finite_mean(rv['margin']):7.3f} "
              f"{c10['ratio']:7.1f}x {c2['ratio']:6.1f}x {c10['n_above']:>5} "
              f"{c10['n_above_resolution']:>6} {c10['max_above']:6.3f} {c10['mean_diff']:+7.3f} "
              f"{finite_mean(rv['margin_verified']):8.3f} {confirmed(rv['p_verify_at_margin'])} "
              f"{v10['n_above']:>5} {v10['mean_diff']:+7.3f}")


def summarise(configs: list[dict], setting_names) -> dict:
    """Per setting, pooled over the configurations: cost ratio and margin comparison."""
    out = {}
    for sname in setting_names:
        for mode in ("start", "nostart"):
            rk = f"{sname}/{mode}"
            entry = {}
            rc_rows = sum(c["rcert"][rk]["rows_mean"] * c["n_inputs"] for c in configs)
            for bk in configs[0]["comparisons"][rk]:
                b_rows = sum(c["baselines"][bk.split("/")[0]]["rows_mean"] * c["n_inputs"]
                             for c in configs)
                comps = [c["comparisons"][rk][bk] for c in configs]
                n_total = sum(c["n_inputs"] for c in configs)
                diffs = np.concatenate([np.asarray(cp["diffs"], dtype=float) for cp in comps])
                diffs = diffs[np.isfinite(diffs)]
                entry[bk] = {
                    "ratio": b_rows / rc_rows,
                    "min_config_ratio": min(cp["ratio"] for cp in comps),
                    "n_above": sum(cp["n_above"] for cp in comps),
                    "n_above_resolution": sum(cp["n_above_resolution"] for cp in comps),
                    "max_above": max(cp["max_above"] for cp in comps),
                    "mean_diff": float(diffs.mean()),
                    "se_diff": float(diffs.std(ddof=1) / np.sqrt(diffs.size))
                    if diffs.size > 1 else float("nan"),
                    "n_inputs": n_total,
                    "n_compared": sum(cp["n_compared"] for cp in comps)}
            entry["rows_mean"] = rc_rows / sum(c["n_inputs"] for c in configs)
            entry["wall_s"] = sum(c["rcert"][rk]["wall_s"] for c in configs)
            out[rk] = entry
    return out


def print_summary(summary: dict, configs: list[dict]) -> None:
    n_total = sum(c["n_inputs"] for c in configs)
    print(f"\nPooled over {len(configs)} (model, r) configurations, {n_total} inputs; "
          f"baseline = {MAIN_BASE[0]} (L-BFGS-B, 10 iterations, one draw), 5 starts, 40 samples")
    head = (f"  {'rcert setting':24} {'rows/in':>7} {'wall s':>6} | {'ratio@10':>8} "
            f"{'min cfg':>7} {'>b':>3} {'>b+res':>6} {'max>':>5} {'diff':>6} | "
            f"{'>v':>3} {'>v+res':>6} {'diff v':>6} | {'ratio@2':>7} {'>b':>3} {'>b+res':>6} "
            f"{'diff':>6}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for rk, e in summary.items():
        a, b = e[key_base(BASE_MAX_R)], e[key_base(BASE_MAX_R_KIND)]
        v = e[key_base(BASE_MAX_R) + "/verified"]
        print(f"  {rk:24} {e['rows_mean']:7.0f} {e['wall_s']:6.2f} | {a['ratio']:7.1f}x "
              f"{a['min_config_ratio']:6.1f}x {a['n_above']:>3} {a['n_above_resolution']:>6} "
              f"{a['max_above']:5.2f} {a['mean_diff']:+6.3f} | {v['n_above']:>3} "
              f"{v['n_above_resolution']:>6} {v['mean_diff']:+6.3f} | {b['ratio']:6.1f}x "
              f"{b['n_above']:>3} {b['n_above_resolution']:>6} {b['mean_diff']:+6.3f}")
    print("  ratio = baseline decoder rows / rcert decoder rows (min cfg: the worst (model, r));"
          "\n  >b = inputs where rcert's margin > the baseline's breaking radius, >b+res: by more"
          " than 0.05; diff = mean(rcert - baseline breaking radius);\n  >v, diff v: the same "
          "with both sides verified (every success rechecked on "
          f"{VERIFY_SAMPLES} fresh draws; the smallest radius whose success holds)")


def cost_ok(e: dict) -> bool:
    return e["ratio"] >= TARGET_RATIO and e["min_config_ratio"] >= TARGET_RATIO


def strict_ok(e: dict) -> bool:
    """Equal or smaller per input, allowing the grid: never above by more than 0.05."""
    return e["n_above_resolution"] == 0 and e["mean_diff"] <= 1e-9


def verdicts(summary: dict, configs: list[dict]) -> dict:
    lines = {}
    for rk in ("default/start", "default/nostart"):
        for max_r in (BASE_MAX_R, BASE_MAX_R_KIND):
            e = summary[rk][key_base(max_r)]
            v = summary[rk][key_base(max_r) + "/verified"]
            rows_mean = summary[rk]["rows_mean"]
            tag = f"rcert {rk} vs baseline max_R={max_r:g}"
            print(f"{'PASS' if cost_ok(e) else 'MISS'}  >= {TARGET_RATIO:g}x fewer decoder "
                  f"evaluations: {tag}: {e['ratio']:.2f}x pooled, {e['min_config_ratio']:.2f}x "
                  f"in the worst configuration ({rows_mean:.0f} rows/input)")
            print(f"{'PASS' if strict_ok(e) else 'MISS'}  equal or smaller margin (per input, "
                  f"within one {RESOLUTION:g} step): {tag}: rcert > baseline breaking radius on "
                  f"{e['n_above']}/{e['n_inputs']} inputs (by > {RESOLUTION:g} on "
                  f"{e['n_above_resolution']}, at most {e['max_above']:.3f}); mean difference "
                  f"{e['mean_diff']:+.3f} +- {e['se_diff']:.3f}")
            print(f"{'PASS' if v['mean_diff'] <= 1e-9 else 'MISS'}  equal or smaller margin "
                  f"(both verified, on average): {tag}: mean difference {v['mean_diff']:+.3f} "
                  f"+- {v['se_diff']:.3f}; rcert above on {v['n_above']}/{v['n_compared']} "
                  f"(by > {RESOLUTION:g} on {v['n_above_resolution']})")
            lines[f"{rk}@{max_r:g}"] = {"cost_pass": cost_ok(e), "margin_pass": strict_ok(e),
                                        "verified_mean_pass": v["mean_diff"] <= 1e-9}
    base = key_base(BASE_MAX_R)
    cheap = [rk for rk, e in summary.items() if cost_ok(e[base])]
    fair = [rk for rk in cheap if summary[rk][base + "/verified"]["mean_diff"] <= 1e-9]
    strict = [rk for rk in cheap if strict_ok(summary[rk][base])]
    print(f"NOTE  settings >= {TARGET_RATIO:g}x cheaper than the max_R=10 baseline in every "
          f"configuration: {', '.join(cheap) or 'none'}")
    print("NOTE  ... of which equal or smaller on average, both verified: "
          f"{', '.join(fair) or 'none'}")
    print("NOTE  ... of which equal or smaller per input (within 0.05) against the raw "
          f"baseline: {', '.join(strict) or 'none'}")
    return lines


def print_counter_note(configs: list[dict]) -> None:
    """Whether the decode counter saw exactly one row per input more than ``decoder_rows``."""
    cross = [(c["model"], c["r"], rk, rv["uncounted_by_decoder_rows"], rv["clean_decodes"])
             for c in configs for rk, rv in c["rcert"].items()]
    off = [t for t in cross if t[3] != t[4]]
    print("NOTE  counter vs empirical_margin's decoder_rows: the counter sees "
          + ("exactly one more row per input in every run (the clean g(mu(x)), decoded "
             "once up front, which decoder_rows leaves out)"
             if not off else f"a different excess in {len(off)} runs: {off[:3]}"))
