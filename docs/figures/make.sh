#!/usr/bin/env bash
# Regenerates the figures of docs/guide.md from the shipped models (about 2 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/figures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Fig 6: the empirical margin against the Theorem 1 bound, two models, 100 test digits each.
for model in vae-digits floor0.5-digits; do
  rcert margin --model models/$model.rcert --limit 100 --empirical --quiet \
    --format json --output "$tmp/$model-margin.json"
done
rcert plot bound-vs-empirical "$tmp"/vae-digits-margin.json "$tmp"/floor0.5-digits-margin.json \
  --out $out/bound-vs-empirical.png

# Fig 9: beta-VAEs at one common r = 1.5 (each model's own r differs).
for model in beta0.1-digits vae-digits beta10-digits; do
  rcert margin --model models/$model.rcert --r 1.5 --limit 100 --empirical --quiet \
    --format json --output "$tmp/$model-r1.5.json"
  rcert attack --model models/$model.rcert --L 0.25,0.5,1,2 --target both --limit 50 --quiet \
    --format json --output "$tmp/$model-attack.json"
done
betas=("$tmp"/beta0.1-digits-r1.5.json "$tmp"/vae-digits-r1.5.json "$tmp"/beta10-digits-r1.5.json)
rcert plot margins "${betas[@]}" --out $out/beta-margins.png
rcert plot encoder "${betas[@]}" --out $out/beta-encoder.png
rcert plot damage "$tmp"/beta0.1-digits-attack.json "$tmp"/vae-digits-attack.json \
  "$tmp"/beta10-digits-attack.json --out $out/beta-damage.png
rcert plot certified-fraction "${betas[@]}" --out $out/beta-certified-fraction.png
# Fig 5: p(rho) along the max-damage direction.
rcert curve --model models/vae-digits.rcert --radii 0,0.1,0.2,0.3,0.4,0.6,0.8 --limit 20 \
  --direction max-damage --quiet --format json --output "$tmp/vae-curve.json"
rcert curve --model models/floor0.5-digits.rcert --radii 0,0.1,0.2,0.3,0.4,0.6,0.8 --limit 20 \
  --direction max-damage --quiet --format json --output "$tmp/floor-curve.json"
rcert plot curves "$tmp/vae-curve.json" "$tmp/floor-curve.json" --out $out/curves.png
# Keep the summaries the guide quotes.
python - "$tmp" <<'PY' > $out/summaries.txt
import json, sys
from pathlib import Path

def f(value):  # JSON results spell non-finite numbers as strings
    return float(value)

folder = Path(sys.argv[1])
for path in sorted(folder.glob("*-r1.5.json")) + sorted(folder.glob("*-margin.json")):
    s = json.loads(path.read_text())["summary"]
    e, fit = s["empirical"], s["empirical"]["fit"]["bound"]
    print(f"{path.stem}: certified {s['n_certified']}/{s['n_inputs']}, "
          f"mean bound_certified {f(s['mean_margin']['bound_certified']):.4g}, "
          f"mean sigma_min {f(s['diagnostics']['sigma_min']['mean']):.4g}, "
          f"mean ||J||_F {f(s['diagnostics']['jacobian_fro']['mean']):.4g}, "
          f"median R_emp {f(e['margin_empirical']['median']):.4g}, "
          f"unbroken {e['n_unbroken']}, violations {e['n_violations']}, "
          f"corr(R_emp, bound) {f(fit['correlation']):.3f}, slope {f(fit['slope']):.3f}")
PY
echo "figures written to $out" >&2
