"""Lu & Chen's latent attacks and latent adversarial training on digits, on 2 cores.

Issue 11 asks for the time of a full 11-point epsilon sweep on 1,000 digits inputs against
one decoder forward-and-backward pass on the same batch, and for the cost of latent
adversarial training per epoch relative to plain training. This times:

* ``sweep``: :func:`rcert.evaluation.latent.latent_attack` on the first 1,000 inputs of
  ``digits:all`` with the paper's settings (untargeted, L2 ball, sign steps, K = 10, the
  11-point grid 0, 0.1, ..., 1, one restart, MSE distance) and the scores MSE, L2, SSIM
  (window 7) and PSNR: encoding, the attack (all inputs x epsilons in one graph, chunked to
  the memory budget) and the scoring;
* ``decoder pass``: one forward and backward pass of the decoder on the 1,000 clean codes
  (the unit the sweep is measured in; it needs ``11 x 10`` such passes of 11,000 rows);
* ``epoch``: one training epoch of the model's family, plain and with Algorithm 1
  (``repeats`` 1, K = 10, SSIM distance, and MSE distance), on ``digits:train``.

Results go to ``benchmarks/results/bench_latent.json`` (or ``--out``).
"""

from __future__ import annotations

import os
import time

import torch
from common import ROOT, finish, parser, time_interleaved

import rcert
from rcert.evaluation.latent import latent_attack
from rcert.models.training import batches, objective
from rcert.runs.adversarial import LatentAdversary
from rcert.settings import AdversarialTrainingConfig, FidelityConfig, RunConfig, TrainConfig

NAME = "bench_latent"


def decoder_pass(model: torch.nn.Module, z: torch.Tensor) -> None:
    """One forward and backward pass of the decoder on the codes ``z``."""
    z = z.detach().requires_grad_(True)
    torch.autograd.grad(model.decode(z).square().sum(), z)


def epoch_seconds(model: torch.nn.Module, x: torch.Tensor,
                  adversarial: AdversarialTrainingConfig | None) -> float:
    """Seconds of one epoch over ``x`` in batches of 128: Adam on the family's objective,
    then (``adversarial``) Algorithm 1's attack and decoder step after every batch."""
    config = TrainConfig(family=model.meta.get("training", {}).get("family", "vae"))
    target = objective(config, len(x))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    noise = torch.Generator().manual_seed(0)
    adversary = None if adversarial is None else LatentAdversary(model, adversarial, seed=0)
    start = time.perf_counter()
    for index in batches(torch.randperm(len(x), generator=torch.Generator().manual_seed(0)),
                         128, target.min_batch):
        model.train()
        loss = -target.per_input(model, x[index], noise).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if adversary is not None:
            adversary(x[index], index, noise)
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__, NAME)
    p.add_argument("--model", default="kld-digits")
    args = p.parse_args()
    threads = int(args.threads) if args.threads else 2
    torch.set_num_threads(threads)
    model = rcert.load(ROOT / "models" / f"{args.model}.safetensors").eval()
    n = 200 if args.quick else 1000
    data = rcert.load_data("digits:all").subset(n)
    load_before = os.getloadavg()
    start = time.perf_counter()
    latent_attack(model, data.x, fidelity=FidelityConfig(ssim_window=7), index=data.index,
                  run=RunConfig(progress=False))
    sweep = time.perf_counter() - start
    with torch.no_grad():
        z = model.encode(data.x)[0]
    unit = time_interleaved({"pass": lambda: decoder_pass(model, z)}, warmup=1,
                            repeats=args.repeats or 5)["pass"]["median_s"]
    train = rcert.load_data("digits:train").x
    path = ROOT / "models" / f"{args.model}.safetensors"
    plain = epoch_seconds(rcert.load(path), train, None)
    defended = epoch_seconds(rcert.load(path), train, AdversarialTrainingConfig(ssim_window=7))
    with_mse = epoch_seconds(rcert.load(path), train, AdversarialTrainingConfig(distance="mse"))
    summary = {"model": args.model, "inputs": n, "epsilons": 11, "sweep_s": sweep,
               "decoder_pass_s": unit, "sweep_over_decoder_pass": sweep / unit,
               "plain_epoch_s": plain, "adversarial_epoch_s": defended,
               "adversarial_over_plain": defended / plain, "adversarial_mse_epoch_s": with_mse,
               "adversarial_mse_over_plain": with_mse / plain}
    for key, value in summary.items():
        print(f"{key:>26}: {value:.4g}" if isinstance(value, float) else f"{key:>26}: {value}")
    finish(NAME, args.out, load_before, threads=threads, **summary)


if __name__ == "__main__":
    main()
