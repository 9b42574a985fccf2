"""Reproduce the claims of Willetts et al. (2021) that fit on 2 CPU cores (spec section 7):
C1, C2, C4, C5, C7, C9 and C10, with the pass criteria of the spec, on procedural dSprites
and a Swiss roll. Writes docs/figures/willetts-*.png and docs/figures/willetts.json and
prints the tables of docs/willetts.md.

    python docs/figures/willetts.py [--workdir DIR] [--pairs 20] [--lambdas 50]

The five shipped models come from models/regenerate.sh; the beta-TCVAEs at beta 2 and 4 and
the Swiss-roll models are trained here into --workdir (seeded; reused when present). Each
step's numbers are cached in --workdir as JSON, so a rerun redoes only what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import rcert
from rcert.evaluation.downstream import DOWNSTREAM_ATTACK, downstream_table
from rcert.evaluation.posteriors import posterior_table
from rcert.statistics.bootstrap import bootstrap_ci

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "figures"
SPRITES = "dsprites:train:n=6000:range=-1,1:res=32"
TRAIN = dict(family="beta-tcvae", batch_size=256, epochs=60, patience=8, seed=0)
ARCH = dict(channels=(32, 64), latent_dim=8, likelihood="gaussian")
RUN = rcert.RunConfig()


def model(name: str, workdir: Path) -> torch.nn.Module:
    shipped = ROOT / "models" / f"{name}-dsprites.safetensors"
    if shipped.exists():
        return rcert.load(shipped)
    path = workdir / f"{name}-dsprites.safetensors"
    if not path.exists():  # the beta-TCVAEs between the shipped ones
        beta = float(name.removeprefix("tcvae"))
        rcert.train_checkpoint(SPRITES, path, arch="conv", hparams=ARCH,
                               config=rcert.TrainConfig(beta=beta, **TRAIN), progress=False)
    return rcert.load(path)


def ci(values: np.ndarray, statistic: str, groups: np.ndarray | None = None) -> list[float]:
    return list(bootstrap_ci(values, statistic, groups=groups, seed=0))


def cached(workdir: Path, step: str, compute) -> dict:
    """``compute()``'s result, from ``workdir/step.json`` when an earlier run left it."""
    path = workdir / f"{step}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def attacks(models: dict, x: torch.Tensor, pairs: int, lambdas: int) -> dict:
    """The KL attack (all layers) on every model: median Delta and mean -log p with CIs."""
    out = {}
    for name, m in models.items():
        start = time.perf_counter()
        df = rcert.targeted_attack(m, x, kind="kl", pairs=pairs, lambdas=lambdas,
                                   max_iter=100, run=RUN)
        pair = df["pair"].to_numpy()
        out[name] = {
            "delta_median": ci(df["loss"].to_numpy(), "median", pair),
            "log10_delta_median": math.log10(float(np.median(df["loss"]))),
            "neg_log_lik_mean": ci(df["neg_log_lik_target"].to_numpy(), "mean", pair),
            "l2_output_target": ci(df["l2_output_target"].to_numpy(), "mean", pair),
            "l2_target_recon": ci(df["l2_target_recon"].to_numpy(), "mean", pair),
            "distortion_selected": float(df[df.selected]["distortion"].mean()),
            "seconds": time.perf_counter() - start,
        }
        print(f"  {name}: {out[name]}", flush=True)
    return out


def denoising(models: dict, x: torch.Tensor) -> dict:
    out = {}
    for name, m in models.items():
        df = posterior_table(m, x, levels=(0.1, 0.5), draws=4, run=RUN)
        out[name] = {c: ci(df[c].to_numpy(), "mean") for c in ("denoise_0.1", "denoise_0.5",
                                                                "elbo", "sigma_norm")}
    return out


def _labels(data: rcert.data.Dataset, label: str) -> np.ndarray:
    """dSprites labels: the shape (the paper's example), or the x position in thirds."""
    if label == "shape":
        return data.y
    return np.minimum((data.factors["pos_x"].to_numpy() * 3).astype(np.int64), 2)


def downstream(models: dict, train: rcert.data.Dataset, test: rcert.data.Dataset) -> dict:
    attack = rcert.TargetedConfig(**{**rcert.settings.as_dict(DOWNSTREAM_ATTACK),
                                     "pairs": 200, "lambda_values": (1.0,)})
    out = {}
    for label in ("shape", "position"):
        for name, m in models.items():
            df = downstream_table(m, train.x, _labels(train, label), test.x,
                                  _labels(test, label), attack=attack, epochs=30, run=RUN)
            out[f"{label} {name}"] = df.set_index("classifier").to_dict(orient="index")
            print(f"  {label} {name}: {out[f'{label} {name}']}", flush=True)
    return out


def certificates(models: dict, x: torch.Tensor, r: float) -> dict:
    """What rcert adds: each model's certified margins at one common r, and the empirical
    margin of a fast attack on the first inputs (violations must be 0)."""
    out = {}
    for name, m in models.items():
        df = rcert.certify(m, x, r=r, n_samples=500, run=RUN)
        emp = rcert.certify(m, x[:10], r=r, n_samples=500, empirical=True,
                            attack=rcert.AttackConfig(preset="fast", audit=0), run=RUN)
        out[name] = {"certified_share": float(1 - df["abstain"].mean()),
                     "sigma_min_median": float(df["sigma_min"].median()),
                     "jacobian_whitened_median": float(df["jacobian_whitened"].median()),
                     "bound_whitened_median": float(df["bound_whitened"].median()),
                     "latent_margin_median": float(df["latent_margin"].median()),
                     "r_min_median": float(df["r_min"].median()),
                     "margin_empirical_median": float(emp["margin_empirical"].median()),
                     "violations": int(emp["violation"].sum())}
        print(f"  {name}: {out[name]}", flush=True)
    return out


