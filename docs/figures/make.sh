#!/usr/bin/env bash
# Regenerates the figures of docs/guide.md and docs/figures/summaries.txt from the shipped
# models (about 5 minutes on 2 CPU cores). Needs `rcert` and `python` (with rcert installed)
# on PATH, e.g. after `source .venv/bin/activate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/figures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Fig 6a-c: the empirical margin against the Theorem 1 bound, two models, 100 test digits
# each, each at its recommended r (threat mean and preset fast, the --empirical defaults).
for model in vae-digits floor0.5-digits; do
  rcert margin --model models/$model.rcert --limit 100 --empirical --quiet \
    --format json --output "$tmp/$model-margin.json"
done
rcert plot bound-vs-empirical "$tmp"/vae-digits-margin.json "$tmp"/floor0.5-digits-margin.json \
  --out $out/bound-vs-empirical.png

# Fig 6d-f: the log-likelihood degradation of a maximum-damage attack (threat both) on the
# same 100 inputs, against their empirical margin; the figure at L = 0.5.
for model in vae-digits floor0.5-digits; do
  rcert attack --model models/$model.rcert --L 0.5,1 --threat both --preset fast \
    --limit 100 --quiet --format json --output "$tmp/$model-attack-100.json"
done
python docs/figures/loglik.py $out/loglik-vs-margin.png 0.5 \
  "$tmp"/vae-digits-margin.json "$tmp"/vae-digits-attack-100.json \
  "$tmp"/floor0.5-digits-margin.json "$tmp"/floor0.5-digits-attack-100.json > "$tmp/loglik.txt"

# Fig 4: maximum-damage attacks that reach the encoder mean, its sigma, or both, 25 test
# digits per model as in [C]. The threat-both runs, with beta0.1's, also give Fig 9b.
fig4=(vae-digits floor0.5-digits beta10-digits)
for model in "${fig4[@]}"; do
  for threat in mean sigma both; do
    rcert attack --model models/$model.rcert --L 0.5,1,2 --threat $threat --preset fast \
      --limit 25 --quiet --format json --output "$tmp/$model-threat-$threat.json"
  done
done
rcert attack --model models/beta0.1-digits.safetensors --L 0.5,1,2 --threat both --preset fast \
  --limit 25 --quiet --format json --output "$tmp/beta0.1-digits-threat-both.json"
python docs/figures/threats.py "$tmp" $out/threats.png "${fig4[@]}" > "$tmp/threats.txt"

# Fig 9: beta-VAEs at one common r = 1.5 (each model's own r differs).
for model in beta0.1-digits vae-digits beta10-digits; do
  rcert margin --model models/$model.rcert --r 1.5 --limit 100 --empirical --quiet \
    --format json --output "$tmp/$model-r1.5.json"
done
betas=("$tmp"/beta0.1-digits-r1.5.json "$tmp"/vae-digits-r1.5.json "$tmp"/beta10-digits-r1.5.json)
rcert plot margins "${betas[@]}" --out $out/beta-margins.png
rcert plot encoder "${betas[@]}" --out $out/beta-encoder.png
rcert plot damage "$tmp"/beta0.1-digits-threat-both.json "$tmp"/vae-digits-threat-both.json \
  "$tmp"/beta10-digits-threat-both.json --out $out/beta-damage.png
rcert plot certified-fraction "${betas[@]}" --out $out/beta-certified-fraction.png

# Fig 5: p(rho) along the max-damage direction.
for model in vae-digits floor0.5-digits; do
  rcert curve --model models/$model.rcert --radii 0,0.1,0.2,0.3,0.4,0.6,0.8 --limit 20 \
    --direction max-damage --quiet --format json --output "$tmp/$model-curve.json"
done
rcert plot curves "$tmp"/vae-digits-curve.json "$tmp"/floor0.5-digits-curve.json \
  --out $out/curves.png

# Keep the summaries the guide quotes.
{
python - "$tmp" <<'PY'
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
for path in sorted(folder.glob("*-curve.json")):
    s = json.loads(path.read_text())["summary"]
    print(f"{path.stem}: {s['n_inputs']} inputs, mean p_hat "
          + ", ".join(f"{r:g}: {p:.3f}" for r, p in zip(s["rho"], s["mean_p_hat"]))
          + f"; median crossing (first broken rho) {f(s['crossing']['median']):.3g}, "
          f"uncrossed up to rho = {s['largest_rho']:g}: {s['n_uncrossed']}")
PY
echo "# Fig 4 (threats.py): mean distortion per threat and budget, 25 inputs per model"
cat "$tmp/threats.txt"
echo "# Fig 6d-f (loglik.py): loglik_degradation against margin_empirical"
cat "$tmp/loglik.txt"
} > $out/summaries.txt
echo "figures written to $out" >&2
