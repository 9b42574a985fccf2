#!/usr/bin/env bash
# The Lu & Chen (2023) models on digits (docs/latent.md); called by regenerate.sh.
set -euo pipefail
cd "$(dirname "$0")"
RCERT=${RCERT:-rcert}
lc=(--data digits:train --arch mlp --latent-dim 10 --hidden 128,128 --likelihood gaussian
  --gaussian-scale 0.1 --epochs 300 --patience 20 --seed 0 --quiet)
$RCERT train "${lc[@]}" --family vae --out kld-digits.safetensors >/dev/null
$RCERT train "${lc[@]}" --family mmd-vae --out mmd-digits.safetensors >/dev/null
$RCERT train "${lc[@]}" --family swt-vae --out swt-digits.safetensors >/dev/null
$RCERT train "${lc[@]}" --family mmd-dae --out mmddae-digits.safetensors >/dev/null
$RCERT train "${lc[@]}" --family swt-dae --out swtdae-digits.safetensors >/dev/null
for beta in 1 5 10 30 50; do
  $RCERT train "${lc[@]}" --family beta-tcvae --beta "$beta" \
    --out "tcvae$beta-digits.safetensors" >/dev/null
done
$RCERT train "${lc[@]}" --family vae --adversarial --adversarial-ssim-window 7 \
  --out lat-digits.safetensors >/dev/null