def swiss_roll(workdir: Path) -> dict:
    """beta-VAE against beta-TCVAE with a 2-D latent (C10): sigma norms and collapse."""
    x = rcert.load_data("swissroll:all:range=-1,1:n=2000").x
    out, recon = {}, {}
    for family in ("vae", "beta-tcvae"):
        for beta in (1, 8, 32, 128):
            torch.manual_seed(0)
            m = rcert.build_model("mlp", input_shape=(3,), latent_dim=2, hidden=(64, 64),
                                  likelihood="gaussian", data_range=(-1, 1))
            rcert.fit(m, x[:1800], x[1800:], rcert.TrainConfig(
                family=family, beta=float(beta), batch_size=200, epochs=300, patience=30),
                progress=False)
            with torch.no_grad():
                mu, sigma = m.encode(x)
                g = m.decode(mu)
            norms = sigma.norm(dim=1).numpy()
            centred = (g - g.mean(0)).numpy()
            sv = np.linalg.svd(centred, compute_uv=False)
            out[f"{family} {beta}"] = {
                "sigma_norm_mean": float(norms.mean()), "sigma_norm_std": float(norms.std()),
                "first_pc_share": float(sv[0] ** 2 / (sv**2).sum()),
                "recon_mse": float(((g - x) ** 2).sum(1).mean())}
            recon[(family, beta)] = (g.numpy(), norms)
            print(f"  swiss roll {family} beta={beta}: {out[f'{family} {beta}']}", flush=True)
    _swiss_figure(x.numpy(), recon)
    return out


def _swiss_figure(x: np.ndarray, recon: dict) -> None:
    betas = (1, 8, 32, 128)
    fig, axes = plt.subplots(3, 4, figsize=(12, 8.5))
    for j, beta in enumerate(betas):
        for i, family in enumerate(("vae", "beta-tcvae")):
            ax = axes[i, j]
            ax.scatter(x[:, 0], x[:, 2], s=1, c="0.85")
            g = recon[(family, beta)][0]
            ax.scatter(g[:, 0], g[:, 2], s=1)
            ax.set_title(f"{'beta-VAE' if family == 'vae' else 'beta-TCVAE'}, beta={beta}",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        ax = axes[2, j]
        for family in ("vae", "beta-tcvae"):
            ax.hist(recon[(family, beta)][1], bins=40, alpha=0.6, density=True,
                    label="beta-VAE" if family == "vae" else "beta-TCVAE")
        ax.axvline(math.sqrt(2), color="k", lw=0.8)
        ax.set_xlabel("||sigma(x)||_2 (line: the prior's sqrt(2))", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "willetts-swissroll.png", dpi=90)
    plt.close(fig)


def figure(results: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, marker in (("tcvae", "o"), ("seatbelt", "s")):
        betas = [b for b in (1, 2, 4, 8) if f"{name}{b}" in results["attacks"]]
        for ax, key, label in ((axes[0], "delta_median", "median Delta_KL (log)"),
                               (axes[1], "neg_log_lik_mean", "mean -log p(x_t|z*)")):
            vals = np.array([results["attacks"][f"{name}{b}"][key] for b in betas])
            ax.errorbar(betas, vals[:, 0], yerr=[vals[:, 0] - vals[:, 1],
                                                 vals[:, 2] - vals[:, 0]],
                        marker=marker, capsize=3, label=name)
            ax.set_xlabel("beta")
            ax.set_ylabel(label)
    dl = results["attacks"]["dlgm8"]
    axes[0].errorbar([8], [dl["delta_median"][0]], marker="^", ls="", label="dlgm (TC)")
    axes[1].errorbar([8], [dl["neg_log_lik_mean"][0]], marker="^", ls="", label="dlgm (TC)")
    axes[0].set_yscale("log")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "willetts-attacks.png", dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rcert-willetts"))
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--lambdas", type=int, default=50)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    names = ("tcvae1", "tcvae2", "tcvae4", "tcvae8", "seatbelt1", "seatbelt8", "dlgm8")
    models = {n: model(n, args.workdir) for n in names}
    test = rcert.load_data("dsprites:test:n=6000:range=-1,1:res=32")
    train = rcert.load_data(SPRITES)
    results = {"pairs": args.pairs, "lambdas": args.lambdas}
    work = args.workdir
    print("attacks (C1, C2, C4, C5)", flush=True)
    results["attacks"] = cached(work, f"attacks-{args.pairs}-{args.lambdas}", lambda: attacks(
        models, test.x, args.pairs, args.lambdas))
    print("denoising (C7)", flush=True)
    results["denoising"] = cached(work, "denoising", lambda: denoising(models,
                                                                       test.subset(400).x))
    print("certificates", flush=True)
    shipped = {n: models[n] for n in ("tcvae1", "tcvae8", "seatbelt1", "seatbelt8", "dlgm8")}
    results["certificates"] = cached(work, "certificates", lambda: certificates(
        shipped, test.subset(200).x, r=1.0))
    print("downstream (C9)", flush=True)
    results["downstream"] = cached(work, "downstream", lambda: downstream(
        {n: models[n] for n in ("tcvae1", "tcvae8", "seatbelt8")}, train.subset(3000), test))
    print("swiss roll (C10)", flush=True)
    results["swissroll"] = cached(work, "swissroll", lambda: swiss_roll(work))
    figure(results)
    (OUT / "willetts.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
