#!/usr/bin/env bash
# Regenerates every shipped reference model and its model card (make models).
# Deterministic: the same rcert and torch versions give byte-identical checkpoints.
set -euo pipefail
cd "$(dirname "$0")"
RCERT=${RCERT:-rcert}
common=(--epochs 1000 --patience 40 --seed 0 --quiet)
digits=(--data digits:train --arch mlp --latent-dim 8 --hidden 128,128)

# Standard VAE (ELBO, beta = 1), learned encoder sigma.
$RCERT train "${digits[@]}" "${common[@]}" --out vae-digits.safetensors >/dev/null
# beta-VAEs on both sides of 1, as in Camuto et al. (2021) Fig 8-9.
$RCERT train "${digits[@]}" "${common[@]}" --beta 0.1 --out beta0.1-digits.safetensors >/dev/null
$RCERT train "${digits[@]}" "${common[@]}" --beta 10 --out beta10-digits.safetensors >/dev/null
# Encoder sigma with a floor tau (sigma = tau + learned part), the Fig 7 ablation.
$RCERT train "${digits[@]}" "${common[@]}" --sigma floor --tau 0.5 --out floor0.5-digits.safetensors >/dev/null
# Convolutional VAE on procedurally rendered dSprites, downsampled to 32x32.
$RCERT train --data dsprites:train:res=32:n=6000 --arch conv --channels 32,64 --latent-dim 6 \
  --epochs 60 --patience 8 --seed 0 --quiet --out conv-dsprites.safetensors >/dev/null
# Willetts et al. (2021) on dSprites in [-1, 1] with a Gaussian likelihood of scale 0.1
# (docs/willetts.md): a beta-TCVAE pair, a Seatbelt-VAE pair (three layers, inference
# q(z^{i+1}|z^i), so every certificate applies, docs/hierarchical.md) and the TC-penalised
# DLGM, at beta 1 and 8.
sprites=(--data dsprites:train:res=32:n=6000:range=-1,1 --arch conv --channels 32,64
  --likelihood gaussian --latent-dim 8 --batch-size 256 --epochs 60 --patience 8 --seed 0
  --quiet)
hier=(--upper-dims 4,2 --inference chain --free-bits 0.25)
$RCERT train "${sprites[@]}" --family beta-tcvae --beta 1 --out tcvae1-dsprites.safetensors \
  >/dev/null
$RCERT train "${sprites[@]}" "${hier[@]}" --family seatbelt --beta 1 \
  --out seatbelt1-dsprites.safetensors >/dev/null
$RCERT train "${sprites[@]}" --family beta-tcvae --beta 8 --out tcvae8-dsprites.safetensors \
  >/dev/null
$RCERT train "${sprites[@]}" "${hier[@]}" --family seatbelt --beta 8 \
  --out seatbelt8-dsprites.safetensors >/dev/null
$RCERT train "${sprites[@]}" "${hier[@]}" --family dlgm --beta 8 --out dlgm8-dsprites.safetensors \
  >/dev/null
# Lu & Chen (2023) on digits (docs/latent.md): a Gaussian likelihood (their MSE), d_z = 10
# (their MNIST), one model per family, beta-TCVAEs at their five betas, and the KLD-VAE with
# latent adversarial training (Algorithm 1; SSIM window 7 fits the 8x8 images).
bash lu-chen.sh
echo "models regenerated in $(pwd)" >&2
